"""Thumbnails: WebP, made once per image version, cached in `<state>/thumbs/`.

The cache key is the image's path and mtime, so an image edited or replaced by hand gets a new
thumbnail, and a deleted cache file is simply made again.
"""

from __future__ import annotations

import hashlib
import os
import stat
import struct
from pathlib import Path
from typing import BinaryIO

from tools.atomic import write_atomic

THUMB_WIDTH = 256
THUMB_FOLDER = "thumbs"


def _open_file(path: Path) -> BinaryIO:
    """`path` opened for reading if it is a regular file, else OSError. O_NONBLOCK: a FIFO put
    in its place would otherwise block the opening thread until some writer came."""
    descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    if not stat.S_ISREG(os.fstat(descriptor).st_mode):
        os.close(descriptor)
        raise OSError(f"{path} is not a regular file")
    return os.fdopen(descriptor, "rb")


def thumbnail(state: Path, image: Path, width: int = THUMB_WIDTH) -> Path:
    """The cached thumbnail of `image` (made now if missing); OSError if the image is gone or
    is not an image (replaced by hand since it was indexed: a bomb, a damaged file, a FIFO)."""
    from PIL import Image

    with _open_file(image) as handle:
        mtime = os.fstat(handle.fileno()).st_mtime_ns
        key = hashlib.sha256(f"{image}\0{mtime}\0{width}".encode()).hexdigest()
        cached = state / THUMB_FOLDER / key[:2] / f"{key}.webp"
        if cached.is_file():
            return cached
        try:
            with Image.open(handle) as picture:
                picture = picture.convert("RGB")
        except (ValueError, SyntaxError, struct.error, Image.DecompressionBombError) as error:
            raise OSError(f"{image} is not an image the gallery can show ({error})") from None
    picture.thumbnail((width, width * 2))
    write_atomic(cached, lambda handle: picture.save(handle, format="WEBP", quality=80))
    return cached
