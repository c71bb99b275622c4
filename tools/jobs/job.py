"""What the journal stores, as Python values: a job, its images and their states.

`JobState` and `ImageState` are `StrEnum`s, so the values stored in SQLite and printed by
`anime-gen jobs --json` stay the plain strings they always were ("queued", "done", ...).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from tools.text import plural


class JobState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in FINISHED


class ImageState(StrEnum):
    PENDING = "pending"
    DONE = "done"


FINISHED = (JobState.DONE, JobState.FAILED, JobState.CANCELLED)
UNFINISHED = (JobState.QUEUED, JobState.RUNNING)


@dataclass
class JobImage:
    index: int
    key: str
    spec: dict[str, Any]
    state: ImageState
    path: str | None
    record: dict[str, Any] | None
    worker: str | None = None
    tries: int = 0


@dataclass
class Job:
    id: str
    created: float
    updated: float
    priority: int
    state: JobState
    attempts: int
    not_before: float
    heartbeat: float | None
    progress: dict[str, Any]
    worker_pid: int | None
    run_token: str | None
    error: str | None
    low_memory: bool
    request: dict[str, Any]
    images: list[JobImage] = field(default_factory=list)

    @property
    def done_count(self) -> int:
        return sum(1 for image in self.images if image.state == ImageState.DONE)

    @property
    def finished(self) -> bool:
        return self.state.finished

    @property
    def workers(self) -> list[str]:
        """Each distinct worker that drew an image of the job, in the order they first did."""
        return list(dict.fromkeys(image.worker for image in self.images if image.worker))

    def describe(self) -> str:
        """One line for `anime-gen jobs` and the chat's /jobs."""
        what = f"{','.join(self.request['characters'])} / {self.request['pose']}"
        error = f"  {self.error}" if self.error and self.state != JobState.DONE else ""
        workers = f"  by {','.join(self.workers)}" if self.workers else ""
        return (
            f"{self.id}  {self.state:<9} {self.done_count}/{plural(len(self.images), 'image')}"
            f"  attempts {self.attempts}  {what}{workers}{error}"
        )

    def what(self) -> str:
        """What the job draws, in words: "sakura, rin · standing_01 · 3 images"."""
        request = self.request
        poses = request.get("poses") or [request.get("pose")]
        pose = poses[0] if len(poses) == 1 else plural(len(poses), "pose")
        characters = ", ".join(request.get("characters") or ())
        return " · ".join(filter(None, [characters, pose, plural(len(self.images), "image")]))

    def summary(self) -> dict[str, Any]:
        """The `anime-gen jobs --json` shape of one job."""
        return {
            "id": self.id,
            "state": str(self.state),
            "label": self.request.get("label"),
            "what": self.what(),
            "queued": datetime.fromtimestamp(self.created, UTC).isoformat(timespec="seconds"),
            "images_done": self.done_count,
            "images_total": len(self.images),
            "workers": self.workers,
            "request": self.request,
            "images": len(self.images),
            "done": self.done_count,
            "attempts": self.attempts,
            "error": self.error,
            "created": self.created,
            "updated": self.updated,
            "heartbeat": self.heartbeat,
            "outputs": [image.path for image in self.images if image.state == ImageState.DONE],
        }


def worker_throughput(jobs: list[Job]) -> dict[str, tuple[int, float]]:
    """Per worker: images drawn and the seconds spent drawing them (from the image records)."""
    totals: dict[str, tuple[int, float]] = {}
    for job in jobs:
        for image in job.images:
            if image.worker and image.state == ImageState.DONE:
                count, seconds = totals.get(image.worker, (0, 0.0))
                spent = (image.record or {}).get("seconds") or 0.0
                totals[image.worker] = (count + 1, seconds + spent)
    return dict(sorted(totals.items()))


def describe_request(
    specs: list[dict[str, Any]],
    label: str | None,
    overrides: dict[str, Any],
    settings: dict[str, Any] | None = None,
) -> dict[str, Any]:
    first = specs[0]
    return {
        "label": label,
        "overrides": overrides,
        "settings": settings,
        "characters": sorted({spec["character"] for spec in specs}),
        "pose": first["pose"]["id"],
        "poses": list(dict.fromkeys(spec["pose"]["id"] for spec in specs)),
        "prompt": first.get("user_prompt", ""),
        "seed": first["seed"],
        "count": len(specs),
    }
