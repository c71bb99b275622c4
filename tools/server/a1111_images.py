"""Base64 images in A1111 requests: decoded with a clear 422, init images kept for the job, and
`png-info`'s answer (A1111's `PNGInfoResponse`: the parameters text, the other chunks, the
parsed fields), for a PNG's `parameters` chunk, a JPEG's or WebP's EXIF UserComment, or a
NovelAI image's chunks.

A1111 clients send images as base64, with or without a `data:image/png;base64,` prefix. An
img2img init image is written under `<state>/a1111/init/` (named by its content, temp file then
rename) before the job is queued, so the journal's spec points at a file that survives a crash.
It is removed once no image still to draw of a queued or running job reads it (`sweep_init_images`,
after each request): the folder holds what the queue needs, not every image a client ever sent.
Writing a request's files and queueing its job (nothing more: a model download waits before it)
happen under the folder's lock, as the sweep does, so a sweep never takes a file whose job is not
in the journal yet; and a temp file the sweep finds is no live write's but one a killed write
left, so it goes too.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import fcntl
import hashlib
import io
import json
import logging
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from fastapi import HTTPException
from PIL import Image

from tools.atomic import write_atomic
from tools.settings_sections import MAX_SIDE

log = logging.getLogger("anime.server")
INIT_FOLDER = ("a1111", "init")
# What `write_atomic` names its temp file beside an init image (`.NAME.png.RANDOM.tmp`).
TEMP_GLOB = ".*.png.*.tmp"
# What clients send; PIL's other decoders (EPS runs Ghostscript) stay out of reach.
FORMATS = ("PNG", "JPEG", "WEBP")
# An init image larger than this is refused before decoding its pixels (a decompression bomb).
MAX_PIXELS = (2 * MAX_SIDE) ** 2
# EXIF: the Exif IFD and its UserComment tag (A1111 writes its parameters there for JPEG/WebP).
EXIF_IFD, USER_COMMENT = 0x8769, 0x9286
# A longer UserComment is not read (an infotext is a few KB; a WebP's EXIF can be the whole body).
MAX_COMMENT_BYTES = 1024 * 1024
# The character code prefix of a UserComment (EXIF 2.3 table 9), as piexif.helper reads it.
COMMENT_CODES = {b"ASCII\0\0\0": "ascii", b"JIS\0\0\0\0\0": "shift_jis", b"UNICODE\0": "utf-16"}


def decode_image(data: str, field: str) -> tuple[Image.Image, bytes]:
    """(the image, its bytes) of a base64 field; anything else is a 422 naming the field."""
    # Space around it goes as A1111's png-info strips it (`pnginfoapi`); a data URL's payload
    # follows its comma, and one without is empty, so not an image.
    data = data.strip()
    if data.startswith(("http://", "https://")):
        # A1111 fetches these (`api_enable_requests`); a request to a host a client names is
        # not ours to make.
        raise HTTPException(422, f"{field}: image URLs are not fetched; send the image as base64")
    encoded = data.partition(",")[2] if data.startswith("data:") else data
    try:
        # Line breaks are skipped as A1111's `base64.b64decode` does (`modules/api/api.py`
        # decode_base64_to_image): `base64.encodebytes` and the `base64` command wrap at 76.
        raw = base64.b64decode("".join(encoded.split()), validate=True)
        image = Image.open(io.BytesIO(raw), formats=FORMATS)
        if image.width * image.height > MAX_PIXELS:
            raise HTTPException(422, f"{field}: {image.width}x{image.height} is too large")
        image.load()
    except (binascii.Error, OSError, ValueError, Image.DecompressionBombError) as error:
        raise HTTPException(422, f"{field}: not a base64 PNG, JPEG or WebP ({error})") from None
    return image, raw


@contextlib.contextmanager
def init_folder_locked(state: Path) -> Iterator[Path]:
    """The init folder, under its lock (an flock: across the server's threads and processes,
    dropped by the kernel if the holder dies)."""
    folder = state.joinpath(*INIT_FOLDER)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield folder


def sweep_init_images(state: Path) -> list[Path]:
    """Remove the init images no queued or running job still needs (done, failed and
    cancelled jobs' ones, and any a crash left) and the temp files of killed writes; returns
    what was removed."""
    from tools.jobs.journal import JobJournal

    if not state.joinpath(*INIT_FOLDER).is_dir():
        return []
    with init_folder_locked(state) as folder:
        needed = {Path(path) for path in JobJournal.for_state(state).init_images_needed()}
        removed = [path for path in folder.glob("*.png") if path not in needed]
        # Writers hold this lock while writing (`save_init_image`): no temp file is in use now.
        removed += folder.glob(TEMP_GLOB)
        for path in removed:
            path.unlink(missing_ok=True)
    return removed


def sweep_after_request(state: Path) -> None:
    """The sweep after a request: housekeeping, so a failure of it (the journal locked, a file
    that would not go) is logged, never the request's; the next request's sweep tries again."""
    try:
        sweep_init_images(state)
    except Exception:
        log.exception("the init image sweep of %s failed", state.joinpath(*INIT_FOLDER))


def save_init_image(folder: Path, image: Image.Image, raw: bytes) -> Path:
    """Write a decoded init image (`decode_image`) as PNG into the (locked) init folder; the
    same image, the same file."""
    path = folder / f"{hashlib.sha256(raw).hexdigest()[:24]}.png"
    if not path.exists():
        converted = image.convert("RGB")
        write_atomic(path, lambda handle: converted.save(handle, format="PNG"))
    return path


def exif_comment(image: Image.Image) -> tuple[str, str | None]:
    """(the EXIF UserComment's text or "", why it was not read or None).

    As A1111 `modules/images.py` `read_info_from_image` with piexif: the 8-byte prefix names
    the code (`UNICODE` is UTF-16, big-endian as piexif writes it; a byte-order mark or the
    zeros of mostly-ASCII text show a little-endian one, as other tools write), and a comment
    without a known prefix is read as UTF-8, dropping what is not. Damaged EXIF is no comment
    (Pillow reads what it can and raises SyntaxError on a header that is no TIFF)."""
    try:
        value = image.getexif().get_ifd(EXIF_IFD).get(USER_COMMENT)
    except (SyntaxError, OSError, ValueError, struct.error, KeyError, TypeError, IndexError):
        return "", "the EXIF data is damaged"
    if isinstance(value, str):  # written with the ASCII type instead of UNDEFINED
        return value.strip("\0"), None
    if not isinstance(value, bytes) or not value:
        return "", None
    if len(value) > MAX_COMMENT_BYTES:
        return "", f"{len(value)} bytes, over the {MAX_COMMENT_BYTES // 1024} KiB read"
    code, body = COMMENT_CODES.get(value[:8]), value[8:]
    if code is None:
        return value.decode("utf-8", errors="ignore").strip("\0"), None
    if code == "utf-16":
        code = _utf16_order(body)
    return body.decode(code, errors="replace").lstrip("\ufeff").rstrip("\0"), None


def _utf16_order(body: bytes) -> str:
    if body[:2] in (b"\xff\xfe", b"\xfe\xff"):
        return "utf-16"  # the mark says which
    little = body[1::2].count(0) > body[0::2].count(0)
    return "utf-16-le" if little else "utf-16-be"


def png_info_answer(image: Image.Image) -> dict[str, Any]:
    from tools.server.a1111_novelai import novelai_infotext
    from tools.store.png_info import OUR_METADATA_KEY, parse_a1111, parse_a1111_entries

    items = {k: v for k, v in (image.info or {}).items() if isinstance(v, str)}
    info = items.pop("parameters", "")
    if "exif" in (image.info or {}):
        # As A1111 (`read_info_from_image`): a UserComment, when there is one, is the
        # parameters text and is listed among the items too.
        comment, skipped = exif_comment(image)
        if comment:
            info = items["exif comment"] = comment
        if skipped:
            items["exif comment"] = f"not read: {skipped}"
    # As A1111, a NovelAI image's chunks are written out as an infotext.
    info = novelai_infotext(items, image.size) or info
    parameters: dict[str, Any] = {}
    if info:
        parsed = parse_a1111(info)
        parameters["Prompt"] = parsed["prompt"]
        if parsed["negative_prompt"] is not None:
            parameters["Negative prompt"] = parsed["negative_prompt"]
        last = info.strip().split("\n")[-1]
        if last.lstrip().startswith("Steps:"):
            parameters.update(parse_a1111_entries(last))
    if OUR_METADATA_KEY in items:
        # A foreign or damaged record stays the text it is.
        with contextlib.suppress(ValueError, RecursionError):  # nested past the stack
            items[OUR_METADATA_KEY] = json.loads(items[OUR_METADATA_KEY])
    return {"info": info, "items": items, "parameters": parameters}
