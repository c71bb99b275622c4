"""Bring the generation index in line with the disk (the gallery does it on its first request
after a start, and on `POST /api/gallery/reconcile`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from tools.store.gen_index import GenerationIndex
from tools.store.index_rebuild import image_files, index_file, place_marks, valid_record


@dataclass
class ReconcileReport:
    added: int = 0
    moved: int = 0
    missing: int = 0
    found_again: int = 0
    foreign: list[str] = field(default_factory=list)


def reconcile(index: GenerationIndex, output: Path) -> ReconcileReport:
    """Files added or moved by hand get a row (a moved one keeps its row, found by its record's
    key), rows whose file is gone are marked missing (and unmarked when it comes back)."""
    report = ReconcileReport()
    on_disk = image_files(output) if output.exists() else []
    with index.transaction() as connection:
        rows = connection.execute("SELECT id, key, path, status, missing FROM images").fetchall()
        known = {row["path"] for row in rows}
        disk = {str(path) for path in on_disk}
        gone = {
            row["id"]: row for row in rows if row["status"] == "saved" and row["path"] not in disk
        }
        by_key = {row["key"]: row for row in gone.values() if row["key"]}
        by_path = {row["path"]: row for row in gone.values()}
        keys = {row["key"] for row in rows if row["key"]}
        for path in on_disk:
            if str(path) in known:
                continue
            record = valid_record(path)
            if record is None:
                report.foreign.append(str(path))
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
