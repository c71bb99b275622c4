"""What the CLIP image encoders see: the whole figure, head included (padded, never cropped)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tools.engine.rendering import Engine
from tools.quality.clip_images import pad_to_square
from tools.quality.consistency import ClipEncoder, EngineEncoder, similarity_to_references
from tools.settings import load_settings

HEAD = (220, 20, 20)
BODY = (30, 60, 200)


def tall_figure() -> Image.Image:
    """A generated-image-sized canvas with a thin standing figure: red head, blue body."""
    image = Image.new("RGB", (128, 192), "white")
    image.paste(Image.new("RGB", (24, 24), HEAD), (52, 6))
    image.paste(Image.new("RGB", (24, 156), BODY), (52, 30))
    return image


def sees_the_head(pixel_values: object, processor: object) -> bool:
    """Whether any pixel the encoder received is the head's red (after undoing the norm)."""
    values = np.asarray(pixel_values, dtype=np.float32)[0]
    mean = np.asarray(processor.image_mean, dtype=np.float32)[:, None, None]
    std = np.asarray(processor.image_std, dtype=np.float32)[:, None, None]
    red, green, blue = values * std + mean
    return bool(((red > 0.7) & (green < 0.3) & (blue < 0.3)).any())


def encoder_inputs(model: object) -> list:
    seen: list = []

    def capture(_module: object, args: tuple, kwargs: dict) -> None:
        seen.append((args[0] if args else kwargs["pixel_values"]).float().cpu())

    model.register_forward_pre_hook(capture, with_kwargs=True)
    return seen


def test_pad_to_square_keeps_every_pixel_and_pads_with_the_background() -> None:
    figure = tall_figure()
    square = pad_to_square(figure)
    assert square.size == (192, 192)
    assert square.getpixel((0, 0)) == (255, 255, 255)
    assert np.array_equal(np.asarray(square.crop((32, 0, 160, 192))), np.asarray(figure))
    assert pad_to_square(square).size == square.size


@pytest.mark.slow
def test_the_gate_and_the_ip_adapter_encoder_see_a_tall_figures_head(
    anime_home: Path, tmp_path: Path
) -> None:
    engine = Engine(load_settings(home=anime_home, env={}))
    pipe = engine.pipe
    seen = encoder_inputs(pipe.image_encoder)
    references = engine.image_embeddings([tall_figure()])
    # The quality gate (and calibration): the figure's crop is about 1:6, tall.
    similarity_to_references(EngineEncoder(engine), [tall_figure()], references)
    # A portrait reference image for the IP-Adapter.
    portrait = tmp_path / "portrait.png"
    tall_figure().save(portrait)
    engine.reference_embedding(portrait)
    assert len(seen) >= 3
    assert all(sees_the_head(pixels, pipe.feature_extractor) for pixels in seen)


@pytest.mark.slow
def test_a_separate_consistency_model_sees_the_head_too(tiny_models: Path) -> None:
    encoder = ClipEncoder(str(tiny_models / "ip-adapter" / "models" / "image_encoder"), tiny_models)
    encoder.embed([tall_figure()])
    seen = encoder_inputs(encoder._model)
    similarity_to_references(encoder, [tall_figure()], encoder.embed([tall_figure()]))
    assert len(seen) == 2
    assert all(sees_the_head(pixels, encoder._processor) for pixels in seen)
