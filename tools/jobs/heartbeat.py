"""The worker's pulse: it beats its leases in the journal so the supervisor can tell a hang
from slow work, and learns there that its run was cancelled or taken away."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from tools.jobs.job import Job, JobState
from tools.jobs.journal import JobJournal

log = logging.getLogger("anime.worker")

BEAT_EVERY = 0.25  # seconds between journal writes; the watchdog allows hang_timeout
# How long loading models (and calibrating) may take, in hang_timeouts, before the keep-alive
# falls silent (the Ray head gives a fresh actor the same allowance).
LOAD_GRACE = 3.0
LOAD_GRACE_MIN = 60.0


def load_allowance(hang_timeout: float) -> float:
    """Seconds a worker may spend loading before its silence counts as a hang."""
    return max(LOAD_GRACE_MIN, LOAD_GRACE * hang_timeout)


class RunEnded(Exception):
    """The job was cancelled, or its run was taken away (the watchdog gave up on it)."""


class Heartbeat:
    """The step callback: records progress at most every BEAT_EVERY s (and at each run's last
    step), stops cancelled runs.

    With a lease `token` it beats the worker's image leases (several workers per job), else the
    job's whole run."""

    def __init__(self, journal: JobJournal, job: Job, token: str | None = None) -> None:
        self.journal = journal
        self.job = job
        self.token = token
        self.progress: dict[str, Any] = {}
        self._last = 0.0

    def alive(self, progress: dict[str, Any]) -> bool:
        if self.token is not None:
            return self.journal.beat_lease(self.job.id, self.token, progress)
        return self.journal.beat(self.job, progress) == JobState.RUNNING

    def beat(self, force: bool = False, **progress: Any) -> None:
        self.progress.update(progress)
        now = time.monotonic()
        if not force and now - self._last < BEAT_EVERY:
            return
        self._last = now
        if not self.alive(dict(self.progress)):
            raise RunEnded(self.job.id)

    def on_step(self, step: int, steps: int) -> None:
        # An image's last step is always recorded: on a fast machine a whole image can finish
        # inside one BEAT_EVERY, and a client following the job must still see its steps.
        self.beat(force=step >= steps, step=step, steps=steps)


class Keepalive:
    """Beats from a thread while models load: no step callback runs then, and loading is slow.

    Beats mean progress, and a load shows none: so it beats for `limit` seconds at most, then
    falls silent and the watchdog takes a load stuck that long for a hang."""

    def __init__(self, heartbeat: Heartbeat, limit: float, every: float = 1.0) -> None:
        self.heartbeat = heartbeat
        self.limit = limit
        self.every = every
        self.expired = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        deadline = time.monotonic() + self.limit
        while not self._stop.wait(self.every):
            if time.monotonic() > deadline:
                log.warning("loading has taken over %.0f s: no more beats", self.limit)
                self.expired.set()
                return
            try:
                self.heartbeat.alive({"phase": "loading"})
            except Exception:  # a failed beat only makes the watchdog stricter
                log.exception("heartbeat while loading failed")

    def __enter__(self) -> Keepalive:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
