"""Several render workers share one job image by image; Ray actors do the same across machines.

Real processes, the tiny models, CPU workers (the test setting `worker.cpu_workers`).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests import test_worker
from tests.test_worker import accepted_numbers, submit, wait_until
from tools.jobs.job import JobState
from tools.jobs.journal import JobJournal

pytestmark = pytest.mark.slow
studio = test_worker.studio  # a home with one character, quick retries, short hang timeout


def assert_each_image_once(home: Path, job_id: str, count: int):
    job = JobJournal.for_state(home / ".anime-chat").get(job_id)
    assert job.state == JobState.DONE
    assert accepted_numbers(home) == list(range(1, count + 1))
    paths = [image.path for image in job.images]
    assert len(set(paths)) == count and all(Path(p).exists() for p in paths)
    assert not list((home / "anime-output").glob("rejected/*/*.png"))
    return job


def test_two_local_workers_share_a_job_and_survive_a_kill_9(studio, monkeypatch):
    from tools.jobs.client import wait_for_job
    from tools.store.gen_index import GenerationIndex

    monkeypatch.setenv("ANIME_WORKER_CPU_WORKERS", "2")
    # Image 6 holds whichever worker draws it first (a fast machine would finish the job before
    # the kill); the other goes on.
    monkeypatch.setenv("ANIME_WORKER_FAULTS", "hang@6")
    settings, journal, job_id = submit(10)
    state = settings.paths.state
    wait_until(lambda: len(journal.get(job_id).workers) == 2, 180, "both workers drawing")

    def first_lease_of_image_6():
        with journal.transaction() as db:
            row = db.execute(
                "SELECT lease, tries, fault_fired FROM job_images WHERE job_id = ? AND idx = 6",
                (job_id,),
            ).fetchone()
        held = row["lease"] and row["tries"] == 1 and row["fault_fired"]
        return row["lease"] if held else None

    # The supervisor's lease token is `name:nonce`: kill the worker that holds image 6, once
    # its hang has fired (killed before, the hang would fire on the retry, a second attempt).
    name = wait_until(first_lease_of_image_6, 120, "image 6 in flight").split(":")[0]
    victim = int((state / f"worker-{name}.pid").read_text())
    with contextlib.suppress(ProcessLookupError):  # the watchdog was quicker: the same recovery
        os.kill(victim, signal.SIGKILL)
    job = wait_for_job(settings, job_id, timeout=240)
    job = assert_each_image_once(studio, job_id, 10)
    assert sorted(job.workers) == ["cpu0", "cpu1"] and job.attempts == 2
    index = GenerationIndex(state / "generations.sqlite")
    assert {index.by_key(image.key)["worker"] for image in job.images} == {"cpu0", "cpu1"}
    assert job.summary()["workers"] == job.workers


# --- Ray: a local cluster with two CPU slots -----------------------------------------------------
GEN = [sys.executable, "-m", "assistant.gen_cli"]


@contextlib.contextmanager
def running_ray_head(studio: Path, log: Path, slots: int):
    """`anime-gen worker --ray local --slots N` in the background; stopped (SIGTERM) after."""
    if importlib.util.find_spec("ray") is None:
        pytest.skip("needs the ray extra")
    with open(log, "wb") as output:
        head = subprocess.Popen(
            [*GEN, "worker", "--ray", "local", "--slots", str(slots)], stdout=output, stderr=output
        )
    info = studio / ".anime-chat" / "ray.json"
    try:
        wait_until(
            lambda: (
                info.exists()
                and len(json.loads(info.read_text())["actors"]) == slots
                or head.poll() is not None
            ),
            120,
            "the ray head",
        )
        assert head.poll() is None, log.read_text()
        yield head, log
    finally:
        head.terminate()
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            head.kill()
            head.wait()


@pytest.fixture
def ray_head(studio: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """Two CPU slots; image 2 crashes its actor once."""
    monkeypatch.setenv("ANIME_WORKER_FAULTS", "crash@2")
    with running_ray_head(studio, tmp_path / "ray-head.log", slots=2) as running:
        yield running


RAY_KILL = """
import sys, ray
ray.init(address=sys.argv[1], namespace=sys.argv[2], log_to_driver=False)
ray.kill(ray.get_actor(sys.argv[3]))
ray.shutdown()
"""


def kill_slot_actor_mid_render(state: Path, job_id: str) -> str:
    """ray.kill (from another driver, as a user would) the actor of a slot that holds a lease on
    the job now; returns the slot."""
    journal = JobJournal.for_state(state)

    def leased_slot():
        with journal.transaction() as db:
            row = db.execute(
                "SELECT lease FROM job_images WHERE job_id = ? AND lease IS NOT NULL", (job_id,)
            ).fetchone()
        return row and row["lease"].split(":")[0]

    slot = wait_until(leased_slot, 120, "an image being drawn")
    info = json.loads((state / "ray.json").read_text())
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": info["auth_token"]}
    command = [sys.executable, "-c", RAY_KILL, info["address"], info["namespace"]]
    subprocess.run([*command, info["actors"][slot]], env=env, check=True, timeout=120)
    return slot


def test_ray_actors_share_a_job_through_a_crash_and_a_ray_kill(studio, ray_head):
    from tools.jobs.client import wait_for_job

    head, log = ray_head
    settings, journal, job_id = submit(12)
    wait_until(lambda: journal.get(job_id).done_count >= 4, 180, "four images")
    kill_slot_actor_mid_render(settings.paths.state, job_id)
    wait_for_job(settings, job_id, timeout=300)
    job = assert_each_image_once(studio, job_id, 12)
    assert sorted(job.workers) == ["ray-slot0", "ray-slot1"]
    # The crash (fault injection at image 2) and the ray.kill each lost an actor.
    assert log.read_text().count("died (") >= 2, log.read_text()[-3000:]
    listed = subprocess.run([*GEN, "jobs", "--json"], capture_output=True, text=True, timeout=60)
    (row,) = json.loads(listed.stdout)
    assert row["workers"] == job.workers and row["images_done"] == row["images_total"] == 12


def test_the_ray_soak_loses_and_doubles_nothing(tiny_models, tmp_path):
    if importlib.util.find_spec("ray") is None:
        pytest.skip("needs the ray extra")
    command = [sys.executable, "-m", "evals.soak", "--ray", "--slots", "2", "--jobs", "30"]
    soak = subprocess.run(
        [*command, "--fault-rate", "0.1", "--budget", "600", "--models", str(tiny_models)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert soak.returncode == 0, soak.stdout[-3000:] + soak.stderr[-3000:]
    assert "OK: every job done or failed with a reason" in soak.stdout
    assert "workers=2" in soak.stdout
