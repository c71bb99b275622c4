"""A1111's hires fix: the image drawn at the base size is upscaled, then refined by an img2img
ControlNet pass at the new size with the same pose (scaled), prompt, seed and reference.

`upscaler: latent` (A1111's "Latent") upscales the image's VAE latents bilinearly, `lanczos` its
pixels. The final size is the base size times `scale`, rounded to multiples of 8. Like A1111,
the second pass runs exactly `steps` (or the base steps) whatever the denoise: the last `steps`
of a longer schedule (`derived_pipelines.a1111_hires_schedule`); the record is what ran. At
denoise 0 no step runs: the upscaled image is the result, as in A1111.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from PIL import Image

from tools.engine.derived_pipelines import a1111_hires_schedule, derived_pipeline, refine

if TYPE_CHECKING:
    import torch

    from tools.engine.rendering import Engine, RenderJob, StepCallback
    from tools.settings import HiresSettings


def hires_size(width: int, height: int, scale: float) -> tuple[int, int]:
    """The final size: each side times `scale`, to the nearest multiple of 8."""
    return _multiple_of_8(width * scale), _multiple_of_8(height * scale)


def _multiple_of_8(side: float) -> int:
    return max(8, round(side / 8) * 8)


def hires_pass(
    engine: Engine,
    job: RenderJob,
    image: Image.Image,
    hires: HiresSettings,
    on_step: StepCallback | None = None,
) -> tuple[Image.Image, dict[str, Any]]:
    """(the refined image at the final size, what to record in the metadata)."""
    width, height = hires_size(image.width, image.height, hires.scale)
    pipe = derived_pipeline(engine, "img2img")
    if hires.upscaler == "latent":
        start: Any = _upscaled_latents(pipe, engine.device, image, width, height)
    else:
        start = image.convert("RGB").resize((width, height), Image.Resampling.LANCZOS)
    if hires.denoise <= 0.0:
        # A1111 at denoise 0 (`setup_img2img_steps`: 0 steps, sigmas [0]) samples nothing:
        # the upscale, decoded, is the result.
        steps = 0
        refined = engine.decode(pipe, start)[0] if hires.upscaler == "latent" else start
    else:
        steps = hires.steps or engine.sampling.steps
        schedule, strength = a1111_hires_schedule(steps, hires.denoise)
        refined = refine(
            engine,
            job,
            start,
            strength=strength,
            steps=schedule,
            size=(width, height),
            on_step=on_step,
            first_pass_steps=engine.sampling.steps,
        )
    record = {
        "scale": hires.scale,
        "denoise": hires.denoise,
        "steps": steps,
        "upscaler": hires.upscaler,
        "width": width,
        "height": height,
    }
    return refined, record


def _upscaled_latents(
    pipe: Any, device: Any, image: Image.Image, width: int, height: int
) -> torch.Tensor:
    """The image's VAE latents (scaled as the UNet sees them), resized to the final size."""
    import torch

    vae = pipe.vae
    pixels = pipe.image_processor.preprocess(image.convert("RGB")).to(device)

    def encode(dtype: torch.dtype) -> torch.Tensor:
        with torch.inference_mode():
            return vae.encode(pixels.to(dtype)).latent_dist.mode()

    latents = encode(vae.dtype)
    if vae.dtype == torch.float16 and torch.isnan(latents).any():
        # The fp16 overflow decode_latents guards against on the way out (SDXL's VAE).
        vae.to(dtype=torch.float32)
        try:
            latents = encode(torch.float32)
        finally:
            vae.to(dtype=torch.float16)
    config = vae.config
    mean, std = getattr(config, "latents_mean", None), getattr(config, "latents_std", None)
    if mean is not None and std is not None:
        shape = (1, len(mean), 1, 1)
        mean_t = torch.tensor(mean).view(shape).to(latents)
        std_t = torch.tensor(std).view(shape).to(latents)
        latents = (latents - mean_t) * config.scaling_factor / std_t
    else:
        latents = latents * config.scaling_factor
    factor = pipe.vae_scale_factor
    resized = torch.nn.functional.interpolate(
        latents.float(), size=(height // factor, width // factor), mode="bilinear"
    )
    return resized.to(pipe.unet.dtype)
