"""Run planned images through the warm worker and show per-image progress with ETA (stderr).

The specs become one job in the journal; a background worker is started if none runs. Ctrl-C
stops waiting but leaves the job queued or running; a second Ctrl-C within a few seconds cancels
it. The records come back from the journal, in spec order.
"""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING

from tools.text import plural

if TYPE_CHECKING:
    from tools.generation.runtime import Runtime
    from tools.generation.specs import ImageSpec, OutputRecord
    from tools.jobs.journal import Job

CANCEL_WINDOW_SECONDS = 3.0


def submit_detached(runtime: Runtime, specs: list[ImageSpec], label: str | None = None) -> str:
    """Enqueue the specs and make sure a worker will run them; returns the job id."""
    from tools.jobs.client import ensure_worker, submit_job

    _, job_id = submit_job(runtime.settings, specs, label)
    ensure_worker(runtime.settings)
    return job_id


def render_with_progress(
    runtime: Runtime, specs: list[ImageSpec], quiet: bool = False, label: str | None = None
) -> list[OutputRecord]:
    """Submit the specs as one job, wait for the worker, and return their records."""
    from tools.jobs.client import job_records, raise_unless_done

    job_id = submit_detached(runtime, specs, label)
    job = wait_with_progress(runtime, job_id, quiet)
    raise_unless_done(job, runtime.settings.paths.state)
    return job_records(job)


def wait_with_progress(runtime: Runtime, job_id: str, quiet: bool = False) -> Job:
    from rich.console import Console

    console = Console(stderr=True)
    try:
        return _wait(runtime, job_id, console, show=not quiet and sys.stderr.isatty())
    except KeyboardInterrupt:
        _offer_cancel(runtime, job_id, console)
        raise


def _wait(runtime: Runtime, job_id: str, console: object, show: bool) -> Job:
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from tools.engine.rendering import sampling_for
    from tools.jobs.client import wait_for_job
    from tools.jobs.job import JobState

    # Few-step mode runs output.fast_steps, not output.steps.
    steps = sampling_for(runtime.settings).steps
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[images]}"),
        TimeRemainingColumn(),
        console=console,
        disable=not show,
        transient=True,
    ) as progress:
        task = progress.add_task(f"job {job_id}: queued", total=None, images="")

        def update(job: Job) -> None:
            total = len(job.images)
            done = job.done_count
            step = job.progress.get("step", 0) if job.state == JobState.RUNNING else 0
            phase = job.progress.get("phase") or job.state
            if phase == "rendering":
                phase = f"image {min(done + 1, total)}/{total}"
            progress.update(
                task,
                description=f"job {job_id}: {phase}",
                total=total * steps,
                completed=done * steps + min(step, steps),
                images=f"{done}/{plural(total, 'image')}",
            )

        return wait_for_job(runtime.settings, job_id, update)


def _offer_cancel(runtime: Runtime, job_id: str, console: object) -> None:
    from tools.jobs.journal import JobJournal

    say = console.print  # type: ignore[attr-defined]
    say(
        f"job {job_id} keeps running in the background (`anime-gen jobs wait {job_id}`); "
        f"press Ctrl-C again within {CANCEL_WINDOW_SECONDS:g} s to cancel it"
    )
    try:
        time.sleep(CANCEL_WINDOW_SECONDS)
    except KeyboardInterrupt:
        if JobJournal.for_state(runtime.settings.paths.state).cancel(job_id):
            say(f"job {job_id} cancelled")
