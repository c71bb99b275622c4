"""A PNG's text chunks (tEXt, zTXt, iTXt), read without decoding a pixel.

PIL's `Image.text` loads the whole image to find chunks after the pixel data: a gallery
reconciling a thousand foreign PNGs would decode every one. This walks the chunk headers and
seeks over everything that is not text (the PNG spec, section 11.3.4; PIL's PngImagePlugin
`chunk_tEXt`/`chunk_zTXt`/`chunk_iTXt` for the field layout).
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path
from typing import BinaryIO

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
TEXT_KINDS = frozenset({b"tEXt", b"zTXt", b"iTXt"})
# Bounds for crafted files: PIL's own MAX_TEXT_CHUNK is 1 MiB; our records are a few KiB.
MAX_TEXT_BYTES = 8 * 1024 * 1024
# ... and all of a file's text together (PIL: MAX_TEXT_MEMORY, 64 MiB): else many small zTXt
# chunks, each under the cap above, inflate a few KB of file into gigabytes.
MAX_TEXT_MEMORY = 64 * 1024 * 1024
MAX_CHUNKS = 100_000


def _inflate(data: bytes) -> bytes:
    inflater = zlib.decompressobj()
    try:
        text = inflater.decompress(data, MAX_TEXT_BYTES)
    except zlib.error as error:  # not a ValueError: callers expect one for a damaged file
        raise ValueError(f"a compressed text chunk is damaged ({error})") from None
    if inflater.unconsumed_tail:
        raise ValueError("a compressed text chunk is too large")
    return text


def _text_chunk(kind: bytes, body: bytes) -> tuple[str, str] | None:
    keyword, _, rest = body.partition(b"\x00")
    name = keyword.decode("latin-1")
    if kind == b"tEXt":
        return name, rest.decode("latin-1")
    if kind == b"zTXt":
        return name, _inflate(rest[1:]).decode("latin-1")
    if len(rest) < 2:
        return None
    compressed, text = rest[0], rest[2:]
    _language, _, text = text.partition(b"\x00")
    _translated, _, text = text.partition(b"\x00")
    return name, (_inflate(text) if compressed else text).decode("utf-8", "replace")


def _read_exactly(handle: BinaryIO, size: int) -> bytes:
    data = handle.read(size)
    if len(data) != size:
        raise ValueError("the PNG is truncated")
    return data


def read_png_text(path: Path) -> dict[str, str]:
    """Every text chunk's keyword → text (the first of a keyword wins, as in PIL's `info`).
    Raises ValueError (or OSError) for a file that is not a readable PNG."""
    found: dict[str, str] = {}
    total = 0
    with open(path, "rb") as handle:
        if handle.read(len(PNG_SIGNATURE)) != PNG_SIGNATURE:
            raise ValueError("not a PNG")
        for _ in range(MAX_CHUNKS):
            header = handle.read(8)
            if len(header) < 8:
                break  # a file cut after its last whole chunk: what was read stands
            length, kind = struct.unpack(">I4s", header)
            if kind == b"IEND":
                break
            if kind in TEXT_KINDS and length <= MAX_TEXT_BYTES:
                entry = _text_chunk(kind, _read_exactly(handle, length))
                if entry is not None:
                    total += len(entry[1])
                    if total > MAX_TEXT_MEMORY:
                        raise ValueError("too much text in the PNG's text chunks")
                    found.setdefault(*entry)
                handle.seek(4, 1)  # the CRC
            else:
                handle.seek(length + 4, 1)
    return found
