"""Whether PNG bytes made elsewhere (a Ray actor, ComfyUI) are a whole, sound PNG, checked before
they are saved as they are: the head no longer decodes them, so a truncated or damaged file, or
one that would inflate into gigabytes, would otherwise be committed as a finished image.

The checks are the PNG spec's (sections 5.3 chunk CRCs, 11.2.2 IHDR first, 11.2.4 the IDAT
stream): every chunk's CRC, IHDR first, a known colour type and bit depth, and the pixel stream
inflating to exactly the size IHDR announces, streamed (nothing of it is kept). libpng refuses
a critical chunk with a bad CRC, and PIL a file whose pixels end early.
"""

from __future__ import annotations

import struct
import zlib

from tools.store.png_chunks import chunk_spans

MAX_PIXELS = 4096 * 4096  # as the ComfyUI client (tools/comfyui/client.py) refuses bigger
MAX_EXTRA_BYTES = 64 * 1024 * 1024  # text and other chunks beside the pixels
INFLATE_STEP = 1024 * 1024
CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}  # colour type -> samples per pixel
DEPTHS = {0: (1, 2, 4, 8, 16), 2: (8, 16), 3: (1, 2, 4, 8), 4: (8, 16), 6: (8, 16)}
# Adam7's passes: (first column, first row, column step, row step) (PNG spec 8.2).
ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2))
ADAM7 += ((0, 1, 1, 2),)


def check_png(png: bytes) -> tuple[int, int]:
    """The image's (width, height); ValueError naming what is wrong with a broken PNG."""
    found = _with_crcs(png)  # the signature, every chunk whole, IEND
    for kind, data, crc in found:
        if zlib.crc32(data, zlib.crc32(kind)) & 0xFFFFFFFF != crc:
            raise ValueError(f"PNG chunk {kind.decode('latin-1')!r} has a bad CRC")
    if found[0][0] != b"IHDR" or len(found[0][1]) != 13:
        raise ValueError("PNG without IHDR first")
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", found[0][1])
    if not width or not height or width * height > MAX_PIXELS:
        raise ValueError(f"PNG of {width}x{height} pixels (at most {MAX_PIXELS} are kept)")
    if depth not in DEPTHS.get(colour, ()):
        raise ValueError(f"PNG with colour type {colour} at bit depth {depth}")
    expected = _raw_size(width, height, CHANNELS[colour] * depth, interlace)
    if len(png) > expected + MAX_EXTRA_BYTES:
        raise ValueError(f"PNG of {len(png)} bytes for {width}x{height} pixels")
    _check_pixels(b"".join(data for kind, data, _ in found if kind == b"IDAT"), expected)
    return width, height


def _with_crcs(png: bytes) -> list[tuple[bytes, bytes, int]]:
    """Each chunk's (type, data, stored CRC)."""
    return [
        (kind, png[start + 8 : end - 4], struct.unpack(">I", png[end - 4 : end])[0])
        for kind, start, end in chunk_spans(png)
    ]


def _raw_size(width: int, height: int, bits: int, interlace: int) -> int:
    """Bytes of the filtered scanlines (one filter byte each) the IDAT stream inflates to."""
    if not interlace:
        return height * (1 + (width * bits + 7) // 8)
    size = 0
    for x0, y0, dx, dy in ADAM7:
        columns, rows = (width - x0 + dx - 1) // dx, (height - y0 + dy - 1) // dy
        if columns > 0 and rows > 0:
            size += rows * (1 + (columns * bits + 7) // 8)
    return size


def _check_pixels(stream: bytes, expected: int) -> None:
    inflater, size = zlib.decompressobj(), 0
    try:
        data = inflater.decompress(stream, INFLATE_STEP)
        while data:
            size += len(data)
            if size > expected:
                break
            data = inflater.decompress(inflater.unconsumed_tail, INFLATE_STEP)
    except zlib.error as error:
        raise ValueError(f"PNG pixel data is damaged ({error})") from None
    if size != expected or not inflater.eof:
        raise ValueError(f"PNG pixel data inflates to {size} bytes, not {expected}")
