"""A client's side of a job: queue it, follow its events to the end, and when the server stops
meanwhile, say which job goes on and how to follow it (never a traceback)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from tools.errors import UserError
from tools.server.client import ServerStopped, StudioClient, connect, server_log


def queue_job(client: StudioClient, body: dict[str, Any], flags: dict[str, Any]) -> dict[str, Any]:
    """`POST /api/jobs`: `{"job": id, "notices": [...]}`. A server that stops before it answers
    may have queued the job already: the journal says, and the error names it."""
    since = time.time()
    try:
        return client.call("POST", "/api/jobs", body, flags=flags)
    except ServerStopped as stopped:
        raise _lost_answer(client, since, stopped) from None


def _lost_answer(client: StudioClient, since: float, stopped: ServerStopped) -> UserError:
    from tools.jobs.journal import JobJournal

    log = server_log(client.home / ".anime-chat")
    # A second of slack: the journal's clock is this machine's, read in another process.
    queued = [
        job.id
        for job in JobJournal.for_state(client.home / ".anime-chat").list(50)
        if job.created >= since - 1.0
    ]
    if not queued:
        return UserError(
            f"{stopped.message}; no job was queued", f"run the command again (see {log})"
        )
    ids = ", ".join(queued)
    return UserError(
        f"the studio server stopped after queuing job {ids}, before answering",
        f"the job goes on: `anime-gen jobs wait {queued[0]}` follows it (see {log})",
    )


def follow_job(
    client: StudioClient,
    job_id: str,
    on_progress: Callable[[dict[str, Any]], None] | None = None,
    restarts: int = 3,
) -> list[dict[str, Any]]:
    """Follow the job's events until it ends; the server going away (crash, kill -9) is
    survived by starting it again (the job is in the journal and goes on). Returns the image
    records in order, or raises the job's error as a `UserError` with the retry command."""
    while True:
        try:
            for kind, data in client.events(job_id):
                if kind == "progress" and on_progress is not None:
                    on_progress(data)
                elif kind == "end":
                    return _records_or_error(data)
        except (OSError, ServerStopped):
            if restarts <= 0:
                raise UserError(
                    f"the studio server keeps stopping before job {job_id} is done",
                    f"the job is queued and goes on: `anime-gen jobs wait {job_id}` follows it"
                    f" (why the server stops: {server_log(client.home / '.anime-chat')})",
                ) from None
            restarts -= 1
            time.sleep(0.5)
            client = connect(client.home)


def _records_or_error(job: dict[str, Any]) -> list[dict[str, Any]]:
    if job["state"] == "done":
        return job["records"]
    retry = f"anime-gen jobs retry {job['id']}"
    if job["state"] == "cancelled":
        raise UserError(f"job {job['id']} was cancelled", retry)
    reason, _, fix = (job.get("error") or "").partition("\nhint: ")
    raise UserError(f"job {job['id']} failed: {reason}", f"{fix}; then {retry}" if fix else retry)
