"""Bring the generation index in line with the disk (the gallery does it on its first request
after a start, and on `POST /api/gallery/reconcile`).

Records are read before the write transaction (text chunks only, tools/store/png_text.py), so
the index's write lock is held only for the row updates and the worker's commits never wait on
file reads. A file found foreign is remembered by path, mtime and size and not read again.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tools.store.gen_index import GenerationIndex
from tools.store.index_rebuild import image_files, index_file, place_marks, valid_record

Stamp = tuple[int, int]


@dataclass
class ReconcileReport:
    added: int = 0
    moved: int = 0
    missing: int = 0
    found_again: int = 0
    foreign: list[str] = field(default_factory=list)


def _stamp(path: Path) -> Stamp | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_mtime_ns, stat.st_size


def _is_file(path: str) -> bool:
    return os.path.isfile(path) and not os.path.islink(path)


def _known_paths(index: GenerationIndex) -> set[str]:
    with index.transaction() as connection:
        return {row["path"] for row in connection.execute("SELECT path FROM images")}


def _read_new_records(
    on_disk: list[Path], known: set[str], foreign: dict[str, Stamp], report: ReconcileReport
) -> dict[str, dict[str, Any]]:
    """The records of files the index does not know, read with no lock held."""
    records = {}
    for path in on_disk:
        name = str(path)
        if name in known:
            continue
        stamp = _stamp(path)
        if stamp is not None and foreign.get(name) == stamp:
            report.foreign.append(name)
            continue
        record = valid_record(path)
        if record is None:
            report.foreign.append(name)
            if stamp is not None:
                foreign[name] = stamp
            continue
        records[name] = record
    return records


def reconcile(
    index: GenerationIndex, output: Path, foreign: dict[str, Stamp] | None = None
) -> ReconcileReport:
    """Files added or moved by hand get a row (a moved one keeps its row, found by its record's
    key), rows whose file is gone are marked missing (and unmarked when it comes back).
    `foreign` remembers files without a record of ours between calls."""
    report = ReconcileReport()
    foreign = {} if foreign is None else foreign
    on_disk = image_files(output) if output.exists() else []
    records = _read_new_records(on_disk, _known_paths(index), foreign, report)
    with index.transaction() as connection:
        # Rows as they are now: a worker may have saved (and indexed) a file since the read.
        rows = connection.execute("SELECT id, key, path, status, missing FROM images").fetchall()
        known = {row["path"] for row in rows}
        disk = {str(path) for path in on_disk}
        # The listing is older than these rows: a file a trash, restore or keep moved since is
        # on disk under its row's new path (looked up only for rows the listing lacks).
        disk |= {row["path"] for row in rows if row["path"] not in disk and _is_file(row["path"])}
        gone = {
            row["id"]: row for row in rows if row["status"] == "saved" and row["path"] not in disk
        }
        by_key = {row["key"]: row for row in gone.values() if row["key"]}
        by_path = {row["path"]: row for row in gone.values()}
        keys = {row["key"] for row in rows if row["key"]}
        for path in on_disk:
            record = records.get(str(path))
            if record is None or str(path) in known:
                continue
            moved = by_key.get(record.get("key")) or by_path.get(record.get("path"))
            if moved is not None and moved["id"] not in gone:
                moved = None
            if moved is not None:
                gone.pop(moved["id"])
                trashed, accepted = place_marks(output, path, record)
                connection.execute(
                    "UPDATE images SET path = ?, missing = 0, trashed = ?, accepted = ?"
                    " WHERE id = ?",
                    (str(path), int(trashed), int(accepted), moved["id"]),
                )
                report.moved += 1
                continue
            index_file(index, connection, output, path, record, keys)
            report.added += 1
        for row in gone.values():
            if not row["missing"]:
                connection.execute("UPDATE images SET missing = 1 WHERE id = ?", (row["id"],))
                report.missing += 1
        back = [row["id"] for row in rows if row["missing"] and row["path"] in disk]
        for row_id in back:
            connection.execute("UPDATE images SET missing = 0 WHERE id = ?", (row_id,))
        report.found_again = len(back)
    return report
