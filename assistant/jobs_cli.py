"""`anime-gen jobs ...` (the queue and its history) and `anime-gen worker` (the warm worker)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from assistant.cli_common import GuardedGroup, print_json, settings_from_flags
from tools.text import plural

if TYPE_CHECKING:
    from tools.jobs.job import Job
    from tools.jobs.journal import JobJournal

jobs_app = typer.Typer(
    cls=GuardedGroup,
    help="The job queue and its history.",
    invoke_without_command=True,
)


def _journal() -> JobJournal:
    from tools.jobs.journal import JobJournal

    return JobJournal.for_state(settings_from_flags().paths.state)


def _job(journal: JobJournal, job_id: str) -> Job:
    from tools.errors import UserError

    job = journal.find(job_id)
    if job is None:
        raise UserError(
            f"no job '{job_id}' (or the prefix matches several)", "see `anime-gen jobs`"
        )
    return job


@jobs_app.callback()
def jobs_list(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print the jobs as JSON.")] = False,
    limit: Annotated[int, typer.Option("--limit", help="How many jobs to show.")] = 50,
) -> None:
    """Show the queue (next first), then the finished jobs (newest first)."""
    if ctx.invoked_subcommand is not None:
        return
    from tools.jobs.processes import worker_running

    settings = settings_from_flags()
    jobs = _journal().list(limit)
    if as_json:
        newest_first = sorted(jobs, key=lambda job: job.created, reverse=True)
        print_json([job.summary() for job in newest_first])
        return
    from tools.jobs.job import worker_throughput

    typer.echo("worker: " + ("running" if worker_running(settings.paths.state) else "not running"))
    if not jobs:
        typer.echo("no jobs yet")
    for job in jobs:
        typer.echo(job.describe())
    for name, (images, seconds) in worker_throughput(jobs).items():
        rate = f", {images / seconds * 60:.1f} images/min while drawing" if seconds else ""
        typer.echo(f"  {name}: {plural(images, 'image')}{rate}")


@jobs_app.command("cancel")
def jobs_cancel(job_id: Annotated[str, typer.Argument(metavar="ID")]) -> None:
    """Cancel a queued or running job (done images stay)."""
    from tools.errors import UserError

    journal = _journal()
    job = _job(journal, job_id)
    if not journal.cancel(job.id):
        raise UserError(f"job {job.id} is already {job.state}")
    typer.echo(f"cancelled {job.id}")


@jobs_app.command("retry")
def jobs_retry(job_id: Annotated[str, typer.Argument(metavar="ID")]) -> None:
    """Queue a failed or cancelled job again; it resumes at its first image not yet done."""
    from tools.errors import UserError
    from tools.jobs.client import ensure_worker

    journal = _journal()
    job = _job(journal, job_id)
    if not journal.retry(job.id):
        raise UserError(f"job {job.id} is {job.state}; only failed or cancelled jobs are retried")
    ensure_worker(settings_from_flags())
    typer.echo(f"queued {job.id} again")


@jobs_app.command("wait")
def jobs_wait(
    job_id: Annotated[str | None, typer.Argument(metavar="[ID]")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Wait for a job (or every unfinished job), with progress; exit 1 if one did not finish."""
    from assistant.progress import wait_with_progress
    from tools.generation.runtime import Runtime
    from tools.jobs.client import ensure_worker
    from tools.jobs.job import JobState

    runtime = Runtime(settings_from_flags())
    journal = _journal()
    if job_id is not None:
        ids = [_job(journal, job_id).id]
    else:
        ids = [job.id for job in journal.list(1000) if not job.finished]
    if ids:
        ensure_worker(runtime.settings)
    finished = [wait_with_progress(runtime, one, quiet=as_json) for one in ids]
    if as_json:
        print_json([job.summary() for job in finished])
    else:
        for job in finished:
            typer.echo(job.describe())
    if any(job.state != JobState.DONE for job in finished):
        raise typer.Exit(1)


def worker_command(
    ray: Annotated[
        str | None,
        typer.Option(
            "--ray",
            metavar="ADDRESS",
            help="Render on a Ray cluster: auto, local (start one here) or its address.",
        ),
    ] = None,
    slots: Annotated[
        int | None,
        typer.Option("--slots", min=1, help="With --ray: N CPU actors instead of one per GPU."),
    ] = None,
) -> None:
    """Run the warm worker in the foreground (the CLIs start one in the background anyway)."""
    import logging

    from tools.jobs.supervisor import Supervisor

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    settings = settings_from_flags()
    if ray is not None:
        from tools.jobs.ray_workers import run_ray_worker

        typer.echo(f"ray worker for {settings.paths.state} on {ray} (Ctrl-C stops it)", err=True)
        raise typer.Exit(run_ray_worker(settings, ray, slots))
    if slots is not None:
        from tools.errors import UserError

        raise UserError("--slots goes with --ray", "anime-gen worker --ray local --slots 2")
    typer.echo(
        f"worker for {settings.paths.state}: keep_alive {settings.worker.keep_alive:g} s, "
        f"hang_timeout {settings.worker.hang_timeout:g} s (Ctrl-C stops it)",
        err=True,
    )
    raise typer.Exit(Supervisor(settings).run())
