"""What the benches share: timing, the machine, the raw diffusers side, the test drawing."""

from __future__ import annotations

import gc
import platform
import resource
import sys
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

PROMPT = "masterpiece, best quality, 1girl, red hair, blue eyes, school uniform, standing"
NEGATIVE = "lowres, bad hands, worst quality, low quality"
BASE_SEED = 1234


# --- measuring --------------------------------------------------------------------------------


@dataclass
class Timing:
    """Seconds spent by one side, split into loading and images."""

    load_s: float = 0.0
    image_s: list[float] = field(default_factory=list)
    peak_vram_mb: float | None = None

    @property
    def total_s(self) -> float:
        return self.load_s + sum(self.image_s)

    @property
    def per_image_s(self) -> float:
        return sum(self.image_s) / max(1, len(self.image_s))


@contextmanager
def timed(into: Callable[[float], None], clock: Callable[[], float] = time.perf_counter):
    synchronize()
    started = clock()
    yield
    synchronize()
    into(clock() - started)


def synchronize() -> None:
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.synchronize()


def reset_vram() -> None:
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def peak_vram_mb() -> float | None:
    import torch

    if not torch.cuda.is_available():
        return None
    return round(torch.cuda.max_memory_allocated() / 2**20, 1)


def peak_rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def machine() -> dict[str, Any]:
    import torch

    described = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
    }
    if torch.cuda.is_available():
        described["gpu"] = torch.cuda.get_device_name()
    import diffusers

    described["diffusers"] = diffusers.__version__
    return described


# --- the raw diffusers baseline -------------------------------------------------------------


def load_raw_pipeline(models: dict[str, str], family: str, device: str) -> Any:
    """StableDiffusion(XL)ControlNetPipeline + IP-Adapter, loaded the way the docs show."""
    import torch
    from diffusers import (
        ControlNetModel,
        EulerAncestralDiscreteScheduler,
        StableDiffusionControlNetPipeline,
        StableDiffusionXLControlNetPipeline,
    )

    dtype = torch.float16 if device == "cuda" else torch.float32
    controlnet = ControlNetModel.from_pretrained(models["controlnet"], torch_dtype=dtype)
    if family == "sdxl":
        pipe = StableDiffusionXLControlNetPipeline.from_pretrained(
            models["checkpoint"], controlnet=controlnet, torch_dtype=dtype
        )
    else:
        pipe = StableDiffusionControlNetPipeline.from_pretrained(
            models["checkpoint"],
            controlnet=controlnet,
            torch_dtype=dtype,
            safety_checker=None,
            requires_safety_checker=False,
        )
    pipe.scheduler = EulerAncestralDiscreteScheduler.from_config(pipe.scheduler.config)
    pipe.load_ip_adapter(
        models["ipadapter"],
        subfolder=models["ipadapter_subfolder"],
        weight_name=models["ipadapter_weight_name"],
        image_encoder_folder=models.get("image_encoder_folder", "image_encoder"),
    )
    pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def raw_images(
    pipe: Any,
    prompts: list[str],
    negative: str,
    poses: list[Any],
    reference: Any,
    seeds: list[int],
    *,
    width: int,
    height: int,
    steps: int,
    guidance: float,
    ipadapter_weight: float,
    controlnet_strength: float,
) -> list[Any]:
    # No `clip_skip`: diffusers 0.42's clip-skip path fails with transformers 5 (CLIPTextModel
    # has no `.text_model`); the last layer costs the same compute as the penultimate one.
    import torch

    pipe.set_ip_adapter_scale(ipadapter_weight)
    return pipe(
        prompt=prompts,
        negative_prompt=[negative] * len(prompts),
        image=poses,
        ip_adapter_image=[[reference] * len(prompts)],
        num_inference_steps=steps,
        guidance_scale=guidance,
        controlnet_conditioning_scale=controlnet_strength,
        width=width,
        height=height,
        generator=[torch.Generator("cpu").manual_seed(seed) for seed in seeds],
    ).images


# --- the drawing every bench uses, and timing helpers --------------------------------------


def reference_drawing() -> Any:
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (96, 128), (245, 235, 220))
    draw = ImageDraw.Draw(image)
    draw.ellipse((28, 10, 68, 50), fill=(250, 210, 180), outline=(60, 40, 30))
    draw.rectangle((22, 8, 74, 22), fill=(200, 40, 60))
    draw.rectangle((30, 52, 66, 100), fill=(40, 80, 200))
    return image


@contextmanager
def both(first: Any, second: Any):
    with first, second:
        yield


@contextmanager
def skip():
    yield


def timing_json(timing: Timing, wall: Timing | None = None) -> dict[str, Any]:
    described = {
        "load_s": round(timing.load_s, 3),
        "per_image_s": round(timing.per_image_s, 4),
        "total_s": round(timing.total_s, 3),
        "peak_vram_mb": timing.peak_vram_mb,
    }
    if wall is not None:
        described["wall_per_image_s"] = round(wall.per_image_s, 4)
        described["wall_total_s"] = round(wall.total_s, 3)
    return described
