"""How a front end hands work to the worker and waits for it (the worker runs elsewhere).

`run_in_worker` submits the specs as one job, makes sure a worker runs, and waits; or the three
steps: `submit_job`, `ensure_worker`, `wait_for_job`. Before queuing, `submit_job` fetches the
models in the user's terminal (`prefetch_models`), so a download shows its progress here and a
missing model is a user error before any job exists. The worker process loop itself is
`tools.jobs.supervisor`.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tools.errors import UserError
from tools.jobs.job import Job, JobState
from tools.jobs.journal import JobJournal
from tools.jobs.processes import log_path, start_detached, worker_running
from tools.settings import Settings, load_settings

if TYPE_CHECKING:
    from tools.generation.specs import ImageSpec, OutputRecord

SUPERVISOR_MODULE = "tools.jobs.supervisor"
# How many times one wait starts the worker again before it gives up on it.
CLIENT_RESTARTS = 3
# Seconds between checks that the worker still runs, while waiting.
WORKER_CHECK_SECONDS = 2.0


def start_background(settings: Settings) -> None:
    """Start a supervisor detached from this terminal; a second one exits if the lock is taken."""
    start_detached(SUPERVISOR_MODULE, settings.home, log_path(settings.paths.state))


def ensure_worker(settings: Settings) -> bool:
    """Start a background worker unless one runs; True when one was started."""
    if worker_running(settings.paths.state):
        return False
    start_background(settings)
    return True


def settings_overrides(settings: Settings) -> dict[str, Any]:
    """What `settings` has beyond the config file alone (flags, environment), as sections."""
    base = load_settings(env={}, home=settings.home).model_dump(mode="json")
    mine = settings.model_dump(mode="json")
    overrides = {
        section: {key: value for key, value in values.items() if base[section].get(key) != value}
        for section, values in mine.items()
        if isinstance(values, dict)
    }
    return {section: values for section, values in overrides.items() if values}


def prefetch_models(settings: Settings) -> None:
    """Download what the worker will need, here in the user's terminal (size note, progress
    bar) rather than unseen in the background worker. Instant when everything is cached."""
    from tools.engine.local_models import local_model_uses
    from tools.engine.rendering import Engine
    from tools.quality.aesthetic import AestheticScorer

    if local_model_uses(settings):  # with ComfyUI drawing: the gate, hires, face detail
        Engine(settings).prefetch()
    if settings.quality.enabled and settings.quality.aesthetic_model:
        try:
            AestheticScorer(settings).folder()
        except UserError as error:
            print(f"note: {error.message}; images are not scored for looks", file=sys.stderr)


def ready_to_submit(settings: Settings) -> JobJournal:
    """The journal to submit to, once what a job needs before it exists is there: both stores
    readable and the models downloaded (they fail here, in the user's terminal, rather than in
    every attempt of the job)."""
    from tools.store.gen_index import GenerationIndex

    GenerationIndex(settings.paths.state / "generations.sqlite").ensure_readable()
    journal = JobJournal.for_state(settings.paths.state)
    journal.ensure_readable()
    prefetch_models(settings)
    return journal


def queue_job(
    journal: JobJournal, settings: Settings, specs: list[ImageSpec], label: str | None = None
) -> str:
    """Enqueue the specs as one job of the journal `ready_to_submit` gave; returns its id."""
    return journal.submit(
        [spec.model_dump(mode="json") for spec in specs],
        label=label,
        overrides=settings_overrides(settings),
        settings=settings.model_dump(mode="json"),
    )


def submit_job(
    settings: Settings, specs: list[ImageSpec], label: str | None = None
) -> tuple[JobJournal, str]:
    journal = ready_to_submit(settings)
    return journal, queue_job(journal, settings, specs, label)


def wait_for_job(
    settings: Settings,
    job_id: str,
    on_update: Callable[[Job], None] | None = None,
    poll: float = 0.2,
    timeout: float | None = None,
) -> Job:
    """Poll the journal until the job finishes, restarting the worker if it went away."""
    journal = JobJournal.for_state(settings.paths.state)
    restarts, last_check = 0, time.monotonic()
    deadline = None if timeout is None else last_check + timeout
    while True:
        job = journal.get(job_id)
        if on_update is not None:
            on_update(job)
        if job.finished:
            return job
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError(f"job {job_id} is still {job.state} after {timeout:g} s")
        if time.monotonic() - last_check > WORKER_CHECK_SECONDS:
            last_check = time.monotonic()
            if not worker_running(settings.paths.state):
                if restarts >= CLIENT_RESTARTS:
                    raise UserError(
                        "the worker keeps stopping before the job is done",
                        f"see {log_path(settings.paths.state)}",
                    )
                start_background(settings)
                restarts += 1
        time.sleep(poll)


def job_records(job: Job) -> list[OutputRecord]:
    from tools.generation.specs import OutputRecord

    return [OutputRecord.model_validate(image.record) for image in job.images if image.record]


def raise_unless_done(job: Job, state: Path) -> None:
    if job.state == JobState.DONE:
        return
    if job.state == JobState.CANCELLED:
        raise UserError(f"job {job.id} was cancelled", f"anime-gen jobs retry {job.id}")
    # A user error keeps its own hint (`UserError.__str__` is "message\nhint: ...").
    reason, _, fix = (job.error or "").partition("\nhint: ")
    retry = f"anime-gen jobs retry {job.id}"
    raise UserError(
        f"job {job.id} failed: {reason}",
        f"{fix}; then {retry}" if fix else f"{retry} (the worker's log: {log_path(state)})",
    )


def run_in_worker(
    settings: Settings,
    specs: list[ImageSpec],
    on_image: Callable[[OutputRecord], None] | None = None,
    label: str | None = None,
    cancel_on_interrupt: bool = False,
) -> list[OutputRecord]:
    """Submit the specs as one job, make sure a worker runs, wait; the records in spec order.

    Ctrl-C stops waiting; with `cancel_on_interrupt` it also cancels the job (the chat's
    "cancel the current request"), otherwise the job keeps running in the worker.
    """
    from tools.generation.specs import OutputRecord

    journal, job_id = submit_job(settings, specs, label)
    reported: set[int] = set()

    def report(job: Job) -> None:
        for image in job.images:
            if image.record and image.index not in reported:
                reported.add(image.index)
                if on_image is not None:
                    on_image(OutputRecord.model_validate(image.record))

    try:
        ensure_worker(settings)
        job = wait_for_job(settings, job_id, report)
    except KeyboardInterrupt:
        if cancel_on_interrupt:
            journal.cancel(job_id)
        raise
    raise_unless_done(job, settings.paths.state)
    return job_records(job)
