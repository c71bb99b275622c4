"""The journal's SQLite file: its schema, transactions, rows read back as `Job`s, and the one
place a failed run is counted (shared by whole-job runs and image leases)."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

from tools.jobs.job import ImageState, Job, JobImage, JobState
from tools.sqlite_db import Database, add_missing_columns

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
    # Its lease's worker has started it: a Ray task may wait in its actor behind another one
    # first. Only a started lease is a try when a crashed worker's leases are cleared. 1 for
    # leases of journals before it, which counted every lease.
    "lease_started": "INTEGER NOT NULL DEFAULT 1",
    "fault_lease": "TEXT",  # the lease its once-only fault was marked fired under
}


class JournalDatabase(Database):
    def __init__(self, path: Path) -> None:
        super().__init__(
            path,
            SCHEMA,
            "job journal",
            f"move it aside (`mv {path} {path}.bad`); only the job history is lost",
        )
        with self.transaction() as db:
            add_missing_columns(db, "job_images", IMAGE_LEASE_COLUMNS)

    def attempt_failed(
        self,
        job_id: str,
        run_token: str | None,
        reason: str,
        max_attempts: int,
        backoff: float,
        low_memory: bool = False,
    ) -> JobState | None:
        """End a failed run: queue the job again after a backoff, or fail it for good.

        Returns the new state, or None when the run was no longer the job's current one.
        """
        with self.transaction() as db:
            row = db.execute(
                "SELECT attempts FROM jobs WHERE id = ? AND run_token IS ? AND state = ?",
                (job_id, run_token, JobState.RUNNING),
            ).fetchone()
            if row is None:
                return None
            return fail_or_requeue(
                db, job_id, reason, row["attempts"], max_attempts, backoff, low_memory
            )

    def _load(self, db: sqlite3.Connection, job_id: str) -> Job | None:
        row = db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            return None
        images = [
            JobImage(
                index=image["idx"],
                key=image["key"],
                spec=json.loads(image["spec"]),
                state=ImageState(image["state"]),
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
            state=JobState(row["state"]),
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


# The longest a failed job waits before its retry. A `not_before` further ahead than this was
# stamped before the wall clock went back: the job is due (claims treat it so).
MAX_BACKOFF = 300.0


def fail_or_requeue(
    db: sqlite3.Connection,
    job_id: str,
    reason: str,
    tries: int,
    max_attempts: int,
    backoff: float,
    low_memory: bool = False,
    where: str = "",
) -> JobState:
    """Inside a transaction: after `tries` failed tries (of the run, or of its worst image,
    named by `where`), queue the job again after a backoff, or fail it for good."""
    now = time.time()
    if tries >= max_attempts:
        # max_attempts 0 means "not worth retrying" (a user error): no give-up count.
        note = f" (gave up after {tries} attempts{where})" if max_attempts else ""
        state, error = JobState.FAILED, f"{reason}{note}"
        not_before = 0.0
    else:
        state, error = JobState.QUEUED, reason
        not_before = now + min(backoff * 2 ** max(tries - 1, 0), MAX_BACKOFF)
    db.execute(
        "UPDATE jobs SET state = ?, error = ?, not_before = ?, updated = ?,"
        " low_memory = MAX(low_memory, ?), run_token = NULL, progress = NULL"
        " WHERE id = ?",
        (state, error, not_before, now, int(low_memory), job_id),
    )
    return state
