"""What a job's event stream says, from successive reads of the journal.

The stream samples the journal, so a fast render can start and finish an image between two
samples. Each newly finished image is therefore preceded by a `progress` event at its last step
unless a sample already showed it: a client sees every image's steps end, then its `image`
event, then `end` with the finished job, whatever the speed of the machine.
"""

from __future__ import annotations

from typing import Any

from tools.jobs.job import Job

Event = tuple[str, dict[str, Any]]


def job_detail(job: Job) -> dict[str, Any]:
    """The job's summary plus its live progress and each finished image's record."""
    return {
        **job.summary(),
        "progress": job.progress,
        "records": [image.record for image in job.images if image.record],
    }


class JobEvents:
    """Turns each read of one job into the events not sent yet."""

    def __init__(self) -> None:
        self._shown: Any = None
        self._sent: set[int] = set()
        # image -> (highest step shown, steps), from the samples that caught it rendering
        self._steps: dict[int, tuple[int, int | None]] = {}

    def update(self, job: Job) -> list[Event]:
        events: list[Event] = []
        progress = job.progress
        self._note(progress)
        for image in job.images:
            if image.record and image.index not in self._sent:
                self._sent.add(image.index)
                last = self._last_step(job, image.index)
                if last is not None:
                    events.append(("progress", _progress(job, last)))
                events.append(("image", {"index": image.index, "record": image.record}))
        shown = (job.state, job.done_count, progress)
        if shown != self._shown:
            self._shown = shown
            events.append(("progress", _progress(job, progress)))
        if job.finished:
            events.append(("end", job_detail(job)))
        return events

    def _note(self, progress: dict[str, Any]) -> None:
        image, step = progress.get("image"), progress.get("step")
        if isinstance(image, int) and isinstance(step, int):
            shown, _ = self._steps.get(image, (0, None))
            self._steps[image] = (max(shown, step), progress.get("steps"))

    def _last_step(self, job: Job, index: int) -> dict[str, Any] | None:
        """The progress of image `index` at its last step, unless a sample already showed it."""
        shown, steps = self._steps.get(index, (0, None))
        if steps is None:
            output = (job.request.get("settings") or {}).get("output") or {}
            steps = output.get("steps")
        if not isinstance(steps, int) or shown >= steps:
            return None
        return {"phase": "rendering", "image": index, "step": steps, "steps": steps}


def _progress(job: Job, progress: dict[str, Any]) -> dict[str, Any]:
    return {
        "job": job.id,
        "state": job.state,
        "done": job.done_count,
        "images": len(job.images),
        **{key: progress.get(key) for key in ("phase", "image", "step")},
        "steps": progress.get("steps"),
    }
