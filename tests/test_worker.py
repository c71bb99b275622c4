"""The worker with real processes and the tiny models: kill -9, hangs, crash loops, two CLIs."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tools.jobs.job import JobState
from tools.jobs.journal import JobJournal

pytestmark = pytest.mark.slow
GEN = [sys.executable, "-m", "assistant.gen_cli"]
# Loose enough for a loaded 2-core CI machine; the default is 120 s.
HANG_TIMEOUT = 8


@pytest.fixture
def studio(anime_home: Path, reference_image: Path, monkeypatch: pytest.MonkeyPatch):
    """A home with one character; quick retries, a short hang timeout."""
    from PIL import Image

    from tools.characters.library import CharacterLibrary
    from tools.settings import load_settings

    monkeypatch.setenv("ANIME_WORKER_HANG_TIMEOUT", f"{HANG_TIMEOUT}s")
    monkeypatch.setenv("ANIME_WORKER_RETRY_BACKOFF", "0.5s")
    library = CharacterLibrary(load_settings().paths)
    added = library.add("sakura", Image.open(reference_image))
    # A stored baseline spares each fresh worker the calibration (tested with the gate).
    library.update(added.model_copy(update={"consistency_baseline": 0.99}))
    return anime_home


def plan(count: int, seed: int = 1):
    from tools.generation.runtime import Runtime
    from tools.generation.specs import GenerationRequest
    from tools.settings import load_settings

    settings = load_settings()
    request = GenerationRequest(character="sakura", count=count, seed=seed, posture="standing")
    return settings, Runtime(settings).planner.plan(request)


def submit(count: int, seed: int = 1) -> tuple[object, JobJournal, str]:
    from tools.jobs.client import ensure_worker, submit_job

    settings, specs = plan(count, seed)
    journal, job_id = submit_job(settings, specs)
    ensure_worker(settings)
    return settings, journal, job_id


def wait_until(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def accepted_numbers(home: Path) -> list[int]:
    names = [p.name for p in (home / "anime-output").glob("*/sakura_standing_*.png")]
    return sorted(int(re.fullmatch(r"sakura_standing_(\d+)\.png", n)[1]) for n in names)


def test_kill_9_mid_batch_recovers_with_every_image_exactly_once(studio, monkeypatch):
    from tools.jobs.client import wait_for_job

    # Image 3 holds the first attempt (a fast machine would finish the job before the kill).
    monkeypatch.setenv("ANIME_WORKER_FAULTS", "hang@3")
    settings, journal, job_id = submit(10)
    running = wait_until(
        lambda: (job := journal.get(job_id)).progress.get("image") == 3 and job, 120, "image 3"
    )
    assert running.done_count == 3 and running.state == "running"
    # The watchdog may have killed the hung worker first: the same recovery either way.
    with contextlib.suppress(ProcessLookupError):
        os.kill(running.worker_pid, signal.SIGKILL)
    job = wait_for_job(settings, job_id, timeout=120)
    assert job.state == JobState.DONE and job.attempts == 2
    assert accepted_numbers(studio) == list(range(1, 11))
    paths = [image.path for image in job.images]
    assert len(set(paths)) == 10 and all(Path(p).exists() for p in paths)
    assert not list((studio / "anime-output").glob("rejected/*/*.png"))


def test_a_hang_is_detected_within_hang_timeout_and_the_job_completes(studio, monkeypatch):
    from tools.jobs.client import wait_for_job

    monkeypatch.setenv("ANIME_WORKER_FAULTS", "hang@1")
    settings, journal, job_id = submit(2)
    hung = wait_until(
        lambda: (job := journal.get(job_id)).progress.get("image") == 1 and job, 120, "image 1"
    )
    failed = wait_until(
        lambda: (job := journal.get(job_id)).error and job.state == "queued" and job, 30, "retry"
    )
    assert "hung" in failed.error
    # A generous bound (the watchdog's loop runs late on a loaded machine), far below the
    # default hang timeout (120 s): the short setting is the one in use.
    assert failed.updated - hung.heartbeat < 3 * HANG_TIMEOUT
    job = wait_for_job(settings, job_id, timeout=120)
    assert job.state == JobState.DONE and job.attempts == 2 and accepted_numbers(studio) == [1, 2]


def test_a_job_that_always_crashes_fails_and_the_next_one_completes(studio, monkeypatch):
    from tools.jobs.client import wait_for_job

    monkeypatch.setenv("ANIME_WORKER_MAX_ATTEMPTS", "2")
    monkeypatch.setenv("ANIME_WORKER_FAULTS", "crash@2:always")
    settings, _, doomed = submit(3, seed=1)  # images 0 and 1 land, image 2 kills the worker
    _, _, healthy = submit(2, seed=100)  # two images: never reaches image 2
    failed = wait_for_job(settings, doomed, timeout=150)
    assert failed.state == JobState.FAILED and failed.attempts == 2
    assert "SIGKILL" in failed.error and "gave up after 2 attempts" in failed.error
    assert failed.done_count == 2  # the images it finished stay done
    assert wait_for_job(settings, healthy, timeout=120).state == JobState.DONE


def test_two_clis_at_once_share_one_worker_without_name_clashes(studio):
    # The same seed: both ask for the same poses, so both want the same file names.
    command = [*GEN, "sakura", "--random-pose", "-n", "5", "--seed", "3", "--json"]
    clis = [subprocess.Popen(command, stdout=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [json.loads(cli.communicate(timeout=240)[0])["outputs"] for cli in clis]
    assert [cli.returncode for cli in clis] == [0, 0]
    paths = [record["path"] for output in outputs for record in output]
    assert len(set(paths)) == 10 and all(Path(p).exists() for p in paths)
    assert sorted(paths) == sorted(map(str, (studio / "anime-output").glob("*/sakura_*.png")))
    # The warm worker is still there: a second one refuses to start.
    second = subprocess.run([*GEN, "worker"], capture_output=True, text=True, timeout=60)
    assert second.returncode == 1 and "a worker is already running" in second.stderr


def test_index_rebuild_right_after_a_generation_with_the_idle_worker_alive(studio):
    """A warm worker idles for worker.keep_alive after its job: no job runs, so rebuild runs
    (the idle worker is stopped first: it holds the index open; the next job starts one)."""
    from tools.jobs.client import wait_for_job
    from tools.jobs.processes import worker_running
    from tools.store.index_rebuild import rebuild_index

    settings, journal, job_id = submit(1)
    assert wait_for_job(settings, job_id, timeout=300).state == JobState.DONE
    assert worker_running(settings.paths.state)
    report = rebuild_index(settings)
    assert report.images == 1
    assert not worker_running(settings.paths.state)


def test_index_rebuild_while_a_job_is_queued_says_so(studio):
    from tools.errors import UserError
    from tools.jobs.client import submit_job
    from tools.store.index_rebuild import rebuild_index

    settings, specs = plan(1)
    journal, job_id = submit_job(settings, specs)
    with pytest.raises(UserError) as raised:
        rebuild_index(settings)
    assert job_id[:8] in raised.value.message and "jobs cancel" in (raised.value.hint or "")
