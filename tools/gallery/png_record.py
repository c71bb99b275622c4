"""Rewrite the JSON record (`anime-chat` text chunk) inside one of our PNGs, pixels untouched.

The gallery's marks that `anime-gen index rebuild` must find again (a star, "keep anyway") live
in that record. Only the chunk is replaced: the image data is copied byte for byte, the file is
written to a temp name and renamed, and its mtime is kept (rebuild dates images by it).
"""

from __future__ import annotations

import json
import os
import struct
import zlib
from pathlib import Path
from typing import Any

from tools.atomic import write_atomic
from tools.store.output_store import METADATA_KEY
from tools.store.png_text import TEXT_KINDS, read_png_text

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_KEYWORD = METADATA_KEY.encode("latin-1") + b"\x00"


def _chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    if not data.startswith(PNG_SIGNATURE):
        raise ValueError("not a PNG")
    chunks, offset = [], len(PNG_SIGNATURE)
    while offset + 8 <= len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        kind = data[offset + 4 : offset + 8]
        chunks.append((kind, data[offset + 8 : offset + 8 + length]))
        offset += 12 + length
        if kind == b"IEND":
            break
    return chunks


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def update_record(path: Path, changes: dict[str, Any]) -> bool:
    """Merge `changes` into the PNG's record; False when the file has no record of ours."""
    # The record as the index read it: the first chunk of its keyword, inflated under the
    # reader's caps; a crafted or damaged chunk is a ValueError, as for any reader.
    text = read_png_text(path).get(METADATA_KEY)
    try:
        record = json.loads(text) if text is not None else None
    except RecursionError:
        raise ValueError("the record nests too deep") from None
    data = path.read_bytes()
    chunks = _chunks(data)
    if not isinstance(record, dict):
        return False
    record.update(changes)
    # ensure_ascii keeps it a plain tEXt chunk (latin-1), as PIL writes it.
    new_text = _chunk(b"tEXt", _KEYWORD + json.dumps(record).encode("latin-1"))
    parts, replaced = [PNG_SIGNATURE], False
    for kind, body in chunks:
        if kind in TEXT_KINDS and body.startswith(_KEYWORD):
            # The new record takes the first one's place; later ones go (readers take the first).
            if not replaced:
                parts.append(new_text)
            replaced = True
        else:
            parts.append(_chunk(kind, body))
    stat = path.stat()
    write_atomic(path, lambda handle: handle.write(b"".join(parts)))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    return True
