"""The core API: status, characters, pose search, generation plans, jobs and their live events.

Every answer keeps the CLI's contract JSON shape (docs/CONTRACT.md), so a client prints it as is.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import FileResponse, StreamingResponse
from pydantic import BaseModel, Field

from tools.server.client import process_environment
from tools.server.generation import GenerateBody, plan_generation, planned_outputs
from tools.server.job_events import JobEvents, job_detail
from tools.server.security import IMAGE_SUFFIXES, guard_path
from tools.server.studio import request_settings, require_my_environment, studio_of
from tools.settings import Settings

core_router = APIRouter(prefix="/api")
EVENT_POLL_SECONDS = 0.1


class PoseSearchBody(BaseModel):
    text: str
    k: int = Field(3, ge=1, le=100)
    posture: str | None = None


@core_router.get("/status")
def status(request: Request) -> dict[str, Any]:
    studio = studio_of(request)
    return {
        "pid": os.getpid(),
        "host": studio.host,
        "port": studio.port,
        "home": str(studio.home),
        "background": studio.background,
        "busy": studio.busy(own_requests=1),
        # What the server and the workers it starts read at start-up (see `EnvironmentMismatch`).
        "env": process_environment(dict(os.environ)),
    }


@core_router.get("/characters")
def characters(settings: Settings = Depends(request_settings)) -> list[dict[str, str]]:
    from tools.characters.library import CharacterLibrary
    from tools.server.library import character_entry

    return [character_entry(c) for c in CharacterLibrary(settings.paths).list()]


@core_router.post("/poses/search")
def poses_search(body: PoseSearchBody, request: Request) -> list[dict[str, Any]]:
    matches = studio_of(request).poses.search(body.text, k=body.k, posture=body.posture)
    return [
        {"id": m.pose.id, "name": m.pose.name, "tags": m.pose.tags, "score": m.score}
        for m in matches
    ]


@core_router.post("/generate/plan")
def generate_plan(
    body: GenerateBody, request: Request, settings: Settings = Depends(request_settings)
) -> dict[str, Any]:
    """`anime-gen ... --dry-run --json`: the planned images (path null), plus notices."""
    notices: list[str] = []
    specs = plan_generation(studio_of(request).runtime(settings), body, notices.append)
    return {**planned_outputs(specs), "notices": notices}


@core_router.post("/jobs")
def submit(
    body: GenerateBody, request: Request, settings: Settings = Depends(request_settings)
) -> dict[str, Any]:
    """Plan and queue one job (rendered with this request's overrides); `{"job": id}`."""
    from tools.jobs.client import ensure_worker, submit_job

    require_my_environment(request)
    notices: list[str] = []
    specs = plan_generation(studio_of(request).runtime(settings), body, notices.append)
    _, job_id = submit_job(settings, specs, body.label)
    ensure_worker(settings)
    return {"job": job_id, "notices": notices}


def _journal(request: Request) -> Any:
    from tools.jobs.journal import JobJournal

    return JobJournal.for_state(studio_of(request).state)


def _job(request: Request, job_id: str) -> Any:
    job = _journal(request).find(job_id)
    if job is None:
        raise HTTPException(404, f"no job {job_id}")
    return job


@core_router.get("/jobs")
def jobs(request: Request, limit: int = Query(50, ge=1, le=1000)) -> list[dict[str, Any]]:
    return [job.summary() for job in _journal(request).list(limit)]


@core_router.get("/jobs/{job_id}")
def job(job_id: str, request: Request) -> dict[str, Any]:
    return job_detail(_job(request, job_id))


@core_router.post("/jobs/{job_id}/cancel")
def cancel(job_id: str, request: Request) -> dict[str, Any]:
    found = _job(request, job_id)
    return {"job": found.id, "cancelled": _journal(request).cancel(found.id)}


@core_router.post("/jobs/{job_id}/retry")
def retry(job_id: str, request: Request, settings: Settings = Depends(request_settings)) -> Any:
    from tools.jobs.client import ensure_worker

    found = _job(request, job_id)
    queued = _journal(request).retry(found.id)
    if queued:
        ensure_worker(settings)
    return {"job": found.id, "queued": queued}


@core_router.get("/jobs/{job_id}/wait")
async def wait(
    job_id: str, request: Request, timeout: float = Query(600.0, gt=0, le=86400)
) -> dict[str, Any]:
    """Answer when the job has finished (or after `timeout` seconds, unfinished)."""
    found = _job(request, job_id)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not found.finished and loop.time() < deadline:
        await asyncio.sleep(EVENT_POLL_SECONDS * 2)
        found = await asyncio.to_thread(_journal(request).get, found.id)
    return job_detail(found)


def _event(kind: str, data: Any) -> str:
    return f"event: {kind}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


@core_router.get("/jobs/{job_id}/events")
async def events(job_id: str, request: Request) -> StreamingResponse:
    """Server-sent events: `progress` (state, image, step) whenever it changes and at each
    image's last step, `image` with each finished image's record, then `end` with the job."""
    studio = studio_of(request)
    first = _job(request, job_id)
    journal = _journal(request)

    async def stream() -> AsyncIterator[str]:
        studio.open_streams += 1
        try:
            follower = JobEvents()
            current = first
            while True:
                for kind, data in follower.update(current):
                    yield _event(kind, data)
                if current.finished:
                    return
                if await request.is_disconnected():
                    return
                await asyncio.sleep(EVENT_POLL_SECONDS)
                current = await asyncio.to_thread(journal.get, current.id)
        finally:
            studio.open_streams -= 1

    return StreamingResponse(stream(), media_type="text/event-stream")


@core_router.get("/file")
def file(request: Request, path: str) -> FileResponse:
    """An image from the output, character or state folders (nothing else: 404)."""
    resolved = guard_path(path, studio_of(request).roots())
    # Images only: an .html or .svg dropped in a folder would run script on this origin.
    if resolved.suffix.lower() not in IMAGE_SUFFIXES or not resolved.is_file():
        raise HTTPException(404, "not found")
    return FileResponse(resolved)
