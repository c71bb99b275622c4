"""Image leases: how several render workers (one per GPU, or Ray actors) share jobs.

A worker leases pending images under its own token (`claim_images`), beats the lease while it
draws, and commits each image under that lease (`lease_done`); a worker that dies or hangs loses
its leases (`lease_failed`), which puts those images back for any worker. An image's key names
its file, so a redraw rewrites the same file and every image lands exactly once.
"""

from __future__ import annotations

import json
import sqlite3
import time
import uuid
from collections.abc import Callable
from typing import Any

from tools.jobs.job import ImageState, Job, JobState
from tools.jobs.journal_db import MAX_BACKOFF, JournalDatabase, fail_or_requeue

QUEUED, RUNNING = JobState.QUEUED, JobState.RUNNING


class ImageLeases(JournalDatabase):
    def claim_images(
        self,
        worker: str,
        token: str,
        worker_pid: int,
        limit: int | Callable[[dict[str, Any]], int] = 1,
        job_id: str | None = None,
        started: bool = True,
    ) -> tuple[Job, list[int]] | None:
        """Lease up to `limit` pending images of the next runnable job (or of `job_id`) for one
        worker; `limit` may be a function of the job's request (its settings' batch size).
        Not `started`: the worker may not run them at once (a Ray task that can wait in its
        actor) and says when it does (`lease_started`).

        A queued job becomes running (one more attempt); a running one lends its images that no
        worker holds, so one job spreads over every free worker.
        """
        now = time.time()
        with self.transaction() as db:
            row = db.execute(
                "SELECT id, state, request FROM jobs WHERE"
                " ((state = ? AND (not_before <= ? OR not_before > ?)) OR state = ?)"
                " AND (? IS NULL OR id = ?)"
                " AND EXISTS (SELECT 1 FROM job_images i WHERE i.job_id = jobs.id"
                " AND i.state != ? AND i.lease IS NULL)"
                " ORDER BY priority, seq LIMIT 1",
                (QUEUED, now, now + MAX_BACKOFF, RUNNING, job_id, job_id, ImageState.DONE),
            ).fetchone()
            if row is None:
                return None
            if callable(limit):
                limit = limit(json.loads(row["request"]))
            if row["state"] == QUEUED:
                db.execute(
                    "UPDATE jobs SET state = ?, attempts = attempts + 1, run_token = ?,"
                    " progress = NULL WHERE id = ?",
                    (RUNNING, uuid.uuid4().hex, row["id"]),
                )
            db.execute(
                "UPDATE jobs SET heartbeat = ?, updated = ?, worker_pid = ? WHERE id = ?",
                (now, now, worker_pid, row["id"]),
            )
            indices = [
                image["idx"]
                for image in db.execute(
                    "SELECT idx FROM job_images WHERE job_id = ? AND state != ? AND lease IS NULL"
                    " ORDER BY idx LIMIT ?",
                    (row["id"], ImageState.DONE, limit),
                )
            ]
            db.executemany(
                "UPDATE job_images SET lease = ?, lease_beat = ?, tries = tries + 1,"
                " lease_started = ? WHERE job_id = ? AND idx = ?",
                [(token, now, int(started), row["id"], index) for index in indices],
            )
            job = self._load(db, row["id"])
        assert job is not None
        return job, indices

    def beat_lease(self, job_id: str, token: str, progress: dict[str, Any] | None = None) -> bool:
        """Beat a worker's leases on a job; False once they are gone or the job was ended."""
        now = time.time()
        with self.transaction() as db:
            held = db.execute(
                "UPDATE job_images SET lease_beat = ? WHERE job_id = ? AND lease = ?",
                (now, job_id, token),
            ).rowcount
            db.execute(
                "UPDATE jobs SET heartbeat = ?, progress = COALESCE(?, progress)"
                " WHERE id = ? AND state IN (?, ?)",
                (now, json.dumps(progress) if progress else None, job_id, QUEUED, RUNNING),
            )
            row = db.execute("SELECT state FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return bool(held) and row is not None and row["state"] in (QUEUED, RUNNING)

    def lease_done(
        self,
        job_id: str,
        index: int,
        token: str,
        worker: str,
        path: str | None,
        record: dict[str, Any],
    ) -> bool:
        """Commit one leased image (its file is on disk); the last one finishes the job."""
        now = time.time()
        with self.transaction() as db:
            changed = db.execute(
                "UPDATE job_images SET state = ?, path = ?, record = ?, worker = ?, lease = NULL"
                " WHERE job_id = ? AND idx = ? AND lease = ?",
                (ImageState.DONE, path, json.dumps(record), worker, job_id, index, token),
            ).rowcount
            if not changed:
                return False
            missing = db.execute(
                "SELECT COUNT(*) FROM job_images WHERE job_id = ? AND state != ?",
                (job_id, ImageState.DONE),
            ).fetchone()[0]
            if missing:
                db.execute("UPDATE jobs SET updated = ? WHERE id = ?", (now, job_id))
            else:
                db.execute(
                    "UPDATE jobs SET state = ?, updated = ?, error = NULL, progress = NULL,"
                    " run_token = NULL WHERE id = ? AND state IN (?, ?)",
                    (JobState.DONE, now, job_id, QUEUED, RUNNING),
                )
        return True

    def lease_failed(
        self,
        token: str,
        reason: str,
        max_attempts: int,
        backoff: float,
        low_memory: bool = False,
    ) -> dict[str, JobState | None]:
        """A worker's run failed (it died, hung or raised): its images go back to the queue,
        each one failed try more. A job gives up (fails) once one of its images has failed
        `max_attempts` tries, its index in the reason; otherwise it backs off. Attempts count
        per image, so one-off failures of different images never add up to a give-up.
        Returns {job id: its new state, None when the job no longer runs}."""
        with self.transaction() as db:
            dropped = db.execute(
                "SELECT job_id, idx, tries FROM job_images WHERE lease = ? ORDER BY tries DESC,"
                " idx",
                (token,),
            ).fetchall()
            _drop_leases(db, token)
            worst: dict[str, sqlite3.Row] = {}
            for row in dropped:
                worst.setdefault(row["job_id"], row)
            states: dict[str, JobState | None] = {}
            for job_id, image in worst.items():
                state = db.execute("SELECT state FROM jobs WHERE id = ?", (job_id,)).fetchone()
                if state is None or state["state"] != RUNNING:
                    states[job_id] = None
                    continue
                states[job_id] = fail_or_requeue(
                    db,
                    job_id,
                    reason,
                    image["tries"],
                    max_attempts,
                    backoff,
                    low_memory,
                    f" at image {image['idx']}",
                )
        return states

    def release_leases(self, token: str, requeue: bool = False) -> None:
        """Give a worker's images back without counting a failure (a smaller batch next, an
        ended run): the try is not counted. With `requeue` (the worker was stopped on
        purpose), a running job that no worker holds any more waits in the queue again, its
        attempt not counted."""
        with self.transaction() as db:
            jobs = _drop_leases(db, token, uncount=True)
            for job_id in jobs if requeue else []:
                db.execute(
                    "UPDATE jobs SET state = ?, attempts = MAX(attempts - 1, 0), run_token = NULL,"
                    " progress = NULL, updated = ? WHERE id = ? AND state = ? AND NOT EXISTS"
                    " (SELECT 1 FROM job_images WHERE job_id = ? AND lease IS NOT NULL)",
                    (QUEUED, time.time(), job_id, RUNNING, job_id),
                )

    def lease_started(self, token: str) -> None:
        """The worker runs the images it leased under `token` (they waited until now)."""
        with self.transaction() as db:
            db.execute("UPDATE job_images SET lease_started = 1 WHERE lease = ?", (token,))

    def clear_leases(self) -> None:
        """Drop every lease: called when no worker of this home can be alive. A started lease
        was a try; one that never started (a Ray task waiting behind the running one when the
        head was killed) is given back uncounted, a fault marked for it still due (as
        `RayHead._stop` does for a head that stops or fails)."""
        with self.transaction() as db:
            db.execute(
                "UPDATE job_images SET tries = MAX(tries - 1, 0),"
                " fault_fired = CASE WHEN fault_lease = lease THEN 0 ELSE fault_fired END"
                " WHERE lease IS NOT NULL AND NOT lease_started"
            )
            db.execute("UPDATE job_images SET lease = NULL WHERE lease IS NOT NULL")

    def lease_beats(self) -> dict[str, float]:
        """Each held lease token with its latest beat (a wall-clock stamp: only its changes mean
        anything to a watcher, see `BeatWatch`)."""
        with self.transaction() as db:
            rows = db.execute(
                "SELECT lease, MAX(lease_beat) AS beat FROM job_images"
                " WHERE lease IS NOT NULL GROUP BY lease"
            ).fetchall()
        return {row["lease"]: row["beat"] for row in rows}

    def mark_fault_fired(self, job_id: str, index: int) -> bool:
        """True once per image: a once-only injected fault fires on whichever worker asks first."""
        with self.transaction() as db:
            return bool(
                db.execute(
                    "UPDATE job_images SET fault_fired = 1, fault_lease = lease"
                    " WHERE job_id = ? AND idx = ? AND fault_fired = 0",
                    (job_id, index),
                ).rowcount
            )

    def unfire_faults(self, job_id: str, indices: list[int]) -> None:
        """Once-only faults marked for a task that never ran (it waited in an actor that
        died): they fire on the images' next try instead."""
        with self.transaction() as db:
            db.executemany(
                "UPDATE job_images SET fault_fired = 0 WHERE job_id = ? AND idx = ?",
                [(job_id, index) for index in indices],
            )


class BeatWatch:
    """Which leases nobody beat for a while, in the watcher's own monotonic time.

    Workers stamp their beats with the wall clock (the journal is shared by processes), and a
    clock step (NTP, a laptop resume) would make every lease look silent, or a hung one look
    fresh for as long as the clock went back. So the stamps are only compared with themselves:
    a lease is silent once its stamp has not changed for `older_than` s of `clock`."""

    def __init__(self, leases: ImageLeases, clock: Callable[[], float] = time.monotonic) -> None:
        self.leases = leases
        self.clock = clock
        self._seen: dict[str, tuple[float, float]] = {}  # token -> (stamp, when it changed)

    def silent(self, older_than: float) -> dict[str, float]:
        """Tokens whose beat has not changed for `older_than` s, with the seconds since."""
        now = self.clock()
        beats = self.leases.lease_beats()
        self._seen = {
            token: seen if (seen := self._seen.get(token)) and seen[0] == beat else (beat, now)
            for token, beat in beats.items()
        }
        return {
            token: now - since
            for token, (_, since) in self._seen.items()
            if now - since > older_than
        }


def _drop_leases(db: sqlite3.Connection, token: str, uncount: bool = False) -> list[str]:
    """Take a worker's leases away (`uncount`: the tries were not failures); their jobs."""
    jobs = [
        row["job_id"]
        for row in db.execute("SELECT DISTINCT job_id FROM job_images WHERE lease = ?", (token,))
    ]
    db.execute(
        "UPDATE job_images SET lease = NULL, tries = MAX(tries - ?, 0) WHERE lease = ?",
        (int(uncount), token),
    )
    return jobs
