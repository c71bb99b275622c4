"""The job journal: every request is a job in SQLite (WAL) under the state dir; it is the truth.

A job holds the planned `ImageSpec`s of one request and tracks its images one by one: an image is
done only after `Producer.produce_batch` has written its file (atomically) and the row here is
committed. Every state change is one IMMEDIATE transaction, so several front ends and the worker
can use the journal at once. Updates that belong to one run of a job are conditioned on its
`run_token`, so a worker that was given up on cannot overwrite what its successor did.

The file and its rows: `tools.jobs.journal_db`; how several workers share a job image by image:
`tools.jobs.leases`; the values: `tools.jobs.job`.
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

from tools.jobs.job import (
    FINISHED,
    UNFINISHED,
    ImageState,
    Job,
    JobImage,
    JobState,
    describe_request,
)
from tools.jobs.journal_db import MAX_BACKOFF
from tools.jobs.leases import ImageLeases

# Requests up to this many images count as interactive and go ahead of larger batches.
INTERACTIVE_MAX_IMAGES = 4
JOURNAL_NAME = "jobs.sqlite"

# The journal hands out these types: they can be imported from here too.
__all__ = ["Job", "JobImage", "JobJournal", "JobState"]


class JobJournal(ImageLeases):
    @classmethod
    def for_state(cls, state_dir: Path) -> JobJournal:
        return cls(state_dir / JOURNAL_NAME)

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
                (job_id, seq, now, now, priority, JobState.QUEUED, json.dumps(request)),
            )
            db.executemany(
                "INSERT INTO job_images (job_id, idx, key, spec, state) VALUES (?, ?, ?, ?, ?)",
                [
                    (job_id, i, spec["key"], json.dumps(spec), ImageState.PENDING)
                    for i, spec in enumerate(specs)
                ],
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
                "SELECT id FROM jobs ORDER BY state IN (?, ?, ?),"
                " CASE WHEN state IN (?, ?) THEN priority ELSE 0 END,"
                " CASE WHEN state IN (?, ?) THEN seq ELSE -seq END LIMIT ?",
                (*FINISHED, *UNFINISHED, *UNFINISHED, limit),
            ).fetchall()
            return [job for row in rows if (job := self._load(db, row["id"])) is not None]

    def cancel(self, job_id: str) -> bool:
        """Cancel a job that has not finished; the worker stops it at its next step."""
        return self._move(job_id, JobState.CANCELLED, UNFINISHED, "error = 'cancelled by the user'")

    def retry(self, job_id: str) -> bool:
        """Queue a failed or cancelled job again, with fresh attempts; done images are kept.
        A job with nothing left to draw (it was cancelled as its last images landed) is done."""
        with self.transaction() as db:
            changed = db.execute(
                "UPDATE jobs SET state = ?, attempts = 0, not_before = 0, error = NULL,"
                " run_token = NULL, updated = ? WHERE id = ? AND state IN (?, ?)",
                (JobState.QUEUED, time.time(), job_id, JobState.FAILED, JobState.CANCELLED),
            ).rowcount
            if not changed:
                return False
            db.execute("UPDATE job_images SET tries = 0 WHERE job_id = ?", (job_id,))
            db.execute(
                "UPDATE jobs SET state = ?, progress = NULL WHERE id = ? AND NOT EXISTS"
                " (SELECT 1 FROM job_images WHERE job_id = ? AND state != ?)",
                (JobState.DONE, job_id, job_id, ImageState.DONE),
            )
        return True

    def _move(
        self, job_id: str, state: JobState, from_states: tuple[JobState, ...], also: str
    ) -> bool:
        """Move a job to `state` if it is in one of `from_states`; `also` sets more columns."""
        marks = ", ".join("?" * len(from_states))
        with self.transaction() as db:
            changed = db.execute(
                f"UPDATE jobs SET state = ?, {also}, updated = ?"
                f" WHERE id = ? AND state IN ({marks})",
                (state, time.time(), job_id, *from_states),
            ).rowcount
        return bool(changed)

    def pending_count(self) -> int:
        with self.transaction() as db:
            return db.execute(
                "SELECT COUNT(*) FROM jobs WHERE state IN (?, ?)", UNFINISHED
            ).fetchone()[0]

    def init_images_needed(self) -> set[str]:
        """The img2img init images (`spec.init_image.path`) that images still to draw of queued
        or running jobs read (a failed or cancelled job's are not: it ended)."""
        with self.transaction() as db:
            rows = db.execute(
                "SELECT DISTINCT json_extract(i.spec, '$.init_image.path') AS init"
                " FROM job_images i JOIN jobs j ON j.id = i.job_id"
                " WHERE j.state IN (?, ?) AND i.state = ? AND init IS NOT NULL",
                (*UNFINISHED, ImageState.PENDING),
            ).fetchall()
        return {row["init"] for row in rows}

    def running(self) -> list[Job]:
        with self.transaction() as db:
            rows = db.execute("SELECT id FROM jobs WHERE state = ?", (JobState.RUNNING,)).fetchall()
            return [job for row in rows if (job := self._load(db, row["id"])) is not None]

    # -- one worker running a whole job ----------------------------------------------------------
    def claim(self, worker_pid: int) -> Job | None:
        """Take the next runnable job (interactive first, then oldest) and mark it running."""
        now = time.time()
        with self.transaction() as db:
            row = db.execute(
                "SELECT id FROM jobs WHERE state = ? AND (not_before <= ? OR not_before > ?)"
                " ORDER BY priority, seq LIMIT 1",
                (JobState.QUEUED, now, now + MAX_BACKOFF),
            ).fetchone()
            if row is None:
                return None
            db.execute(
                "UPDATE jobs SET state = ?, attempts = attempts + 1, heartbeat = ?, updated = ?,"
                " worker_pid = ?, run_token = ?, progress = NULL WHERE id = ?",
                (JobState.RUNNING, now, now, worker_pid, uuid.uuid4().hex, row["id"]),
            )
            return self._load(db, row["id"])

    def beat(self, job: Job, progress: dict[str, Any] | None = None) -> JobState | None:
        """Record a heartbeat (and progress) for the run; returns the job's state now."""
        now = time.time()
        with self.transaction() as db:
            db.execute(
                "UPDATE jobs SET heartbeat = ?, progress = COALESCE(?, progress)"
                " WHERE id = ? AND run_token = ? AND state = ?",
                (
                    now,
                    json.dumps(progress) if progress else None,
                    job.id,
                    job.run_token,
                    JobState.RUNNING,
                ),
            )
            row = db.execute("SELECT state, run_token FROM jobs WHERE id = ?", (job.id,)).fetchone()
        if row is None or row["run_token"] != job.run_token:
            return None
        return JobState(row["state"])

    def image_done(self, job: Job, index: int, path: str | None, record: dict[str, Any]) -> None:
        with self.transaction() as db:
            db.execute(
                "UPDATE job_images SET state = ?, path = ?, record = ?"
                " WHERE job_id = ? AND idx = ?",
                (ImageState.DONE, path, json.dumps(record), job.id, index),
            )
            db.execute("UPDATE jobs SET updated = ? WHERE id = ?", (time.time(), job.id))

    def finish(self, job: Job) -> bool:
        """Mark the run's job done if every image is; False if the run was given up on."""
        with self.transaction() as db:
            missing = db.execute(
                "SELECT COUNT(*) FROM job_images WHERE job_id = ? AND state != ?",
                (job.id, ImageState.DONE),
            ).fetchone()[0]
            if missing:
                raise RuntimeError(f"job {job.id} still has {missing} images to do")
            changed = db.execute(
                "UPDATE jobs SET state = ?, updated = ?, error = NULL, progress = NULL"
                " WHERE id = ? AND run_token = ? AND state = ?",
                (JobState.DONE, time.time(), job.id, job.run_token, JobState.RUNNING),
            ).rowcount
        return bool(changed)

    def release(self, job_id: str, run_token: str | None) -> bool:
        """Give a run back to the queue without counting it (the worker was stopped on purpose)."""
        with self.transaction() as db:
            changed = db.execute(
                "UPDATE jobs SET state = ?, attempts = MAX(attempts - 1, 0), run_token = NULL,"
                " progress = NULL, updated = ? WHERE id = ? AND run_token IS ? AND state = ?",
                (JobState.QUEUED, time.time(), job_id, run_token, JobState.RUNNING),
            ).rowcount
        return bool(changed)
