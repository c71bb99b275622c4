"""Thumbnails: WebP, made once per image version, cached in `<state>/thumbs/`.

The cache key is the image's path and mtime, so an image edited or replaced by hand gets a new
thumbnail, and a deleted cache file is simply made again.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from tools.atomic import write_atomic

THUMB_WIDTH = 256
THUMB_FOLDER = "thumbs"


def thumbnail(state: Path, image: Path, width: int = THUMB_WIDTH) -> Path:
    """The cached thumbnail of `image` (made now if missing); OSError if the image is gone."""
    from PIL import Image

    stat = image.stat()
    key = hashlib.sha256(f"{image}\0{stat.st_mtime_ns}\0{width}".encode()).hexdigest()
    cached = state / THUMB_FOLDER / key[:2] / f"{key}.webp"
    if cached.is_file():
        return cached
    with Image.open(image) as picture:
        picture = picture.convert("RGB")
        picture.thumbnail((width, width * 2))
        write_atomic(cached, lambda handle: picture.save(handle, format="WEBP", quality=80))
    return cached
