"""What the second passes share: pipelines derived from the warm one, the first pass's
conditioning, step reporting and seeding (`tools.engine.hires`, `tools.engine.face_detail`), and
the img2img pass itself (`refine`: the hires fix and A1111's img2img)."""

from __future__ import annotations

import logging
import math
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tools.engine.rendering import Engine, RenderJob, StepCallback

# kind → (SD1.5 pipeline class, SDXL pipeline class), all in diffusers.
_PIPELINE_CLASSES = {
    "img2img": (
        "StableDiffusionControlNetImg2ImgPipeline",
        "StableDiffusionXLControlNetImg2ImgPipeline",
    ),
    "inpaint": ("StableDiffusionInpaintPipeline", "StableDiffusionXLInpaintPipeline"),
}
# The derived pipelines of each warm pipeline, dropped with it.
_derived: weakref.WeakKeyDictionary[Any, dict[str, Any]] = weakref.WeakKeyDictionary()


def derived_pipeline(engine: Engine, kind: str) -> Any:
    """The engine's warm pipeline as an img2img ControlNet or inpaint pipeline (built once)."""
    import diffusers

    pipe = engine.pipe
    cache = _derived.setdefault(pipe, {})
    if kind not in cache:
        sd15, sdxl = _PIPELINE_CLASSES[kind]
        family = engine.info.family if engine.info is not None else engine.family
        pipeline_class = getattr(diffusers, sdxl if family == "sdxl" else sd15)
        # from_pipe casts every module to `dtype` (fp32 unless told): keep the warm one's. That
        # cast is a no-op here, so its "kept in float32" warning is noise.
        with _quiet("diffusers.models.modeling_utils"):
            derived = pipeline_class.from_pipe(pipe, dtype=pipe.unet.dtype)
        derived.set_progress_bar_config(disable=True)
        cache[kind] = derived
    return cache[kind]


@contextmanager
def _quiet(logger_name: str) -> Iterator[None]:
    logger = logging.getLogger(logger_name)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def conditioning(engine: Engine, job: RenderJob, pipe: Any) -> dict[str, Any]:
    """The job's prompt embeddings and IP-Adapter reference as pipeline arguments, with its
    LoRAs active: what the first pass saw."""
    import torch

    embeddings = engine.ensure_loaded()
    engine.loras.use(engine.pipe, engine.lora_set(job.prompt, job.negative_prompt, job.loras))
    text = embeddings.text_inputs([job])
    weight = 0.0 if job.reference is None else engine.settings.models.ipadapter_weight
    pipe.set_ip_adapter_scale(weight)
    guided = engine.sampling.guidance_scale > 1.0
    reference, _ = embeddings.reference_rows([job], guided)
    return {
        **text,
        "ip_adapter_image_embeds": [reference],
        "guidance_scale": engine.sampling.guidance_scale,
        "generator": torch.Generator("cpu").manual_seed(job.seed),
    }


def step_reporter(on_step: StepCallback | None, steps: int) -> Any:
    """A diffusers step-end callback that reports this pass's steps (the worker's heartbeat)."""

    def step_end(_pipe: Any, step: int, _timestep: Any, kwargs: dict) -> dict:
        if on_step is not None:
            on_step(step + 1, steps)
        return kwargs

    return step_end


def at_least_one_step(steps: int, denoise: float) -> int:
    """`steps`, raised if needed so that `denoise` of them is at least one (diffusers runs
    int(steps · denoise) and refuses zero)."""
    return max(steps, math.ceil(1 / denoise))


def a1111_hires_schedule(steps: int, denoise: float) -> tuple[int, float]:
    """(num_inference_steps, strength) that make diffusers' img2img run exactly `steps` steps,
    the last `steps` of a schedule of int(steps / denoise) as A1111 runs its second pass.

    A1111 modules/sd_samplers_common.py `setup_img2img_steps` with steps given (the hires pass):
    total = int(steps / min(denoise, 0.999)), t_enc = steps - 1, and
    modules/sd_samplers_kdiffusion.py `sample_img2img` samples sigmas[total - t_enc - 1:], i.e.
    `steps` steps. Diffusers runs int(total · strength) (`get_timesteps`); the half step keeps
    that product off a rounding edge."""
    total = max(steps, int(steps / min(denoise, 0.999)))
    return total, min(1.0, (steps + 0.5) / total)


def seed_sde_noise(pipe: Any, seed: int) -> None:
    """SDE samplers draw Brownian noise of their own: seed it like the latents."""
    if hasattr(pipe.scheduler, "noise_sampler_seed"):
        pipe.scheduler.noise_sampler_seed = [seed]


def refine(
    engine: Engine,
    job: RenderJob,
    start: Any,
    *,
    strength: float,
    steps: int,
    size: tuple[int, int],
    on_step: StepCallback | None = None,
) -> Any:
    """One img2img ControlNet pass from `start` (an image, or latents as the UNet sees them) at
    `size` with the job's prompt, seed, reference and pose (scaled): the hires fix's second
    pass and A1111's img2img (`tools.engine.hires`, `tools.engine.img2img`)."""
    import torch
    from PIL import Image

    width, height = size
    pipe = derived_pipeline(engine, "img2img")
    inputs = conditioning(engine, job, pipe)
    pose = job.pose_image.convert("RGB").resize((width, height), Image.Resampling.BILINEAR)
    seed_sde_noise(pipe, job.seed)
    # The steps diffusers runs (`get_timesteps`), reported as this pass's total.
    runs = min(int(steps * strength), steps)
    with torch.inference_mode():
        result = pipe(
            **inputs,
            image=start,
            control_image=pose,
            strength=strength,
            num_inference_steps=steps,
            controlnet_conditioning_scale=engine.settings.models.controlnet_strength,
            width=width,
            height=height,
            callback_on_step_end=step_reporter(on_step, runs),
            output_type="latent",
        )
    return engine.decode(pipe, result.images)[0]
