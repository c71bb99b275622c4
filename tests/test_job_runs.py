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
