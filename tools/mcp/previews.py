"""Images as MCP content: downscaled PNG previews (an agent needs to see, not to keep)."""

from __future__ import annotations

import base64
import io
from pathlib import Path

PREVIEW_SIDE = 512


def preview_png(path: str | Path, side: int = PREVIEW_SIDE) -> bytes | None:
    """The image at `path` as PNG bytes, at most `side` pixels on its longer side; None when it
    cannot be read (moved, trashed, not an image)."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            image.thumbnail((side, side))
            picture = image.convert("RGBA" if "A" in image.getbands() else "RGB")
    except (OSError, ValueError, Image.DecompressionBombError):
        return None
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()


def base64_png(path: str | Path) -> str | None:
    data = preview_png(path)
    return None if data is None else base64.b64encode(data).decode("ascii")


def file_base64(path: str | Path) -> str | None:
    """A file's bytes as base64 (a resource's blob), None when it cannot be read."""
    try:
        return base64.b64encode(Path(path).read_bytes()).decode("ascii")
    except OSError:
        return None
