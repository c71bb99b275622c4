"""Per-character calibration of consistency, so that 0.90 means the same for every character.

Raw CLIP similarity depends on the character: a plain design scores higher against anything
than a busy one. The baseline is what a re-drawn, on-model image of the character scores
against its references, estimated from re-framed, flipped, cropped, rotated and recoloured
views of the references themselves. Calibrated consistency = raw / baseline (capped at 1), so
0.90 reads "90% as close to the references as the character's own re-drawings are".
The baseline is stored in `characters.json` (`consistency_baseline`) once per character.

The palette signal (`tools/quality/palette.py`) is calibrated the same way into
`palette_baseline`, but from re-framed, cropped, rotated and blurred views only: recolouring is
what it must catch. Both are `tools.quality.signal_shape.Signal`s; this module is written once for
either.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

from PIL import Image, ImageEnhance, ImageFilter, ImageOps

from tools.quality.consistency import character_crop

if TYPE_CHECKING:
    from tools.characters.library import Character, CharacterLibrary
    from tools.quality.signal_shape import Signal

VIEWS_PER_REFERENCE = 8
CALIBRATION_SEED = 1234
# A baseline below this would blow small raw scores up to "consistent"; it means the encoder
# cannot tell the character from noise, so the floor keeps the ratio honest.
MIN_BASELINE = 0.05


def _reframe(image: Image.Image, rng: random.Random) -> Image.Image:
    """The figure smaller or larger, somewhere else, on another plain background."""
    figure = character_crop(image)
    scale = rng.uniform(0.6, 0.9)
    width, height = image.size
    fitted = ImageOps.contain(figure, (int(width * scale), int(height * scale)))
    shade = tuple(rng.randrange(150, 256) for _ in range(3))
    canvas = Image.new("RGB", image.size, shade)
    x = rng.randrange(0, width - fitted.width + 1)
    y = rng.randrange(0, height - fitted.height + 1)
    canvas.paste(fitted, (x, y))
    return canvas


def _crop(image: Image.Image, rng: random.Random) -> Image.Image:
    width, height = image.size
    keep = rng.uniform(0.7, 0.9)
    new_w, new_h = int(width * keep), int(height * keep)
    x, y = rng.randrange(0, width - new_w + 1), rng.randrange(0, height - new_h + 1)
    return image.crop((x, y, x + new_w, y + new_h)).resize(image.size)


def _rotate(image: Image.Image, rng: random.Random) -> Image.Image:
    corner = image.getpixel((0, 0))
    return image.rotate(rng.uniform(-12, 12), resample=Image.BICUBIC, fillcolor=corner)


def _recolour(image: Image.Image, rng: random.Random) -> Image.Image:
    image = ImageEnhance.Brightness(image).enhance(rng.uniform(0.85, 1.15))
    image = ImageEnhance.Color(image).enhance(rng.uniform(0.8, 1.2))
    return ImageEnhance.Contrast(image).enhance(rng.uniform(0.85, 1.15))


def _soften(image: Image.Image, rng: random.Random) -> Image.Image:
    return image.filter(ImageFilter.GaussianBlur(rng.uniform(0.5, 1.5)))


AUGMENTATIONS = (_reframe, _crop, _rotate, _recolour, _soften)
SHAPE_AUGMENTATIONS = (_reframe, _crop, _rotate, _soften)


def augmented_views(
    image: Image.Image, count: int, seed: int, changes: tuple = AUGMENTATIONS
) -> list[Image.Image]:
    """`count` deterministic re-drawing-like views: each mirrored or not, with two `changes`."""
    rng = random.Random(seed)
    views = []
    for index in range(count):
        view = image.convert("RGB")
        if index % 2:
            view = ImageOps.mirror(view)
        for change in rng.sample(changes, 2):
            view = change(view, rng)
        views.append(view)
    return views


def compute_baseline(signal: Signal, references: list[Image.Image]) -> float:
    """Mean best-reference similarity of the references' augmented views."""
    targets = signal.summarise(references)
    views = [
        view
        for number, image in enumerate(references)
        for view in augmented_views(
            image, VIEWS_PER_REFERENCE, CALIBRATION_SEED + number, signal.views
        )
    ]
    scores = signal.similarity(views, targets)
    return max(MIN_BASELINE, sum(scores) / len(scores))


def calibrated(raw: float, baseline: float) -> float:
    return max(0.0, min(1.0, raw / max(baseline, MIN_BASELINE)))


def calibrate(library: CharacterLibrary, signal: Signal, character: Character) -> Character:
    """Compute the character's baseline of `signal` and store it in characters.json; returns
    the updated character."""
    references = [Image.open(path).convert("RGB") for path in character.reference_paths]
    baseline = round(compute_baseline(signal, references), 4)
    current = library.get(character.name)
    updated = current.model_copy(update={signal.baseline_field: baseline})
    library.update(updated)
    return updated
