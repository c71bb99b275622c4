"""Face detail, what ADetailer does: find the face, inpaint it again at a higher resolution.

Each face the anime detector (`tools.quality.faces`) finds with at least `confidence` is masked
on its own, and an inpaint pass (built `from_pipe` from the warm pipeline) redraws it at
`denoise` with the image's own prompt and IP-Adapter reference, and seed + j for the j-th face
(as ADetailer), each pass on the previous one's output. The region around the face (plus
`padding` pixels) is cropped and drawn at the image's full size, then pasted back through the
mask blurred by `mask_blur` pixels: pixels outside the blurred masks are the first pass's exactly
(diffusers' `padding_mask_crop` does the crop and the paste). No face: the image is kept as is.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from PIL import Image, ImageDraw

from tools.engine.derived_pipelines import (
    at_least_one_step,
    conditioning,
    derived_pipeline,
    seed_sde_noise,
    step_callback,
)
from tools.engine.prompt_schedule import model_steps
from tools.quality import faces

if TYPE_CHECKING:
    from tools.engine.rendering import Engine, RenderJob, StepCallback
    from tools.quality.faces import FaceBox
    from tools.settings import FaceDetailSettings

# The detector as ADetailer's `ADetailer model` names it.
DETECTOR = "animeface"


def face_mask(size: tuple[int, int], boxes: list[FaceBox], blur: int) -> Image.Image:
    """White over the faces (dilated by the blur, so the blurred edge stays outside them)."""
    mask = Image.new("L", size, 0)
    draw = ImageDraw.Draw(mask)
    for box in boxes:
        draw.rectangle(
            (box.x - blur, box.y - blur, box.x + box.width + blur, box.y + box.height + blur),
            fill=255,
        )
    return mask


def face_detail_pass(
    engine: Engine,
    job: RenderJob,
    image: Image.Image,
    detail: FaceDetailSettings,
    on_step: StepCallback | None = None,
) -> tuple[Image.Image, dict[str, Any]]:
    """(the image with its faces redrawn, or as it was when none is found; the record)."""
    import torch

    found = [box for box in faces.detect_faces(image) if box.likelihood >= detail.confidence]
    record: dict[str, Any] = {
        "model": DETECTOR,
        "confidence": detail.confidence,
        "denoise": detail.denoise,
        "mask_blur": detail.mask_blur,
        "padding": detail.padding,
        "faces": [[box.x, box.y, box.width, box.height] for box in found],
        "applied": bool(found),
    }
    if not found:
        return image, record
    pipe = derived_pipeline(engine, "inpaint")
    steps = at_least_one_step(engine.sampling.steps, detail.denoise)
    # ADetailer's pass is an A1111 img2img: prompt edits count over its steps.
    inputs, text = conditioning(engine, job, pipe, model_steps(steps, pipe.scheduler.order))
    # ADetailer (Bing-su/adetailer scripts/!adetailer.py `_postprocess_image_inner` and `fix_p2`):
    # each face is its own inpaint pass, on the previous pass's output, with seed + j.
    image = image.convert("RGB")
    for number, box in enumerate(found):
        mask = face_mask(image.size, [box], detail.mask_blur)
        if detail.mask_blur:
            mask = pipe.mask_processor.blur(mask, blur_factor=detail.mask_blur)
        seed = job.seed + number
        seed_sde_noise(pipe, seed)
        # diffusers' `padding_mask_crop`, done here (pipelines/stable_diffusion/
        # pipeline_stable_diffusion_inpaint.py __call__: get_crop_region, preprocess with
        # resize_mode="fill", apply_overlay), because the pipeline refuses output_type="latent"
        # with it and decodes in the VAE's dtype (SD1.5: no upcast, no NaN check: an fp16
        # overflow pastes a black face). The engine decodes as it decodes the first pass.
        crop = pipe.mask_processor.get_crop_region(
            mask, image.width, image.height, pad=detail.padding
        )
        with torch.inference_mode():
            result = pipe(
                **{**inputs, "generator": torch.Generator("cpu").manual_seed(seed)},
                image=_fill(pipe.image_processor, image, crop),
                mask_image=_fill(pipe.mask_processor, mask, crop),
                strength=detail.denoise,
                num_inference_steps=steps,
                width=image.width,
                height=image.height,
                output_type="latent",
                **step_callback(engine, on_step, steps, text),
            )
        drawn = engine.decode(pipe, result.images)[0]
        image = pipe.image_processor.apply_overlay(mask, image, drawn, crop)
    return image, record


def _fill(processor: Any, image: Image.Image, crop: tuple[int, int, int, int]) -> Image.Image:
    """The crop of `image` resized to fill the image's own size, as the pipeline's `preprocess`
    does with `crops_coords` (its own resize of an image of that size then changes nothing)."""
    return processor.resize(image.crop(crop), image.height, image.width, resize_mode="fill")
