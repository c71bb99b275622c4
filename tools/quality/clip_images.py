"""Images as a CLIP image encoder should see them: whole, padded to a square.

CLIP's image processor resizes the short side to its input size and centre-crops the long side,
so a tall figure crop or a portrait reference loses its head and feet before the encoder sees
it. Every image bound for a CLIP encoder (IP-Adapter references, quality-gate crops, the
calibration views) goes through `pad_to_square` first; the pad takes the image's own border
colour, so it reads as background.
"""

from __future__ import annotations

import numpy as np
from PIL import Image


def border_colour(image: Image.Image) -> tuple[int, int, int]:
    """The median colour of the image's outermost rows and columns (its background)."""
    pixels = np.asarray(image.convert("RGB"), dtype=np.int16)
    border = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
    red, green, blue = (int(value) for value in np.median(border, axis=0))
    return red, green, blue


def pad_to_square(image: Image.Image) -> Image.Image:
    """The whole image, centred on a square of its border colour."""
    rgb = image.convert("RGB")
    width, height = rgb.size
    if width == height:
        return rgb
    side = max(width, height)
    canvas = Image.new("RGB", (side, side), border_colour(rgb))
    canvas.paste(rgb, ((side - width) // 2, (side - height) // 2))
    return canvas
