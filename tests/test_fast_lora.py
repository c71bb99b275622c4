"""Few-step mode: a distilled LoRA fused into the UNet, its scheduler, steps and guidance."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from evals.tiny_lora import build_tiny_lora
from tools.engine.rendering import Engine, RenderJob
from tools.settings import load_settings

pytestmark = pytest.mark.slow


def fast_engine(home: Path, lora: Path, fuse_qkv: bool = True, sampler: str = "lcm") -> Engine:
    overrides = {
        "models": {"fast_lora": str(lora), "fuse_qkv": fuse_qkv},
        "output": {"fast_steps": 2, "fast_guidance_scale": 1.5, "fast_sampler": sampler},
    }
    return Engine(load_settings(overrides=overrides, home=home, env={}))


def draw(engine: Engine) -> np.ndarray:
    steps: list[int] = []
    engine.pipe.unet.register_forward_pre_hook(lambda _m, args: steps.append(args[0].shape[0]))
    job = RenderJob("1girl", "lowres", Image.new("RGB", (128, 192)), None, 3)
    image = engine.render(
        [job], width=128, height=192, ipadapter_weight=0.9, controlnet_strength=0.5
    )[0]
    assert steps == [2, 2]  # fast_steps, each guided (1.5 > 1: image and negative)
    return np.asarray(image, dtype=np.int16)


def test_the_fast_lora_is_fused_and_changes_the_image(anime_home, tiny_models, tmp_path):
    unet = tiny_models / "sd15" / "unet"
    lora = build_tiny_lora(unet, tmp_path / "fast.safetensors")
    inert = build_tiny_lora(unet, tmp_path / "inert.safetensors", scale=0.0)
    engine = fast_engine(anime_home, lora)
    fused = draw(engine)
    assert type(engine.pipe.scheduler).__name__ == "LCMScheduler"
    assert not any("lora" in name for name, _ in engine.pipe.unet.named_modules())
    assert engine.info is not None
    # The LoRA moves the picture; fused into plain or QKV-fused attention, it is the same one.
    assert np.abs(fused - draw(fast_engine(anime_home, inert))).mean() > 1.0
    assert np.abs(fused - draw(fast_engine(anime_home, lora, fuse_qkv=False))).max() <= 2


def test_tcd_sampler_and_metadata_say_what_drew_the_image(
    anime_home, tiny_models, tmp_path, reference_image
):
    from tools.generation.runtime import Runtime
    from tools.generation.specs import GenerationRequest

    lora = build_tiny_lora(tiny_models / "sd15" / "unet", tmp_path / "hyper.safetensors")
    overrides = {
        "models": {"fast_lora": str(lora)},
        "output": {"fast_steps": 3, "fast_guidance_scale": 1.0, "fast_sampler": "tcd"},
    }
    runtime = Runtime(load_settings(overrides=overrides, home=anime_home, env={}))
    assert type(runtime.engine.pipe.scheduler).__name__ == "TCDScheduler"
    runtime.characters.add("sakura", reference_image)
    spec = runtime.planner.plan(GenerationRequest(character="sakura", seed=1))[0]
    meta = runtime.producer.metadata(spec, 1)
    assert (meta["steps"], meta["sampler"], meta["guidance_scale"]) == (3, "TCD", 1.0)
    assert meta["fast_lora"].endswith("hyper.safetensors")
