"""Several render workers share one job image by image; Ray actors do the same across machines.

Real processes, the tiny models, CPU workers (the test setting `worker.cpu_workers`).
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from tests import test_worker
from tests.test_worker import accepted_numbers, submit, wait_until
from tools.jobs import DONE, JobJournal

pytestmark = pytest.mark.slow
studio = test_worker.studio  # a home with one character, quick retries, short hang timeout


def assert_each_image_once(home: Path, job_id: str, count: int):
    job = JobJournal.for_state(home / ".anime-chat").get(job_id)
    assert job.state == DONE
    assert accepted_numbers(home) == list(range(1, count + 1))
    paths = [image.path for image in job.images]
    assert len(set(paths)) == count and all(Path(p).exists() for p in paths)
    assert not list((home / "anime-output").glob("rejected/*/*.png"))
    return job


def test_two_local_workers_share_a_job_and_survive_a_kill_9(studio, monkeypatch):
    from tools.gen_index import GenerationIndex
    from tools.supervisor import wait_for_job

    monkeypatch.setenv("ANIME_WORKER_CPU_WORKERS", "2")
    settings, journal, job_id = submit(10)
    state = settings.paths.state
    # Both have drawn an image: kill one of them while it draws its next.
    wait_until(lambda: len(journal.get(job_id).workers) == 2, 180, "both workers drawing")
    victim = int((state / "worker-cpu1.pid").read_text())
    wait_until(
        lambda: any(i.worker is None and i.tries for i in journal.get(job_id).images),
        60,
        "an image in flight",
    )
    os.kill(victim, signal.SIGKILL)
    job = wait_for_job(settings, job_id, timeout=240)
    job = assert_each_image_once(studio, job_id, 10)
    assert sorted(job.workers) == ["cpu0", "cpu1"] and job.attempts == 2
    index = GenerationIndex(state / "generations.sqlite")
    assert {index.by_key(image.key)["worker"] for image in job.images} == {"cpu0", "cpu1"}
    assert job.summary()["workers"] == job.workers
