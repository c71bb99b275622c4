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

from tools.engine.prompt_schedule import model_steps

if TYPE_CHECKING:
    from tools.engine.rendering import Engine, RenderJob, StepCallback
    from tools.engine.text_schedule import TextSchedule

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


def conditioning(
    engine: Engine, job: RenderJob, pipe: Any, steps: int, hires_steps: int | None = None
) -> tuple[dict[str, Any], TextSchedule]:
    """The job's prompt embeddings and IP-Adapter reference as pipeline arguments, with its
    LoRAs active, and the pass's text schedule over `steps` model steps (`hires_steps`: see
    `prompt_schedule`) for `step_callback` to switch prompt edits with."""
    import torch

    embeddings = engine.ensure_loaded()
    engine.loras.use(engine.pipe, engine.lora_set(job.prompt, job.negative_prompt, job.loras))
    text = embeddings.text_inputs([job], steps, hires_steps)
    weight = 0.0 if job.reference is None else engine.settings.models.ipadapter_weight
    pipe.set_ip_adapter_scale(weight)
    guided = engine.sampling.guidance_scale > 1.0
    reference, _ = embeddings.reference_rows([job], guided)
    inputs = {
        **text.first,
        "ip_adapter_image_embeds": [reference],
        "guidance_scale": engine.sampling.guidance_scale,
        "generator": torch.Generator("cpu").manual_seed(job.seed),
    }
    return inputs, text


def step_callback(
    engine: Engine, on_step: StepCallback | None, steps: int, text: TextSchedule
) -> dict[str, Any]:
    """The diffusers step-end callback arguments of a second pass: the next step's prompt (an
    edit or alternation) switched in, and this pass's steps reported (the worker's heartbeat)."""
    guided = engine.sampling.guidance_scale > 1.0

    def step_end(_pipe: Any, step: int, _timestep: Any, kwargs: dict) -> dict:
        text.update(step + 1, kwargs, guided)
        if on_step is not None:
            on_step(step + 1, steps)
        return kwargs

    return {
        "callback_on_step_end": step_end,
        "callback_on_step_end_tensor_inputs": text.tensor_names,
    }


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
    first_pass_steps: int | None = None,
) -> Any:
    """One img2img ControlNet pass from `start` (an image, or latents as the UNet sees them) at
    `size` with the job's prompt, seed, reference and pose (scaled): the hires fix's second
    pass and A1111's img2img (`tools.engine.hires`, `tools.engine.img2img`).

    Prompt edits count model steps as A1111 schedules them: img2img over its `steps`
    (modules/processing.py `StableDiffusionProcessing.setup_conds`), the hires pass over the
    steps it runs, after the first pass's `first_pass_steps` (`calculate_hr_conds`)."""
    import torch
    from PIL import Image

    width, height = size
    pipe = derived_pipeline(engine, "img2img")
    # The steps diffusers runs (`get_timesteps`), reported as this pass's total.
    runs = min(int(steps * strength), steps)
    order = pipe.scheduler.order
    if first_pass_steps is None:
        inputs, text = conditioning(engine, job, pipe, model_steps(steps, order))
    else:
        first = model_steps(first_pass_steps, order)
        inputs, text = conditioning(engine, job, pipe, first, model_steps(runs, order))
    pose = job.pose_image.convert("RGB").resize((width, height), Image.Resampling.BILINEAR)
    seed_sde_noise(pipe, job.seed)
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
            output_type="latent",
            **step_callback(engine, on_step, runs, text),
        )
    return engine.decode(pipe, result.images)[0]
