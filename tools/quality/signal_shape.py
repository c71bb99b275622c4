"""`Signal`: the one shape of an identity signal the gate scores (see `tools.quality.signals`).
Its own module, below both `signals` (the signals themselves) and `calibration` (their
baselines)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from PIL import Image


@dataclass(frozen=True)
class Signal:
    name: str  # the score's name in `Scores`
    baseline_field: str  # the `Character` field (characters.json) that stores its baseline
    # references -> what images are compared to (embeddings, histograms)
    summarise: Callable[[list[Image.Image]], Any]
    # (images, summary) -> each image's best similarity to any reference
    similarity: Callable[[list[Image.Image], Any], list[float]]
    # the augmentations calibration draws the references' views with
    views: tuple[Callable, ...]
    # what else a cached summary depends on besides the reference files (the encoder)
    cache_tag: str = ""
