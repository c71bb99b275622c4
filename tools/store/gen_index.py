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
LATER_COLUMNS = {
    "worker": "TEXT",  # the render worker (local GPU worker or Ray slot) that drew it
    # The gallery's marks: a star, the trash (the file lies in anime-output/.trash/), and a row
    # whose file is gone from disk (found by the gallery's reconcile; shown, never a crash).
    "starred": "INTEGER NOT NULL DEFAULT 0",
    "trashed": "INTEGER NOT NULL DEFAULT 0",
    "missing": "INTEGER NOT NULL DEFAULT 0",
}
# Full-text search (the gallery's `q`): prompt, pose id + tags, character, seed and model of each
# row. Triggers keep it in step with every insert (`reserve`, so `index rebuild` too), update and
# delete; they also take a row's star and trash marks from its record (rebuild reads those
# from the files).
_SEARCH_COLUMNS = "rowid, prompt, tags, character, seed, model"
_SEARCH_VALUES = (
    "new.id, coalesce(json_extract(new.record, '$.prompt'), ''),"
    " coalesce(new.pose_id, '') || ' ' || coalesce((SELECT group_concat(value, ' ')"
    " FROM json_each(new.record, '$.pose.tags')), ''),"
    " new.character, coalesce(new.seed, ''), coalesce(json_extract(new.record, '$.model'), '')"
)
SEARCH_SCHEMA = (
    "CREATE VIRTUAL TABLE IF NOT EXISTS images_fts USING fts5("
    "prompt, tags, character, seed, model, tokenize = 'unicode61')",
    "CREATE TRIGGER IF NOT EXISTS images_fts_insert AFTER INSERT ON images BEGIN"
    f" INSERT INTO images_fts({_SEARCH_COLUMNS}) VALUES ({_SEARCH_VALUES});"
    " UPDATE images SET starred = coalesce(json_extract(new.record, '$.starred'), 0),"
    " trashed = coalesce(json_extract(new.record, '$.trashed'), 0) WHERE id = new.id; END",
    "CREATE TRIGGER IF NOT EXISTS images_fts_delete AFTER DELETE ON images BEGIN"
    " DELETE FROM images_fts WHERE rowid = old.id; END",
    "CREATE TRIGGER IF NOT EXISTS images_fts_update AFTER UPDATE OF record, character, seed,"
    " pose_id ON images BEGIN DELETE FROM images_fts WHERE rowid = old.id;"
    f" INSERT INTO images_fts({_SEARCH_COLUMNS}) VALUES ({_SEARCH_VALUES}); END",
)


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
            add_search(connection)

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


def add_search(connection: sqlite3.Connection) -> None:
    """Create the full-text table and its triggers if missing; an index from before them gets
    its existing rows searchable (and their marks) once, here."""
    exists = connection.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'images_fts'"
    ).fetchone()
    for statement in SEARCH_SCHEMA:
        connection.execute(statement)
    if not exists:
        values = _SEARCH_VALUES.replace("new.", "images.")
        connection.execute(f"INSERT INTO images_fts({_SEARCH_COLUMNS}) SELECT {values} FROM images")
        connection.execute(
            "UPDATE images SET starred = coalesce(json_extract(record, '$.starred'), 0),"
            " trashed = coalesce(json_extract(record, '$.trashed'), 0)"
        )


def _row(row: sqlite3.Row) -> dict[str, Any]:
    data = dict(row)
    # The row's path is the truth: the record was written before its name was reserved.
    data["record"] = {**json.loads(data["record"]), "path": data["path"]}
    return data
