"""Second passes over a drawn image: A1111's hires fix, then ADetailer-style face detail.

`apply_second_passes` is the one call the producer makes between drawing an image and gating it:
each pass that `output.hires` / `output.face_detail` turns on runs on every image, with the
job's own prompt embeddings, LoRAs, seed and IP-Adapter reference, and records itself in the
image's metadata (`meta["hires"]`, `meta["face_detail"]`). The pipelines they use are built with
`from_pipe` from the engine's warm one: the same modules, no weights loaded twice.
"""

from __future__ import annotations

import logging
import math
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from PIL import Image

    from tools.engine.rendering import Engine, RenderJob, StepCallback
    from tools.settings import OutputSettings

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


def apply_second_passes(
    engine: Engine,
    output: OutputSettings,
    jobs: list[RenderJob],
    images: list[Image.Image],
    metas: list[dict[str, Any]],
    on_step: StepCallback | None = None,
) -> list[Image.Image]:
    """The images after the second passes `output` (the job's settings: a warm engine may
    have been loaded for another job's) turns on; each pass is recorded in the image's `meta`
    (updated in place). With neither pass on the images come back as they are."""
    from tools.engine.face_detail import face_detail_pass
    from tools.engine.hires import hires_pass

    if output.hires is None and output.face_detail is None:
        return images
    finished = []
    for job, image, meta in zip(jobs, images, metas, strict=True):
        if output.hires is not None:
            image, meta["hires"] = hires_pass(engine, job, image, output.hires, on_step)
        if output.face_detail is not None:
            image, meta["face_detail"] = face_detail_pass(
                engine, job, image, output.face_detail, on_step
            )
        finished.append(image)
    return finished


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


def seed_sde_noise(pipe: Any, seed: int) -> None:
    """SDE samplers draw Brownian noise of their own: seed it like the latents."""
    if hasattr(pipe.scheduler, "noise_sampler_seed"):
        pipe.scheduler.noise_sampler_seed = [seed]
