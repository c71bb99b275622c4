"""Text chunks added to a PNG's own bytes, its pixel data (IDAT) left exactly as it was: how an
image from another renderer (ComfyUI) or a Ray actor is kept unchanged and still carries
our metadata."""

from __future__ import annotations

import struct
import zlib

SIGNATURE = b"\x89PNG\r\n\x1a\n"
# `Image.info` key under which a renderer hands over the PNG bytes it produced.
SOURCE_PNG = "anime-chat:source-png"


def chunk_spans(png: bytes) -> list[tuple[bytes, int, int]]:
    """Each chunk's type and where it lies in `png` (start of its length field, end after its
    CRC), up to IEND; ValueError for a broken file."""
    if not png.startswith(SIGNATURE):
        raise ValueError("not a PNG")
    spans, offset = [], len(SIGNATURE)
    while offset + 8 <= len(png):
        (length,) = struct.unpack(">I", png[offset : offset + 4])
        kind = png[offset + 4 : offset + 8]
        end = offset + 12 + length
        if end > len(png):
            raise ValueError("truncated PNG chunk")
        spans.append((kind, offset, end))
        offset = end
        if kind == b"IEND":
            return spans
    raise ValueError("PNG without IEND")


def chunks(png: bytes) -> list[tuple[bytes, bytes]]:
    """The PNG's chunks as (type, data), up to IEND; ValueError for a broken file."""
    return [(kind, png[start + 8 : end - 4]) for kind, start, end in chunk_spans(png)]


def _chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def _keyword(png: bytes, kind: bytes, start: int, end: int) -> str | None:
    if kind not in (b"tEXt", b"iTXt", b"zTXt"):
        return None
    return png[start + 8 : min(end - 4, start + 8 + 80)].split(b"\x00", 1)[0].decode("latin-1")


def with_text_chunks(png: bytes, texts: dict[str, str]) -> bytes:
    """`png` with `texts` as text chunks (iTXt, UTF-8), replacing chunks of the same keywords;
    every other chunk, pixels included, copied byte for byte (its CRC too: nothing is
    re-encoded or re-checksummed). The text goes before the first IDAT, where PIL writes a
    `pnginfo` and where readers that stop at the pixels (PIL's `Image.open().info`) find it."""
    spans = chunk_spans(png)
    first_idat = next((n for n, (kind, _, _) in enumerate(spans) if kind == b"IDAT"), None)
    at = first_idat if first_idat is not None else len(spans) - 1  # IEND: no pixels at all
    out = bytearray(SIGNATURE)
    for n, (kind, start, end) in enumerate(spans):
        if n == at:
            for key, value in texts.items():
                data = key.encode("latin-1") + b"\x00\x00\x00\x00\x00" + value.encode()
                out += _chunk(b"iTXt", data)
        if _keyword(png, kind, start, end) not in texts:
            out += png[start:end]
    return bytes(out)
