"""`GET /sdapi/v1/progress` from the journal: the running job's fraction, ETA and A1111's state.

A1111 reports its one in-flight task (`modules/api/api.py` `progressapi`); here every request is
a journal job, so the running one is reported (the oldest, if several workers run jobs) and
`job_count` counts the unfinished ones. Our worker keeps no preview image: `current_image` is
null, as A1111's is when live previews are off.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tools.jobs.job import Job
    from tools.jobs.journal import JobJournal


def _state(job: Job | None, job_count: int) -> dict[str, Any]:
    progress = job.progress if job is not None else {}
    step, steps = progress.get("step"), progress.get("steps")
    return {
        "skipped": False,
        "interrupted": False,
        "job": job.id if job is not None else "",
        "job_count": job_count,
        "job_timestamp": time.strftime("%Y%m%d%H%M%S", time.localtime(job.created))
        if job is not None
        else "0",
        "job_no": job.done_count if job is not None else 0,
        "sampling_step": step if isinstance(step, int) else 0,
        "sampling_steps": steps if isinstance(steps, int) else 0,
    }


def fraction(job: Job) -> float:
    """Done images plus the running image's share of its steps, over all images."""
    total = len(job.images) or 1
    step, steps = job.progress.get("step"), job.progress.get("steps")
    current = step / steps if isinstance(step, int) and isinstance(steps, int) and steps else 0.0
    return min(1.0, (job.done_count + min(current, 1.0)) / total)


def eta_seconds(job: Job, done: float) -> float:
    """Seconds left, from the time the job has run so far at its current pace."""
    if done <= 0.0:
        return 0.0
    elapsed = max(0.0, time.time() - job.created)
    return round(elapsed / done - elapsed, 2)


def progress_of(journal: JobJournal, skip_current_image: bool = False) -> dict[str, Any]:
    running = sorted(journal.running(), key=lambda job: job.created)
    job = running[0] if running else None
    done = fraction(job) if job is not None else 0.0
    return {
        "progress": round(done, 4),
        "eta_relative": eta_seconds(job, done) if job is not None else 0.0,
        "state": _state(job, journal.pending_count()),
        "current_image": None,
        "textinfo": f"{job.request.get('label') or job.id}" if job is not None else None,
    }
