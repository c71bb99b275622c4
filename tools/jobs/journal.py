"""The job journal: every request is a job in SQLite (WAL) under the state dir; it is the truth.

A job holds the planned `ImageSpec`s of one request and tracks its images one by one: an image is
done only after `Generator.produce` has written its file (atomically) and the row here is
committed. Every state change is one IMMEDIATE transaction, so several front ends and the worker
can use the journal at once. Updates that belong to one run of a job are conditioned on its
`run_token`, so a worker that was given up on cannot overwrite what its successor did.

Several render workers (one per GPU, or Ray actors) share jobs image by image: a worker leases
pending images under its own token (`claim_images`), beats the lease while it draws, and commits
each image under that lease (`lease_done`); a worker that dies or hangs loses its leases
(`lease_failed`), which puts those images back for any worker. An image's key names its file, so
a redraw rewrites the same file and every image lands exactly once.
"""

from __future__ import annotations

import json
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tools.sqlite_db import Database, add_missing_columns

QUEUED, RUNNING, DONE, FAILED, CANCELLED = "queued", "running", "done", "failed", "cancelled"
FINISHED = (DONE, FAILED, CANCELLED)
# Requests up to this many images count as interactive and go ahead of larger batches.
INTERACTIVE_MAX_IMAGES = 4
JOURNAL_NAME = "jobs.sqlite"

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    seq INTEGER NOT NULL,
    created REAL NOT NULL,
    updated REAL NOT NULL,
    priority INTEGER NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    not_before REAL NOT NULL DEFAULT 0,
    heartbeat REAL,
    progress TEXT,
    worker_pid INTEGER,
    run_token TEXT,
    error TEXT,
    low_memory INTEGER NOT NULL DEFAULT 0,
    request TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_queue ON jobs(state, priority, seq);
CREATE TABLE IF NOT EXISTS job_images (
    job_id TEXT NOT NULL REFERENCES jobs(id),
    idx INTEGER NOT NULL,
    key TEXT NOT NULL,
    spec TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending',
    path TEXT,
    record TEXT,
    PRIMARY KEY (job_id, idx)
);
"""
# Columns added after the first release: journals written before them get them on open.
IMAGE_LEASE_COLUMNS = {
    "lease": "TEXT",  # the token of the worker drawing the image now, else NULL
    "lease_beat": "REAL",
    "tries": "INTEGER NOT NULL DEFAULT 0",  # how many times a worker leased it
    "fault_fired": "INTEGER NOT NULL DEFAULT 0",  # an injected once-only fault has fired
    "worker": "TEXT",  # the worker that drew it
}


@dataclass
class JobImage:
    index: int
    key: str
    spec: dict[str, Any]
    state: str
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
    state: str
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
        return sum(1 for image in self.images if image.state == DONE)

    @property
    def finished(self) -> bool:
        return self.state in FINISHED

    @property
    def workers(self) -> list[str]:
        """Each distinct worker that drew an image of the job, in the order they first did."""
        return list(dict.fromkeys(image.worker for image in self.images if image.worker))

    def describe(self) -> str:
        """One line for `anime-gen jobs` and the chat's /jobs."""
        what = f"{','.join(self.request['characters'])} / {self.request['pose']}"
        error = f"  {self.error}" if self.error and self.state != DONE else ""
        workers = f"  by {','.join(self.workers)}" if self.workers else ""
        return (
            f"{self.id}  {self.state:<9} {self.done_count}/{len(self.images)} images"
            f"  attempts {self.attempts}  {what}{workers}{error}"
        )

    def summary(self) -> dict[str, Any]:
        """The `anime-gen jobs --json` shape of one job."""
        return {
            "id": self.id,
            "state": self.state,
            "label": self.request.get("label"),
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
            "outputs": [image.path for image in self.images if image.state == DONE],
        }


