"""SQLite shared by processes: WAL, a generous busy timeout, one writer at a time."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def connect(path: Path, schema: str) -> sqlite3.Connection:
    """A connection in autocommit mode with the schema applied (idempotent DDL)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    connection = sqlite3.connect(path, timeout=30.0, isolation_level=None)
    connection.row_factory = sqlite3.Row
    connection.execute("PRAGMA busy_timeout=30000")
    connection.execute("PRAGMA journal_mode=WAL")
    # A committed row must survive a power cut: it is the only record that a file is done.
    connection.execute("PRAGMA synchronous=FULL")
    connection.executescript(schema)
    return connection


@contextmanager
def immediate_transaction(path: Path, schema: str) -> Iterator[sqlite3.Connection]:
    """An IMMEDIATE transaction: one writer at a time across processes."""
    connection = connect(path, schema)
    try:
        connection.execute("BEGIN IMMEDIATE")
        yield connection
        connection.execute("COMMIT")
    except BaseException:
        connection.execute("ROLLBACK")
        raise
    finally:
        connection.close()
