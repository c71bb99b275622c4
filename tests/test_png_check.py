"""PNG bytes made elsewhere (a Ray actor, ComfyUI) are checked before the head saves them as
they are (issue 22 review: it no longer decodes them, so a broken file was committed as done)."""

from __future__ import annotations

import io
import random
import struct
import zlib

import pytest
from PIL import Image

from tools.store.png_check import ADAM7, check_png
from tools.store.png_chunks import SIGNATURE, _chunk, chunks


def pil_png(mode: str, size: tuple[int, int], **options) -> bytes:
    samples = {"L": 1, "RGB": 3, "RGBA": 4, "P": 1, "LA": 2}[mode]
    noise = random.Random(7).randbytes(size[0] * size[1] * samples)
    buffer = io.BytesIO()
    Image.frombytes(mode, size, noise).save(buffer, format="PNG", **options)
    return buffer.getvalue()


def build(ihdr: bytes, raw: bytes, *extra: bytes) -> bytes:
    idat = _chunk(b"IDAT", zlib.compress(raw))
    return SIGNATURE + _chunk(b"IHDR", ihdr) + b"".join(extra) + idat + _chunk(b"IEND", b"")


def interlaced_rgb(width: int, height: int) -> bytes:
    """An Adam7 PNG (PIL writes none), each pass's scanlines with filter 0."""
    noise, raw = random.Random(3), b""
    for x0, y0, dx, dy in ADAM7:
        columns, rows = (width - x0 + dx - 1) // dx, (height - y0 + dy - 1) // dy
        if columns > 0 and rows > 0:
            raw += b"".join(b"\x00" + noise.randbytes(columns * 3) for _ in range(rows))
    return build(struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 1), raw)


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA", "P", "LA"])
@pytest.mark.parametrize("size", [(1, 1), (7, 5), (33, 17)])
def test_sound_pngs_pass_with_their_size(mode, size):
    assert check_png(pil_png(mode, size)) == size
    assert check_png(pil_png(mode, size, compress_level=0)) == size


@pytest.mark.parametrize("size", [(1, 1), (3, 2), (9, 13), (16, 16)])
def test_an_interlaced_png_passes_as_pil_decodes_it(size):
    png = interlaced_rgb(*size)
    with Image.open(io.BytesIO(png)) as image:
        image.load()  # PIL reads every pass of it: the size it inflates to is right
    assert check_png(png) == size


def with_bad_crc(png: bytes, kind: bytes) -> bytes:
    at = png.index(kind) - 4
    (length,) = struct.unpack(">I", png[at : at + 4])
    crc_at = at + 8 + length
    return png[:crc_at] + bytes([png[crc_at] ^ 0xFF]) + png[crc_at + 1 :]


def cut_pixels(png: bytes) -> bytes:
    """The pixel stream ends early, but every chunk is whole and its CRC right."""
    (ihdr, *_rest) = chunks(png)
    pixels = b"".join(data for kind, data in chunks(png) if kind == b"IDAT")
    short = _chunk(b"IDAT", pixels[: len(pixels) // 2])
    return SIGNATURE + _chunk(*ihdr) + short + _chunk(b"IEND", b"")


SOUND = pil_png("RGB", (32, 32))
HEADER = struct.pack(">IIBBBBB", 32, 32, 8, 2, 0, 0, 0)
ROWS = b"".join(b"\x00" + bytes(96) for _ in range(32))


@pytest.mark.parametrize(
    ("png", "says"),
    [
        (b"GIF89a" + SOUND[6:], "not a PNG"),
        (SOUND[: len(SOUND) // 2], "truncated"),
        (SOUND[:-12], "without IEND"),
        (with_bad_crc(SOUND, b"IDAT"), "bad CRC"),
        (with_bad_crc(SOUND, b"IHDR"), "bad CRC"),
        (cut_pixels(SOUND), "inflates to"),
        (SIGNATURE + _chunk(b"IHDR", HEADER) + _chunk(b"IEND", b""), "inflates to 0"),
        (build(HEADER, ROWS + b"\x00" * 97), "inflates to"),  # a row too many
        (SIGNATURE + _chunk(b"tEXt", b"a\x00b") + SOUND[8:], "IHDR first"),
        (build(struct.pack(">IIBBBBB", 32, 32, 3, 2, 0, 0, 0), ROWS), "bit depth"),
        # 65535² announced, a few bytes sent: a bomb for whoever opens it.
        (build(struct.pack(">IIBBBBB", 65535, 65535, 8, 2, 0, 0, 0), ROWS), "pixels"),
        (build(HEADER, ROWS, _chunk(b"prVt", bytes(65 * 1024 * 1024))), "bytes for 32x32"),
    ],
)
def test_a_broken_or_oversized_png_is_refused_naming_why(png, says):
    with pytest.raises(ValueError, match=says):
        check_png(png)
