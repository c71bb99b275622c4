"""Img2img (A1111's `/sdapi/v1/img2img`): an init image redrawn with the prompt, `denoise` of it.

The init image is resized to the output size (A1111's "Just resize") and refined by the same
img2img ControlNet pass as the hires fix (`derived_pipelines.refine`); as in A1111 and diffusers,
`denoise` of the steps run (20 steps at 0.75 run 15). The job's pose map rides along at the
job's ControlNet strength (0 for plain images, so it changes nothing).

At denoise 0 no step runs and the resized init image is the result: A1111 accepts 0 and its
`modules/sd_samplers_common.py` `setup_img2img_steps` gives t_enc = int(0 · steps) = 0, so
`sample_img2img` samples only the schedule's lowest noise level, returning the init image all but
unchanged (what clients send 0 for: the ADetailer pass alone). Diffusers refuses zero steps.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from PIL import Image

from tools.engine.derived_pipelines import at_least_one_step, refine

if TYPE_CHECKING:
    from tools.engine.rendering import Engine, RenderJob, StepCallback


def img2img_pass(
    engine: Engine,
    job: RenderJob,
    init: Image.Image,
    denoise: float,
    size: tuple[int, int],
    on_step: StepCallback | None = None,
) -> Image.Image:
    """`init` redrawn at `size` (width, height) with the job's prompt, seed and reference."""
    start = init.convert("RGB").resize(size, Image.Resampling.LANCZOS)
    if denoise <= 0.0:
        return start
    steps = at_least_one_step(engine.sampling.steps, denoise)
    return refine(engine, job, start, strength=denoise, steps=steps, size=size, on_step=on_step)
