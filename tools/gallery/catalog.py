"""The gallery's view of the generation index: listing, marks, trash/restore and reconcile.

Rows live in `<state>/generations.sqlite` (tools/store/gen_index.py adds the gallery's columns
and the full-text table). Files move only for the trash (to `anime-output/.trash/`, same
relative path) and for "keep anyway" (out of `rejected/`); a row keeps its id through both.
Marks that `anime-gen index rebuild` must find again are written into the PNG's record too.
The filters and the image JSON are in `listing`, the index-vs-disk pass in `reconcile`.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tools.errors import UserError
from tools.gallery.listing import ID_PATTERN, Filters, NotFound
from tools.gallery.png_record import update_record
from tools.gallery.reconcile import ReconcileReport, reconcile
from tools.store.gen_index import GenerationIndex
from tools.store.index_rebuild import INDEX_NAME, TRASH_FOLDER, image_files, safe_view_name
from tools.store.output_store import link_view

MOVES_LOCK = "gallery-moves.lock"


class Catalog:
    def __init__(self, output: Path, state: Path, organize_by_date: bool = True) -> None:
        self.output = output
        self.state = state
        self.trash = output / TRASH_FOLDER
        self.organize_by_date = organize_by_date
        self.index = GenerationIndex(state / INDEX_NAME)
        # Files without a record of ours, by path → (mtime, size): reconcile reads each once.
        self.foreign: dict[str, tuple[int, int]] = {}

    # -- reading -------------------------------------------------------------------------------
    def page(
        self, filters: Filters, cursor: str | None = None, limit: int = 100
    ) -> tuple[list[sqlite3.Row], str | None]:
        """One page, newest first, and the cursor of the next one (None at the end)."""
        clauses, params = filters.where()
        if cursor:
            if not ID_PATTERN.fullmatch(cursor):
                raise UserError(f"bad cursor '{cursor}'", "pass the `next` of the previous page")
            clauses.append("id < ?")
            params.append(int(cursor))
        query = f"SELECT * FROM images WHERE {' AND '.join(clauses)} ORDER BY id DESC LIMIT ?"
        with self.index.transaction() as connection:
            rows = connection.execute(query, [*params, limit + 1]).fetchall()
        more = len(rows) > limit
        rows = rows[:limit]
        return rows, str(rows[-1]["id"]) if more and rows else None

    def get(self, image_id: str) -> sqlite3.Row:
        if not ID_PATTERN.fullmatch(image_id):
            raise NotFound(image_id)
        with self.index.transaction() as connection:
            row = connection.execute(
                "SELECT * FROM images WHERE id = ? AND status = 'saved'", (int(image_id),)
            ).fetchone()
        if row is None:
            raise NotFound(image_id)
        return row

    def neighbours(self, image_id: str, filters: Filters) -> dict[str, str | None]:
        """The ids next to this one in the listing `filters` gives: newer and older."""
        clauses, params = filters.where()
        where = " AND ".join(clauses)
        found: dict[str, str | None] = {}
        with self.index.transaction() as connection:
            for name, compare, order in (("newer", ">", "ASC"), ("older", "<", "DESC")):
                row = connection.execute(
                    f"SELECT id FROM images WHERE {where} AND id {compare} ? "
                    f"ORDER BY id {order} LIMIT 1",
                    [*params, int(image_id)],
                ).fetchone()
                found[name] = str(row["id"]) if row else None
        return found

    def facets(self) -> dict[str, list[str]]:
        """The values the grid's filters offer."""
        found: dict[str, list[str]] = {}
        queries = {
            # A plain image (the A1111 door's txt2img) has no character: "" is no choice.
            "characters": "SELECT DISTINCT character FROM images WHERE character != ''",
            "collections": "SELECT DISTINCT collection FROM images WHERE collection IS NOT NULL",
            "postures": "SELECT DISTINCT posture FROM images",
            "days": "SELECT DISTINCT substr(created, 1, 10) FROM images",
        }
        with self.index.transaction() as connection:
            for name, query in queries.items():
                rows = connection.execute(f"{query} ORDER BY 1").fetchall()
                found[name] = [row[0] for row in rows]
        found["days"].reverse()
        return found

    # -- marks ---------------------------------------------------------------------------------
    def set_starred(self, image_id: str, starred: bool) -> sqlite3.Row:
        row = self.get(image_id)
        self._update(row, {"starred": int(starred)}, {"starred": starred})
        self._write_file_record(Path(row["path"]), {"starred": starred})
        return self.get(image_id)

    def set_collection(self, image_id: str, collection: str | None) -> sqlite3.Row:
        """File the image under `collections/NAME` too (a link: no file moves); None: none."""
        from tools.characters.library import normalize_name

        row = self.get(image_id)
        name = normalize_name(collection) if collection else None
        path = Path(row["path"])
        if row["collection"]:
            self._unlink_views(path, [self.output / "collections" / row["collection"]])
        self._update(row, {"collection": name}, {"collection": name})
        if name and not row["trashed"] and path.exists():
            link_view(path, self.output / "collections" / name, self.organize_by_date)
        return self.get(image_id)

    # -- moving files --------------------------------------------------------------------------
    @contextlib.contextmanager
    def _moving(self) -> Iterator[None]:
        """One file move at a time, across threads and processes: two trashes of one image
        must not both read the row before either moved the file (flock is per open file)."""
        self.state.mkdir(parents=True, exist_ok=True)
        with open(self.state / MOVES_LOCK, "a+") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            yield

    def trash_image(self, image_id: str) -> sqlite3.Row:
        with self._moving():
            return self._trash(image_id)

    def _trash(self, image_id: str) -> sqlite3.Row:
        row = self.get(image_id)
        if row["trashed"]:
            return row
        source = Path(row["path"])
        relative = self._relative(source)
        target = self._free_path(self.trash / relative)
        self._unlink_views(source, self._view_folders(row))
        moved = self._move(source, target)
        self._update(
            row,
            {"path": str(target), "trashed": 1, "missing": int(not moved)},
            {"trashed": True},
        )
        return self.get(image_id)

    def restore(self, image_id: str) -> sqlite3.Row:
        with self._moving():
            return self._restore(image_id)

    def _restore(self, image_id: str) -> sqlite3.Row:
        row = self.get(image_id)
        if not row["trashed"]:
            return row
        source = Path(row["path"])
        try:
            relative = source.relative_to(self.trash)
        except ValueError:
            relative = self._relative(source)
        target = self._free_path(self.output / relative)
        moved = self._move(source, target)
        self._update(
            row,
            {"path": str(target), "trashed": 0, "missing": int(not moved)},
            {"trashed": False},
        )
        if moved:
            self._link_views(self.get(image_id))
        return self.get(image_id)

    def keep(self, image_id: str) -> sqlite3.Row:
        """ "Keep anyway": a rejected image becomes an accepted one (out of `rejected/`)."""
        with self._moving():
            return self._keep(image_id)

    def _keep(self, image_id: str) -> sqlite3.Row:
        row = self.get(image_id)
        if row["accepted"] or row["trashed"]:
            return row
        source = Path(row["path"])
        relative = self._relative(source)
        if relative.parts[0] == "rejected":
            relative = Path(*relative.parts[1:])
        target = self._free_path(self.output / relative)
        moved = self._move(source, target)
        self._update(
            row,
            {"path": str(target), "accepted": 1, "missing": int(not moved)},
            {"accepted": True, "kept": True},
        )
        if moved:
            self._write_file_record(target, {"accepted": True, "kept": True})
            self._link_views(self.get(image_id))
        return self.get(image_id)

    def empty_trash(self) -> int:
        """The only permanent delete: every trashed image's file and row."""
        with self._moving(), self.index.transaction() as connection:
            rows = connection.execute("SELECT id, path FROM images WHERE trashed = 1").fetchall()
            for row in rows:
                Path(row["path"]).unlink(missing_ok=True)
            connection.execute("DELETE FROM images WHERE trashed = 1")
            for leftover in image_files(self.trash) if self.trash.exists() else []:
                leftover.unlink(missing_ok=True)
        return len(rows)

    # -- reconcile -----------------------------------------------------------------------------
    def reconcile(self) -> ReconcileReport:
        return reconcile(self.index, self.output, self.foreign)

    # -- helpers -------------------------------------------------------------------------------
    def _relative(self, path: Path) -> Path:
        try:
            return path.relative_to(self.output)
        except ValueError:
            raise UserError(f"{path} is not under {self.output}") from None

    def _update(self, row: sqlite3.Row, columns: dict[str, Any], record: dict[str, Any]) -> None:
        merged = {**json.loads(row["record"]), **record}
        if "path" in columns:
            merged["path"] = columns["path"]
        if "accepted" in record and isinstance(merged.get("output"), dict):
            merged["output"] = {**merged["output"], "accepted": record["accepted"]}
        assignments = ", ".join(f"{name} = ?" for name in columns)
        with self.index.transaction() as connection:
            connection.execute(
                f"UPDATE images SET {assignments}, record = ? WHERE id = ?",
                [*columns.values(), json.dumps(merged), row["id"]],
            )

    @staticmethod
    def _write_file_record(path: Path, changes: dict[str, Any]) -> None:
        with contextlib.suppress(OSError, ValueError):
            update_record(path, changes)

    @staticmethod
    def _move(source: Path, target: Path) -> bool:
        """Move the file (False when it is already gone: the row moves anyway)."""
        if not source.exists():
            return False
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(source, target)
        return True

    def _free_path(self, wanted: Path) -> Path:
        """`wanted`, or the next free `<stem>_NNN.png` beside it (on disk and in the index)."""
        if not self._taken(wanted):
            return wanted
        stem = re.sub(r"_\d+$", "", wanted.stem)
        number = 1
        while True:
            candidate = wanted.with_name(f"{stem}_{number:03d}.png")
            if not self._taken(candidate):
                return candidate
            number += 1

    def _taken(self, path: Path) -> bool:
        with self.index.transaction() as connection:
            row = connection.execute("SELECT 1 FROM images WHERE path = ?", (str(path),)).fetchone()
        return row is not None or path.exists()

    def _view_folders(self, row: sqlite3.Row) -> list[Path]:
        """The row's view folders; a name that is no safe folder name (an index written before
        names from files were checked) has none, so no path leaves the output folder."""
        folders = []
        if safe_view_name(row["character"]):
            folders.append(self.output / "characters" / row["character"])
        if row["collection"] and safe_view_name(row["collection"]):
            folders.append(self.output / "collections" / row["collection"])
        return folders

    def _link_views(self, row: sqlite3.Row) -> None:
        path = Path(row["path"])
        for folder in self._view_folders(row):
            if folder.parent.name == "collections" or row["accepted"]:
                link_view(path, folder, self.organize_by_date)

    @staticmethod
    def _unlink_views(path: Path, folders: list[Path]) -> None:
        real = os.path.realpath(path)
        for folder in folders:
            for link in folder.glob("*.png") if folder.is_dir() else []:
                with contextlib.suppress(OSError):
                    same = os.path.realpath(link) == real or (
                        not link.is_symlink() and path.exists() and link.samefile(path)
                    )
                    if same:
                        link.unlink()
