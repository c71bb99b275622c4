"""The generation index: one SQLite row per image written (accepted or rejected).

It is the store's source of truth for names (a path is reserved here before its file is
written) and what later features query: "3 more of that", history, reproducing a seed.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tools.sqlite_db import Database, add_missing_columns
from tools.store.metadata import ImageMetadata

SCHEMA = """
CREATE TABLE IF NOT EXISTS images (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT UNIQUE,
    path TEXT UNIQUE NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending',
    created TEXT NOT NULL,
    request_id TEXT,
    character TEXT NOT NULL,
    posture TEXT NOT NULL,
    pose_id TEXT,
    seed INTEGER,
    accepted INTEGER NOT NULL DEFAULT 1,
    collection TEXT,
    record TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS images_character ON images(character, id);
CREATE INDEX IF NOT EXISTS images_request ON images(request_id, id);
"""
# Columns added after the first release (additive: older indexes get them on open).
LATER_COLUMNS = {"worker": "TEXT"}  # the render worker (local GPU worker or Ray slot) that drew it


class GenerationIndex:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._db = Database(
            path,
            SCHEMA,
            "generation index",
            "run `anime-gen index rebuild` (it rebuilds the index from the images), "
            f"or move it aside (`mv {path} {path}.bad`)",
        )
        with self.transaction() as connection:
            add_missing_columns(connection, "images", LATER_COLUMNS)

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """An IMMEDIATE transaction: one writer at a time across processes."""
        with self._db.transaction() as connection:
            yield connection

    def reserve(
        self,
        connection: sqlite3.Connection,
        path: Path,
        key: str | None,
        record: ImageMetadata | Mapping[str, Any],
        status: str = "pending",
        created: str | None = None,
    ) -> None:
        """Insert the row of one image (`index rebuild` inserts saved ones the same way)."""
        meta = ImageMetadata.of(record)
        connection.execute(
            "INSERT INTO images (key, path, status, created, request_id, character, posture,"
            " pose_id, seed, accepted, collection, record)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                key,
                str(path),
                status,
                created or datetime.now(UTC).isoformat(timespec="seconds"),
                meta.request_id,
                meta.character,
                meta.posture,
                meta.pose.id,
                meta.seed,
                int(meta.accepted),
                meta.collection,
                json.dumps(meta.record(accepted=meta.accepted)),
            ),
        )

    def paths_with_prefix(
        self, connection: sqlite3.Connection, folder: Path, stem: str
    ) -> list[str]:
        like = str(folder / stem).replace("%", r"\%").replace("_", r"\_") + r"\_%"
        rows = connection.execute("SELECT path FROM images WHERE path LIKE ? ESCAPE '\\'", (like,))
        return [row["path"] for row in rows]

    def close(self) -> None:
        self._db.close()

    def ensure_readable(self) -> None:
        """Open the index now, so a corrupt file is reported before any work starts."""
        with self.transaction():
            pass

    def mark_saved(self, path: Path) -> None:
        with self.transaction() as connection:
            connection.execute("UPDATE images SET status = 'saved' WHERE path = ?", (str(path),))

    def set_worker(self, key: str, worker: str) -> None:
        """Record which worker drew an image (and the rejected tries drawn for it)."""
        like = key.replace("%", r"\%").replace("_", r"\_") + "#rejected%"
        with self.transaction() as connection:
            connection.execute(
                "UPDATE images SET worker = ? WHERE key = ? OR key LIKE ? ESCAPE '\\'",
                (worker, key, like),
            )

    def by_key(self, key: str) -> dict[str, Any] | None:
        with self.transaction() as connection:
            row = connection.execute("SELECT * FROM images WHERE key = ?", (key,)).fetchone()
        return _row(row) if row else None

    def recent(
        self, limit: int = 20, character: str | None = None, accepted_only: bool = True
    ) -> list[dict[str, Any]]:
        """Saved images, newest first."""
        query = "SELECT * FROM images WHERE status = 'saved'"
        params: list[Any] = []
        if character:
            query += " AND character = ?"
            params.append(character)
        if accepted_only:
            query += " AND accepted = 1"
        query += " ORDER BY id DESC LIMIT ?"
        params.append(limit)
        with self.transaction() as connection:
            rows = connection.execute(query, params).fetchall()
        return [_row(row) for row in rows]


def _row(row: sqlite3.Row) -> dict[str, Any]:
    data = dict(row)
    # The row's path is the truth: the record was written before its name was reserved.
    data["record"] = {**json.loads(data["record"]), "path": data["path"]}
    return data
