"""Raw consistency: cosine similarity of CLIP image embeddings of character crops.

The encoder is the IP-Adapter's own (already loaded by the engine) unless
`quality.consistency_model` names another CLIP vision model. Both images are cropped to the
character first (the figure's bounding box against the background), so a large empty
background does not dominate the embedding; the encoders pad every image to a square
(`tools/quality/clip_images.py`), so a tall crop keeps its head.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np
from PIL import Image

from tools.engine.model_sources import local_path, resolve_source
from tools.quality.clip_images import border_colour, pad_to_square
from tools.settings import Settings

if TYPE_CHECKING:
    import torch

    from tools.engine.rendering import Engine

# A pixel belongs to the figure when it differs from the border colour by more than this
# (sum of absolute RGB differences); the box gets a small margin.
FOREGROUND_DISTANCE = 60
CROP_MARGIN = 0.04
MIN_FIGURE_FRACTION = 0.02


class ImageEncoder(Protocol):
    name: str

    def embed(self, images: list[Image.Image]) -> torch.Tensor:
        """L2-normalised embeddings, one row per image."""
        ...


class EngineEncoder:
    """The IP-Adapter's CLIP image encoder, through the warm engine."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.name = f"ipadapter:{engine.ipadapter_source.location}"

    def embed(self, images: list[Image.Image]) -> torch.Tensor:
        return self.engine.image_embeddings(images)


class ClipEncoder:
    """A CLIP vision model with projection from a local folder or hub id."""

    def __init__(self, location: str, models_dir: Path) -> None:
        self.name = f"clip:{location}"
        self.location = location
        self.models_dir = models_dir
        self._model = None
        self._processor = None

    def _load(self) -> None:
        import torch
        import transformers
        from transformers import CLIPImageProcessor, CLIPVisionModelWithProjection

        transformers.utils.logging.disable_progress_bar()

        source = resolve_source(self.location, self.models_dir, "consistency_model")
        folder = local_path(source, ["*.safetensors"], "consistency model")
        device = "cuda" if torch.cuda.is_available() else "cpu"
        self._model = CLIPVisionModelWithProjection.from_pretrained(folder).to(device).eval()
        self._processor = CLIPImageProcessor.from_pretrained(folder)

    def embed(self, images: list[Image.Image]) -> torch.Tensor:
        import torch

        if self._model is None:
            self._load()
        assert self._model is not None and self._processor is not None
        pixels = self._processor(
            [pad_to_square(image) for image in images], return_tensors="pt"
        ).pixel_values.to(self._model.device)
        with torch.inference_mode():
            embeds = self._model(pixel_values=pixels).image_embeds.float()
        return torch.nn.functional.normalize(embeds, dim=-1).cpu()


def make_encoder(settings: Settings, engine: Engine | None) -> ImageEncoder:
    if settings.quality.consistency_model:
        return ClipEncoder(settings.quality.consistency_model, settings.paths.models)
    if engine is None:
        raise ValueError("no engine and no quality.consistency_model to embed images with")
    return EngineEncoder(engine)


def character_crop(image: Image.Image) -> Image.Image:
    """The figure's bounding box (against the border colour), or the whole image."""
    rgb = image.convert("RGB")
    pixels = np.asarray(rgb, dtype=np.int16)
    background = np.array(border_colour(rgb), dtype=np.int16)
    mask = np.abs(pixels - background).sum(axis=-1) > FOREGROUND_DISTANCE
    if mask.mean() < MIN_FIGURE_FRACTION:
        return rgb
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    height, width = mask.shape
    pad_y, pad_x = int(height * CROP_MARGIN), int(width * CROP_MARGIN)
    box = (
        max(0, cols[0] - pad_x),
        max(0, rows[0] - pad_y),
        min(width, cols[-1] + 1 + pad_x),
        min(height, rows[-1] + 1 + pad_y),
    )
    return rgb.crop(box)


def similarity_to_references(
    encoder: ImageEncoder, images: list[Image.Image], references: torch.Tensor
) -> list[float]:
    """For each image, the best cosine similarity to any reference embedding."""
    embeddings = encoder.embed([character_crop(image) for image in images])
    return [float(value) for value in (embeddings @ references.T).max(dim=1).values]
