"""SQLite shared by processes: WAL, a generous busy timeout, one writer at a time.

Each thread keeps one open connection per database (opening one costs more than the queries it
runs); the schema is applied when that connection opens.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tools.errors import UserError
from tools.private_dir import private_dir


def connect(
    path: Path, schema: str, what: str = "database", way_out: str = ""
) -> sqlite3.Connection:
    """A connection in autocommit mode with the schema applied (idempotent DDL).

    A file that is not a SQLite database (or whose header is damaged) is a user error naming the
    file and `way_out`; lock and I/O errors stay what they are.
    """
    private_dir(path.parent)  # the databases live in <state>
    connection = sqlite3.connect(path, timeout=30.0, isolation_level=None)
    connection.row_factory = sqlite3.Row
    try:
        connection.execute("PRAGMA busy_timeout=30000")
        _use_wal(connection)
        # A committed row must survive a power cut: it is the only record that a file is done.
        connection.execute("PRAGMA synchronous=FULL")
        connection.executescript(schema)
    except sqlite3.DatabaseError as error:
        connection.close()
        if isinstance(error, sqlite3.OperationalError):
            raise
        raise UserError(f"{what} is corrupt: {path} ({error})", way_out) from None
    return connection


def _use_wal(connection: sqlite3.Connection, tries: int = 60) -> None:
    """Switch to WAL once per file. Two processes creating the file at once can get "database
    is locked" here without SQLite's busy handler ever waiting, so wait and retry (bounded)."""
    for attempt in range(tries):
        try:
            if connection.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                connection.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or attempt == tries - 1:
                raise
            time.sleep(0.05)


class Database:
    def __init__(self, path: Path, schema: str, what: str = "database", way_out: str = "") -> None:
        self.path = path
        self.schema = schema
        self.what = what
        self.way_out = way_out
        self._local = threading.local()

    def _connection(self) -> sqlite3.Connection:
        cached = getattr(self._local, "connection", None)
        # A forked child must not share its parent's connection; a deleted file needs a new one.
        if cached is None or self._local.pid != os.getpid() or not self.path.exists():
            self._local.connection = connect(self.path, self.schema, self.what, self.way_out)
            self._local.pid = os.getpid()
        return self._local.connection

    def close(self) -> None:
        """Close this thread's connection (the last one to close folds the WAL into the file)."""
        cached = getattr(self._local, "connection", None)
        if cached is not None:
            cached.close()
            self._local.connection = None

    def ensure_readable(self) -> None:
        """Open the file now, so a corrupt one is reported before any work starts."""
        with self.transaction():
            pass

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """An IMMEDIATE transaction: one writer at a time across processes."""
        connection = self._connection()
        connection.execute("BEGIN IMMEDIATE")
        try:
            yield connection
            connection.execute("COMMIT")
        except BaseException:
            connection.execute("ROLLBACK")
            raise


def add_missing_columns(
    connection: sqlite3.Connection, table: str, columns: dict[str, str]
) -> None:
    """Additive schema changes: add each column (name -> SQL type) a table lacks. Run it
    inside a transaction, so two processes opening an old file do not both add one."""
    have = {row[1] for row in connection.execute(f"PRAGMA table_info({table})")}
    for name, declaration in columns.items():
        if name not in have:
            connection.execute(f"ALTER TABLE {table} ADD COLUMN {name} {declaration}")
