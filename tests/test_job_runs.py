"""One render worker's runs, in process (no rendering): what a job's own fault does to the queue."""

from __future__ import annotations

from pathlib import Path

from tests.test_jobs import specs
from tools.jobs.job import JobState
from tools.jobs.journal import JobJournal


def test_a_job_whose_saved_settings_do_not_validate_fails_and_the_next_one_runs(
    anime_home: Path,
):
    """Issue 22 §2: a newer CLI's setting reaches an older warm worker."""
    from tools.jobs.worker import Worker
    from tools.settings import load_settings

    settings = load_settings()
    journal = JobJournal.for_state(settings.paths.state)
    good = settings.model_dump(mode="json")
    bad = {**good, "output": {**good["output"], "from_the_future": 1}}
    doomed = journal.submit(specs(1, "bad"), settings=bad)
    healthy = journal.submit(specs(1, "good"), settings=good)
    worker = Worker(settings)
    job, indices = journal.claim_images(worker.name, worker.token, 1, worker._limit)
    assert job.id == doomed
    assert worker.run_images(job, indices)  # the worker goes on
    failed = journal.get(doomed)
    assert failed.state == JobState.FAILED and "from_the_future" in failed.error
    job, _ = journal.claim_images(worker.name, worker.token, 1, worker._limit)
    assert job.id == healthy


class _CountingHeartbeat:
    def __init__(self) -> None:
        self.beats = 0

    def alive(self, progress: dict) -> bool:
        self.beats += 1
        return True


def test_the_loading_keepalive_stops_beating_after_its_allowance():
    """Issue 22 §10: beats mean progress, so a load stuck past its allowance goes silent and
    the watchdog sees a hang (it used to beat every second forever)."""
    from tools.jobs.heartbeat import Keepalive

    heartbeat = _CountingHeartbeat()
    keepalive = Keepalive(heartbeat, limit=0.0, every=0.01)  # type: ignore[arg-type]
    with keepalive:
        assert keepalive.expired.wait(timeout=60)  # while the "load" still holds the block
        beats = heartbeat.beats
        keepalive._thread.join(timeout=60)
        assert not keepalive._thread.is_alive() and heartbeat.beats == beats


def test_a_load_within_its_allowance_keeps_beating():
    from tools.jobs.heartbeat import Keepalive

    heartbeat = _CountingHeartbeat()
    keepalive = Keepalive(heartbeat, limit=3600.0, every=0.01)  # type: ignore[arg-type]
    with keepalive:
        for _ in range(6000):  # a hang guard only: three beats is the event waited for
            if heartbeat.beats >= 3:
                break
            keepalive._stop.wait(0.01)
    assert heartbeat.beats >= 3
    assert not keepalive.expired.is_set()
