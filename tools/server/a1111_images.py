"""Base64 images in A1111 requests: decoded with a clear 422, init images kept for the job, and
`png-info`'s answer (A1111's `PNGInfoResponse`: the parameters text, the other chunks, the
parsed fields).

A1111 clients send images as base64, with or without a `data:image/png;base64,` prefix. An
img2img init image is written under `<state>/a1111/init/` (named by its content, temp file then
rename) before the job is queued, so the journal's spec points at a file that survives a crash.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import io
import json
from pathlib import Path
from typing import Any

from fastapi import HTTPException
from PIL import Image

from tools.atomic import write_atomic
from tools.settings_sections import MAX_SIDE

INIT_FOLDER = ("a1111", "init")
# What clients send; PIL's other decoders (EPS runs Ghostscript) stay out of reach.
FORMATS = ("PNG", "JPEG", "WEBP")
# An init image larger than this is refused before decoding its pixels (a decompression bomb).
MAX_PIXELS = (2 * MAX_SIDE) ** 2


def decode_image(data: str, field: str) -> tuple[Image.Image, bytes]:
    """(the image, its bytes) of a base64 field; anything else is a 422 naming the field."""
    # A data URL's payload follows its comma; one without is empty, so not an image.
    encoded = data.partition(",")[2] if data.startswith("data:") else data
    try:
        raw = base64.b64decode(encoded, validate=True)
        image = Image.open(io.BytesIO(raw), formats=FORMATS)
        if image.width * image.height > MAX_PIXELS:
            raise HTTPException(422, f"{field}: {image.width}x{image.height} is too large")
        image.load()
    except (binascii.Error, OSError, ValueError, Image.DecompressionBombError) as error:
        raise HTTPException(422, f"{field}: not a base64 PNG, JPEG or WebP ({error})") from None
    return image, raw


def save_init_image(state: Path, data: str) -> Path:
    """Write the init image as PNG under the state folder; the same image, the same file."""
    image, raw = decode_image(data, "init_images")
    folder = state.joinpath(*INIT_FOLDER)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{hashlib.sha256(raw).hexdigest()[:24]}.png"
    if not path.exists():
        converted = image.convert("RGB")
        write_atomic(path, lambda handle: converted.save(handle, format="PNG"))
    return path


def png_info_answer(image: Image.Image) -> dict[str, Any]:
    from tools.store.png_info import OUR_METADATA_KEY, parse_a1111, parse_a1111_entries

    items = {k: v for k, v in (image.info or {}).items() if isinstance(v, str)}
    info = items.pop("parameters", "")
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