def worker_throughput(jobs: list[Job]) -> dict[str, tuple[int, float]]:
    """Per worker: images drawn and the seconds spent drawing them (from the image records)."""
    totals: dict[str, tuple[int, float]] = {}
    for job in jobs:
        for image in job.images:
            if image.worker and image.state == DONE:
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
        "prompt": first.get("user_prompt", ""),
        "seed": first["seed"],
        "count": len(specs),
    }


class JobJournal:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._db = Database(
            path,
            SCHEMA,
            "job journal",
            f"move it aside (`mv {path} {path}.bad`); only the job history is lost",
        )
        with self.transaction() as db:
            add_missing_columns(db, "job_images", IMAGE_LEASE_COLUMNS)

    def ensure_readable(self) -> None:
        """Open the journal now, so a corrupt file is reported before any work starts."""
        with self.transaction():
            pass

    @classmethod
    def for_state(cls, state_dir: Path) -> JobJournal:
        return cls(state_dir / JOURNAL_NAME)

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """An IMMEDIATE transaction: one writer at a time across processes."""
        with self._db.transaction() as connection:
            yield connection

    # -- front ends ----------------------------------------------------------------------------
    def submit(
        self,
        specs: list[dict[str, Any]],
        label: str | None = None,
        priority: int | None = None,
        overrides: dict[str, Any] | None = None,
        settings: dict[str, Any] | None = None,
    ) -> str:
        """Enqueue the specs (plain dicts of `ImageSpec`) as one job; returns its id.

        `settings` are the submitter's resolved settings (config file as it was then, plus its
        flags and environment), so the worker renders the job exactly as the submitter resolved
        it even when the file changes later; `overrides` is what of them differs from the file.
        """
        if not specs:
            raise ValueError("a job needs at least one image")
        job_id = uuid.uuid4().hex[:10]
        if priority is None:
            priority = 0 if len(specs) <= INTERACTIVE_MAX_IMAGES else 1
        now = time.time()
        request = describe_request(specs, label, overrides or {}, settings)
        with self.transaction() as db:
            seq = db.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM jobs").fetchone()[0]
            db.execute(
                "INSERT INTO jobs (id, seq, created, updated, priority, state, request)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (job_id, seq, now, now, priority, QUEUED, json.dumps(request)),
            )
            db.executemany(
                "INSERT INTO job_images (job_id, idx, key, spec) VALUES (?, ?, ?, ?)",
                [(job_id, i, spec["key"], json.dumps(spec)) for i, spec in enumerate(specs)],
            )
        return job_id

    def get(self, job_id: str) -> Job:
        with self.transaction() as db:
            job = self._load(db, job_id)
        if job is None:
            raise KeyError(job_id)
        return job

    def find(self, prefix: str) -> Job | None:
        """A job by its id or an unambiguous prefix of it."""
        with self.transaction() as db:
            rows = db.execute(
                "SELECT id FROM jobs WHERE id LIKE ? ESCAPE '\\'",
                (prefix.replace("%", r"\%").replace("_", r"\_") + "%",),
            ).fetchall()
            return self._load(db, rows[0]["id"]) if len(rows) == 1 else None

    def list(self, limit: int = 50) -> list[Job]:
        """Unfinished jobs in queue order, then finished ones, newest first."""
        with self.transaction() as db:
            rows = db.execute(
                "SELECT id FROM jobs ORDER BY state IN ('done', 'failed', 'cancelled'),"
                " CASE WHEN state IN ('queued', 'running') THEN priority ELSE 0 END,"
                " CASE WHEN state IN ('queued', 'running') THEN seq ELSE -seq END LIMIT ?",
                (limit,),
            ).fetchall()
            return [job for row in rows if (job := self._load(db, row["id"])) is not None]

    def cancel(self, job_id: str) -> bool:
        """Cancel a job that has not finished; the worker stops it at its next step."""
        with self.transaction() as db:
            changed = db.execute(
                "UPDATE jobs SET state = ?, error = 'cancelled by the user', updated = ?"
                " WHERE id = ? AND state IN (?, ?)",
                (CANCELLED, time.time(), job_id, QUEUED, RUNNING),
            ).rowcount
        return bool(changed)

    def retry(self, job_id: str) -> bool:
        """Queue a failed or cancelled job again, with fresh attempts; done images are kept."""
        with self.transaction() as db:
            changed = db.execute(
                "UPDATE jobs SET state = ?, attempts = 0, not_before = 0, error = NULL,"
                " run_token = NULL, updated = ? WHERE id = ? AND state IN (?, ?)",
                (QUEUED, time.time(), job_id, FAILED, CANCELLED),
            ).rowcount
        return bool(changed)

    def pending_count(self) -> int:
        with self.transaction() as db:
            return db.execute(
                "SELECT COUNT(*) FROM jobs WHERE state IN (?, ?)", (QUEUED, RUNNING)
            ).fetchone()[0]

    # -- the worker ----------------------------------------------------------------------------
    def claim(self, worker_pid: int) -> Job | None:
        """Take the next runnable job (interactive first, then oldest) and mark it running."""
        now = time.time()
        with self.transaction() as db:
            row = db.execute(
                "SELECT id FROM jobs WHERE state = ? AND not_before <= ?"
                " ORDER BY priority, seq LIMIT 1",
                (QUEUED, now),
            ).fetchone()
            if row is None:
                return None
            db.execute(
                "UPDATE jobs SET state = ?, attempts = attempts + 1, heartbeat = ?, updated = ?,"
                " worker_pid = ?, run_token = ?, progress = NULL WHERE id = ?",
                (RUNNING, now, now, worker_pid, uuid.uuid4().hex, row["id"]),
            )
            return self._load(db, row["id"])

    def beat(self, job: Job, progress: dict[str, Any] | None = None) -> str | None:
        """Record a heartbeat (and progress) for the run; returns the job's state now."""
        now = time.time()
        with self.transaction() as db:
            db.execute(
                "UPDATE jobs SET heartbeat = ?, progress = COALESCE(?, progress)"
                " WHERE id = ? AND run_token = ? AND state = ?",
                (now, json.dumps(progress) if progress else None, job.id, job.run_token, RUNNING),
            )
            row = db.execute("SELECT state, run_token FROM jobs WHERE id = ?", (job.id,)).fetchone()
        if row is None or row["run_token"] != job.run_token:
            return None
        return row["state"]

    def image_done(self, job: Job, index: int, path: str | None, record: dict[str, Any]) -> None:
        with self.transaction() as db:
            db.execute(
                "UPDATE job_images SET state = ?, path = ?, record = ?"
                " WHERE job_id = ? AND idx = ?",
                (DONE, path, json.dumps(record), job.id, index),
            )
            db.execute("UPDATE jobs SET updated = ? WHERE id = ?", (time.time(), job.id))

    def finish(self, job: Job) -> bool:
        """Mark the run's job done if every image is; False if the run was given up on."""
        with self.transaction() as db:
            missing = db.execute(
                "SELECT COUNT(*) FROM job_images WHERE job_id = ? AND state != ?", (job.id, DONE)
            ).fetchone()[0]
            if missing:
                raise RuntimeError(f"job {job.id} still has {missing} images to do")
            changed = db.execute(
                "UPDATE jobs SET state = ?, updated = ?, error = NULL, progress = NULL"
                " WHERE id = ? AND run_token = ? AND state = ?",
                (DONE, time.time(), job.id, job.run_token, RUNNING),
            ).rowcount
        return bool(changed)

    def attempt_failed(
        self,
        job_id: str,
        run_token: str | None,
        reason: str,
        max_attempts: int,
        backoff: float,
        low_memory: bool = False,
    ) -> str | None:
        """End a failed run: queue the job again after a backoff, or fail it for good.

        Returns the new state, or None when the run was no longer the job's current one.
        """
        now = time.time()
        with self.transaction() as db:
            row = db.execute(
                "SELECT attempts FROM jobs WHERE id = ? AND run_token IS ? AND state = ?",
                (job_id, run_token, RUNNING),
            ).fetchone()
            if row is None:
                return None
            attempts = row["attempts"]
            if attempts >= max_attempts:
                # max_attempts 0 means "not worth retrying" (a user error): no give-up count.
                note = f" (gave up after {attempts} attempts)" if max_attempts else ""
                state, error = FAILED, f"{reason}{note}"
                not_before = 0.0
            else:
                state, error = QUEUED, reason
                not_before = now + backoff * 2 ** (attempts - 1)
            db.execute(
                "UPDATE jobs SET state = ?, error = ?, not_before = ?, updated = ?,"
                " low_memory = MAX(low_memory, ?), run_token = NULL, progress = NULL"
                " WHERE id = ?",
                (state, error, not_before, now, int(low_memory), job_id),
            )
        return state

    def release(self, job_id: str, run_token: str | None) -> bool:
        """Give a run back to the queue without counting it (the worker was stopped on purpose)."""
        with self.transaction() as db:
            changed = db.execute(
                "UPDATE jobs SET state = ?, attempts = MAX(attempts - 1, 0), run_token = NULL,"
                " progress = NULL, updated = ? WHERE id = ? AND run_token IS ? AND state = ?",
                (QUEUED, time.time(), job_id, run_token, RUNNING),
            ).rowcount
        return bool(changed)

    # -- image leases (several workers) ----------------------------------------------------------
    def claim_images(
        self,
        worker: str,
        token: str,
        worker_pid: int,
        limit: int | Callable[[dict[str, Any]], int] = 1,
        job_id: str | None = None,
    ) -> tuple[Job, list[int]] | None:
        """Lease up to `limit` pending images of the next runnable job (or of `job_id`) for one
        worker; `limit` may be a function of the job's request (its settings' batch size).

        A queued job becomes running (one more attempt); a running one lends its images that no
        worker holds, so one job spreads over every free worker.
        """
        now = time.time()
        with self.transaction() as db:
            row = db.execute(
                "SELECT id, state, request FROM jobs WHERE"
                " ((state = ? AND not_before <= ?) OR state = ?) AND (? IS NULL OR id = ?)"
                " AND EXISTS (SELECT 1 FROM job_images i WHERE i.job_id = jobs.id"
                " AND i.state != ? AND i.lease IS NULL)"
                " ORDER BY priority, seq LIMIT 1",
                (QUEUED, now, RUNNING, job_id, job_id, DONE),
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
                    (row["id"], DONE, limit),
                )
            ]
            db.executemany(
                "UPDATE job_images SET lease = ?, lease_beat = ?, tries = tries + 1"
                " WHERE job_id = ? AND idx = ?",
                [(token, now, row["id"], index) for index in indices],
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
                (DONE, path, json.dumps(record), worker, job_id, index, token),
            ).rowcount
            if not changed:
                return False
            missing = db.execute(
                "SELECT COUNT(*) FROM job_images WHERE job_id = ? AND state != ?", (job_id, DONE)
            ).fetchone()[0]
            if missing:
                db.execute("UPDATE jobs SET updated = ? WHERE id = ?", (now, job_id))
            else:
                db.execute(
                    "UPDATE jobs SET state = ?, updated = ?, error = NULL, progress = NULL,"
                    " run_token = NULL WHERE id = ? AND state IN (?, ?)",
                    (DONE, now, job_id, QUEUED, RUNNING),
                )
        return True

    def lease_failed(
        self,
        token: str,
        reason: str,
        max_attempts: int,
        backoff: float,
        low_memory: bool = False,
    ) -> dict[str, str | None]:
        """A worker's run failed (it died, hung or raised): its images go back to the queue and
        each job it held counts a failed attempt (backoff, or failed after max_attempts).
        Returns {job id: its new state, None when another failure already counted}."""
        with self.transaction() as db:
            jobs = [
                row["job_id"]
                for row in db.execute(
                    "SELECT DISTINCT job_id FROM job_images WHERE lease = ?", (token,)
                )
            ]
            db.execute("UPDATE job_images SET lease = NULL WHERE lease = ?", (token,))
        return {
            job_id: self.attempt_failed(
                job_id, self._run_token(job_id), reason, max_attempts, backoff, low_memory
            )
            for job_id in jobs
        }

    def release_leases(self, token: str, requeue: bool = False) -> None:
        """Give a worker's images back without counting a failure (a smaller batch next, an
        ended run). With `requeue` (the worker was stopped on purpose), a running job that no
        worker holds any more waits in the queue again, its attempt not counted."""
        with self.transaction() as db:
            jobs = [
                row["job_id"]
                for row in db.execute(
                    "SELECT DISTINCT job_id FROM job_images WHERE lease = ?", (token,)
                )
            ]
            db.execute("UPDATE job_images SET lease = NULL WHERE lease = ?", (token,))
            for job_id in jobs if requeue else []:
                db.execute(
                    "UPDATE jobs SET state = ?, attempts = MAX(attempts - 1, 0), run_token = NULL,"
                    " progress = NULL, updated = ? WHERE id = ? AND state = ? AND NOT EXISTS"
                    " (SELECT 1 FROM job_images WHERE job_id = ? AND lease IS NOT NULL)",
                    (QUEUED, time.time(), job_id, RUNNING, job_id),
                )

    def clear_leases(self) -> None:
        """Drop every lease: called when no worker of this home can be alive."""
        with self.transaction() as db:
            db.execute("UPDATE job_images SET lease = NULL WHERE lease IS NOT NULL")

    def silent_leases(self, older_than: float) -> dict[str, float]:
        """Tokens whose leases nobody beat for `older_than` s, with the seconds since."""
        now = time.time()
        with self.transaction() as db:
            rows = db.execute(
                "SELECT lease, MAX(lease_beat) AS beat FROM job_images"
                " WHERE lease IS NOT NULL GROUP BY lease HAVING MAX(lease_beat) < ?",
                (now - older_than,),
            ).fetchall()
        return {row["lease"]: now - row["beat"] for row in rows}

    def mark_fault_fired(self, job_id: str, index: int) -> bool:
        """True once per image: a once-only injected fault fires on whichever worker asks first."""
        with self.transaction() as db:
            return bool(
                db.execute(
                    "UPDATE job_images SET fault_fired = 1"
                    " WHERE job_id = ? AND idx = ? AND fault_fired = 0",
                    (job_id, index),
                ).rowcount
            )

    def _run_token(self, job_id: str) -> str | None:
        with self.transaction() as db:
            row = db.execute("SELECT run_token FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return row["run_token"] if row else None

    def running(self) -> list[Job]:
        with self.transaction() as db:
            rows = db.execute("SELECT id FROM jobs WHERE state = ?", (RUNNING,)).fetchall()
            return [job for row in rows if (job := self._load(db, row["id"])) is not None]

    # -- rows ----------------------------------------------------------------------------------
    def _load(self, db: sqlite3.Connection, job_id: str) -> Job | None:
        row = db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            return None
        images = [
            JobImage(
                index=image["idx"],
                key=image["key"],
                spec=json.loads(image["spec"]),
                state=image["state"],
                path=image["path"],
                record=json.loads(image["record"]) if image["record"] else None,
                worker=image["worker"],
                tries=image["tries"],
            )
            for image in db.execute(
                "SELECT * FROM job_images WHERE job_id = ? ORDER BY idx", (job_id,)
            )
        ]
        return Job(
            id=row["id"],
            created=row["created"],
            updated=row["updated"],
            priority=row["priority"],
            state=row["state"],
            attempts=row["attempts"],
            not_before=row["not_before"],
            heartbeat=row["heartbeat"],
            progress=json.loads(row["progress"]) if row["progress"] else {},
            worker_pid=row["worker_pid"],
            run_token=row["run_token"],
            error=row["error"],
            low_memory=bool(row["low_memory"]),
            request=json.loads(row["request"]),
            images=images,
        )
