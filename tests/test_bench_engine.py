"""The engine's speed settings keep producing the right images."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tools.engine.rendering import Engine, RenderJob
from tools.settings import load_settings

pytestmark = pytest.mark.slow


def engine_for(home: Path, models=None, output=None) -> Engine:
    overrides = {"models": models or {}, "output": output or {}}
    return Engine(load_settings(overrides=overrides, home=home))


def draw(engine: Engine, reference: Path | None, seeds=(1,)) -> list[np.ndarray]:
    jobs = [
        RenderJob("1girl", "lowres", Image.new("RGB", (128, 192)), reference, seed)
        for seed in seeds
    ]
    images = engine.render(
        jobs, width=128, height=192, ipadapter_weight=0.9, controlnet_strength=0.5
    )
    return [np.asarray(image, dtype=np.int16) for image in images]


def unet_batches(engine: Engine) -> list[int]:
    batches: list[int] = []
    engine.pipe.unet.register_forward_pre_hook(
        lambda _module, args: batches.append(args[0].shape[0])
    )
    return batches


def test_cfg_cutoff_runs_the_last_steps_unguided(anime_home, reference_image):
    full = engine_for(anime_home)
    cut = engine_for(anime_home, output={"cfg_cutoff": 0.5})
    full_batches, cut_batches = unet_batches(full), unet_batches(cut)
    guided = draw(full, reference_image, seeds=(1, 2))
    cutoff = draw(cut, reference_image, seeds=(1, 2))
    assert full_batches == [4, 4, 4, 4]  # two images, each with its negative, four steps
    assert cut_batches == [4, 4, 2, 2]
    assert guided[0].shape == cutoff[0].shape
    assert not np.array_equal(guided[0], cutoff[0])
    assert np.array_equal(draw(cut, reference_image, seeds=(1, 2))[1], cutoff[1])


def test_fused_qkv_draws_the_same_image_as_unfused(anime_home, reference_image):
    fused = draw(engine_for(anime_home, models={"fuse_qkv": True}), reference_image)[0]
    plain = draw(engine_for(anime_home, models={"fuse_qkv": False}), reference_image)[0]
    assert np.abs(fused - plain).max() <= 2  # float rounding only


def test_a_batch_draws_what_single_images_draw(anime_home, reference_image):
    engine = engine_for(anime_home)
    together = draw(engine, reference_image, seeds=(5, 6))
    alone = [draw(engine, reference_image, seeds=(seed,))[0] for seed in (5, 6)]
    # Same noise per image (one generator each); batched kernels round differently, so a few
    # pixels move a little, but the picture is the same one.
    for batched, single in zip(together, alone, strict=True):
        assert np.abs(batched - single).mean() < 3.0
    assert np.abs(together[0] - together[1]).mean() > 5 * np.abs(together[0] - alone[0]).mean()
