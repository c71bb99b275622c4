"""The job journal: every request is a job in SQLite (WAL) under the state dir; it is the truth.

A job holds the planned `ImageSpec`s of one request and tracks its images one by one: an image is
done only after `Generator.produce` has written its file (atomically) and the row here is
committed. Every state change is one IMMEDIATE transaction, so several front ends and the worker
can use the journal at once. Updates that belong to one run of a job are conditioned on its
`run_token`, so a worker that was given up on cannot overwrite what its successor did.
"""

from __future__ import annotations

import json
import sqlite3
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tools.sqlite_db import Database

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


@dataclass
class JobImage:
    index: int
    key: str
    spec: dict[str, Any]
    state: str
    path: str | None
    record: dict[str, Any] | None


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

    def describe(self) -> str:
        """One line for `anime-gen jobs` and the chat's /jobs."""
        what = f"{','.join(self.request['characters'])} / {self.request['pose']}"
        error = f"  {self.error}" if self.error and self.state != DONE else ""
        return (
            f"{self.id}  {self.state:<9} {self.done_count}/{len(self.images)} images"
            f"  attempts {self.attempts}  {what}{error}"
        )

    def summary(self) -> dict[str, Any]:
        """The `anime-gen jobs --json` shape of one job."""
        return {
            "id": self.id,
            "state": self.state,
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
        self._db = Database(path, SCHEMA)

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
