"""`anime-gen index rebuild`: the generation index again, from the image files on disk.

Every PNG the store writes carries its full record in a JSON text chunk, so the index is derived
data. Images are the files under `anime-output/` (accepted, `rejected/`, `.trash/`); the links in
`characters/` and `collections/` are views of them, read only to recover collection membership.
The new index is built in a temp file and renamed over the old one (corrupt or missing).
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import struct
import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from PIL import Image
from pydantic import ValidationError

from tools.characters.library import NAME_PATTERN
from tools.errors import UserError
from tools.settings import Settings
from tools.store.gen_index import GenerationIndex
from tools.store.metadata import ImageMetadata
from tools.store.output_store import METADATA_KEY, read_png_metadata
from tools.text import plural

INDEX_NAME = "generations.sqlite"
VIEW_FOLDERS = ("characters", "collections")
TRASH_FOLDER = ".trash"


@dataclass
class RebuildReport:
    images: int = 0
    rejected: int = 0
    trashed: int = 0
    skipped: list[Path] = field(default_factory=list)


def _collections(output: Path) -> dict[tuple[int, int], str]:
    """Collection name by (device, inode) of the image each link (or hard link) points at."""
    found: dict[tuple[int, int], str] = {}
    for link in (output / "collections").glob("*/*.png"):
        with contextlib.suppress(OSError):
            target = link.stat()
            found[(target.st_dev, target.st_ino)] = link.parent.name
    return found


def image_files(output: Path) -> list[Path]:
    """The images under `output` (not views, not temp files), oldest first."""
    files = [
        path
        for path in output.rglob("*.png")
        if path.relative_to(output).parts[0] not in VIEW_FOLDERS
        and not path.name.startswith(".")
        and path.is_file()
        and not path.is_symlink()
    ]
    return sorted(files, key=lambda path: (path.stat().st_mtime_ns, str(path)))


def png_record(path: Path) -> Any:
    """The JSON record our PNGs carry, decoded; None when it is missing, damaged or unreadable."""
    try:
        return json.loads(read_png_metadata(path)[METADATA_KEY])
    # A crafted file: truncated chunks, a header declaring a decompression bomb.
    except (
        OSError,
        ValueError,
        KeyError,
        SyntaxError,
        EOFError,
        struct.error,
        zlib.error,
        Image.DecompressionBombError,
        RecursionError,  # JSON nested deeper than the interpreter's stack
    ):
        return None


def valid_record(path: Path) -> dict[str, Any] | None:
    """`png_record` when it is a whole record whose names are safe folder names (they become
    view folders under the output), else None: the file counts as foreign."""
    record = png_record(path)
    try:
        meta = ImageMetadata.model_validate(record)
    except ValidationError:
        return None
    # A plain image (tools/generation/plain.py) has no character: "" names no view folder.
    names = [meta.character] if meta.character else []
    names += [meta.collection] if meta.collection is not None else []
    return record if all(safe_view_name(name) for name in names) else None


def safe_view_name(name: object) -> bool:
    """A name that may become a folder of `characters/` or `collections/` (the library's rule)."""
    return isinstance(name, str) and NAME_PATTERN.fullmatch(name) is not None


def place_marks(output: Path, path: Path, record: dict[str, Any]) -> tuple[bool, bool]:
    """(trashed, accepted) as the file's place under `output` says (`.trash/`, `rejected/`)."""
    parts = path.relative_to(output).parts
    accepted = "rejected" not in parts[:2] and bool(record.get("accepted", True))
    return parts[0] == TRASH_FOLDER, accepted


def index_file(
    index: GenerationIndex,
    connection: sqlite3.Connection,
    output: Path,
    path: Path,
    record: dict[str, Any],
    keys: set[str],
    collection: str | None = None,
) -> None:
    """Give an image file found on disk a saved row: its marks from its place, dated by its
    mtime, and its record's job key unless another row holds it already (`keys`, kept up)."""
    record["path"] = str(path)
    record["trashed"], record["accepted"] = place_marks(output, path, record)
    if collection is not None:
        record["collection"] = collection
    key = record.get("key")
    key = key if isinstance(key, str) and key not in keys else None
    if key:
        keys.add(key)
    created = datetime.fromtimestamp(path.stat().st_mtime, UTC).isoformat(timespec="seconds")
    index.reserve(connection, path, key, record, status="saved", created=created)


def rebuild_index(settings: Settings) -> RebuildReport:
    state, output = settings.paths.state, settings.paths.output
    _pause_the_worker(state)
    target = state / INDEX_NAME
    temp = state / f".{INDEX_NAME}.rebuild-{os.getpid()}.tmp"
    _remove_database(temp)
    report = RebuildReport()
    collections = _collections(output) if output.exists() else {}
    keys: set[str] = set()
    index = GenerationIndex(temp)
    with index.transaction() as connection:
        for path in image_files(output) if output.exists() else []:
            record = valid_record(path)
            if record is None:
                report.skipped.append(path)
                continue
            stat = path.stat()
            collection = collections.get((stat.st_dev, stat.st_ino))
            index_file(index, connection, output, path, record, keys, collection)
            report.images += 1
            report.rejected += not record["accepted"]
            report.trashed += record["trashed"]
    index.close()
    # The old file's write-ahead log belongs to the old database: it must not meet the new one.
    _remove_database(target, suffixes=("-wal", "-shm"))
    os.replace(temp, target)
    return report


def _pause_the_worker(state: Path) -> None:
    """Refuse while a job is queued or drawing (its worker writes the index); stop an idle warm
    worker, which holds the old index open: the next job starts a new one."""
    from tools.jobs.journal import JobJournal
    from tools.jobs.processes import stop_worker, worker_running

    busy = [job for job in JobJournal.for_state(state).list() if not job.finished]
    if busy:
        names = ", ".join(job.id[:8] for job in busy)
        raise UserError(
            f"{plural(len(busy), 'job')} not finished ({names}): the worker"
            " writes the index while it draws",
            "wait until `anime-gen jobs` shows it finished, or `anime-gen jobs cancel ID`;"
            " then rebuild",
        )
    if worker_running(state):
        stop_worker(state)


def _remove_database(path: Path, suffixes: tuple[str, ...] = ("", "-wal", "-shm")) -> None:
    for suffix in suffixes:
        with contextlib.suppress(FileNotFoundError):
            Path(f"{path}{suffix}").unlink()
