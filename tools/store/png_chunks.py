"""Text chunks added to a PNG's own bytes, its pixel data (IDAT) left exactly as it was: how an
image from another renderer (ComfyUI) is kept unchanged and still carries our metadata."""

from __future__ import annotations

import struct
import zlib

SIGNATURE = b"\x89PNG\r\n\x1a\n"
# `Image.info` key under which a renderer hands over the PNG bytes it produced.
SOURCE_PNG = "anime-chat:source-png"


def chunks(png: bytes) -> list[tuple[bytes, bytes]]:
    """The PNG's chunks as (type, data), up to IEND; ValueError for a broken file."""
    if not png.startswith(SIGNATURE):
        raise ValueError("not a PNG")
    chunks, offset = [], len(SIGNATURE)
    while offset + 8 <= len(png):
        (length,) = struct.unpack(">I", png[offset : offset + 4])
        kind = png[offset + 4 : offset + 8]
        data = png[offset + 8 : offset + 8 + length]
        if len(data) != length:
            raise ValueError("truncated PNG chunk")
        chunks.append((kind, data))
        offset += 12 + length
        if kind == b"IEND":
            return chunks
    raise ValueError("PNG without IEND")


def _chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def _keyword(kind: bytes, data: bytes) -> str | None:
    if kind not in (b"tEXt", b"iTXt", b"zTXt"):
        return None
    return data.split(b"\x00", 1)[0].decode("latin-1")


def with_text_chunks(png: bytes, texts: dict[str, str]) -> bytes:
    """`png` with `texts` as text chunks (iTXt, UTF-8) before IEND, replacing chunks of the
    same keywords; every other chunk, pixels included, byte for byte."""
    kept = [(kind, data) for kind, data in chunks(png) if _keyword(kind, data) not in texts]
    out = bytearray(SIGNATURE)
    for kind, data in kept[:-1]:
        out += _chunk(kind, data)
    for key, value in texts.items():
        out += _chunk(b"iTXt", key.encode("latin-1") + b"\x00\x00\x00\x00\x00" + value.encode())
    out += _chunk(*kept[-1])
    return bytes(out)
