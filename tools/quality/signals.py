"""The identity signals the gate scores, in one shape.

Consistency (CLIP embeddings of the figure crop, `tools/quality/consistency.py`) and palette
(Lab colour histograms of the figure, `tools/quality/palette.py`) are used the same way: a
character's references are summarised once, an image scores its best similarity to them, and the
per-character baseline is what re-drawn-like views of the references score
(`tools/quality/calibration.py`). A `Signal` is that shape; the gate and calibration are written
once against it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tools.quality import consistency, palette
from tools.quality.calibration import AUGMENTATIONS, SHAPE_AUGMENTATIONS
from tools.quality.signal_shape import Signal

if TYPE_CHECKING:
    from tools.quality.consistency import ImageEncoder


def consistency_signal(encoder: ImageEncoder) -> Signal:
    return Signal(
        name="consistency",
        baseline_field="consistency_baseline",
        summarise=lambda images: encoder.embed([consistency.character_crop(i) for i in images]),
        similarity=lambda images, embeddings: consistency.similarity_to_references(
            encoder, images, embeddings
        ),
        views=AUGMENTATIONS,
        cache_tag=encoder.name,
    )


# Calibrated from re-framed, cropped, rotated and blurred views only: recolouring is what it
# must catch.
PALETTE = Signal(
    name="palette",
    baseline_field="palette_baseline",
    summarise=lambda images: [palette.palette_histogram(image) for image in images],
    similarity=palette.similarity_to_references,
    views=SHAPE_AUGMENTATIONS,
)
