"""The external VAE (`models.vae`) and the latents → image decode every pipeline shares.

`models.vae` is a hub id, a diffusers folder, or one `.safetensors`/`.pt` file (also found under
`<home>/models/` and `<home>/models/vae/`), loaded with `AutoencoderKL.from_single_file` against
the checkpoint's own VAE config, so it needs no download.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tools.engine.comfyui_folders import inside
from tools.engine.model_sources import fetch_hub, is_hub_id
from tools.errors import UserError
from tools.user_paths import expand_user

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

VAE_SUFFIXES = (".safetensors", ".pt", ".ckpt", ".bin")


def vae_label(value: str | None) -> str | None:
    """The VAE for metadata: a hub id as it is, a file or folder by its name."""
    if not value:
        return None
    return value if is_hub_id(value) and not Path(value).suffix else Path(value).name


def find_vae(value: str, models_dir: Path, also: Sequence[Path] = ()) -> tuple[str, Path | str]:
    """('file' | 'dir', path) for a local VAE, or ('hub', id); `also`: a ComfyUI install's
    `vae` folders (`tools.engine.comfyui_folders`), searched after ours."""
    given = expand_user(value)
    candidates = (
        [given]
        if given.is_absolute()
        else [
            given,
            models_dir / given,
            models_dir / "vae" / given,
            *filter(None, (inside(folder, given) for folder in also)),
        ]
    )
    for candidate in candidates:
        if candidate.is_file():
            if candidate.suffix.lower() not in VAE_SUFFIXES:
                raise UserError(
                    f"models.vae: {candidate} is not a .safetensors, .pt or .ckpt file",
                    "name a VAE file, a diffusers folder, or a hub id",
                )
            return "file", candidate.resolve()
        if candidate.is_dir():
            if not any((candidate / sub / "config.json").is_file() for sub in ("", "vae")):
                raise UserError(
                    f"models.vae: {candidate} is a folder without config.json (or vae/)",
                    "name a VAE file, a diffusers folder, or a hub id",
                )
            return "dir", candidate.resolve()
    if is_hub_id(value) and not given.suffix:
        return "hub", value
    raise UserError(
        f"VAE not found: {value} (looked in {models_dir} and {models_dir / 'vae'})",
        f"put the file in {models_dir / 'vae'} or set models.vae to its full path or a hub id",
    )


def load_vae(
    value: str,
    models_dir: Path,
    like: Any,
    dtype: Any,
    config_dir: Path,
    also: Sequence[Path] = (),
) -> Any:
    """The VAE `models.vae` names, built with the architecture config of `like` (the
    checkpoint's own VAE) when it is a single file, so nothing is downloaded."""
    from diffusers import AutoencoderKL

    kind, location = find_vae(value, models_dir, also)
    if kind == "file":
        like.save_config(config_dir)
        try:
            return AutoencoderKL.from_single_file(
                str(location), config=str(config_dir), local_files_only=True, dtype=dtype
            )
        except (ValueError, KeyError, RuntimeError, OSError) as error:
            raise UserError(
                f"models.vae: {location} is not a VAE this checkpoint can use "
                f"({str(error).splitlines()[0][:120]})",
                "use a VAE for the checkpoint's family (e.g. kl-f8-anime2 for SD1.5)",
            ) from None
    folder = (
        fetch_hub(str(location), ["*.safetensors", "*.bin"], "VAE") if kind == "hub" else location
    )
    folder = Path(folder)
    subfolder = "vae" if (folder / "vae" / "config.json").is_file() else None
    return AutoencoderKL.from_pretrained(str(folder), subfolder=subfolder, dtype=dtype)


def decode_latents(
    pipe: Any, latents: torch.Tensor, full_precision: bool = False
) -> tuple[list[Any], bool]:
    """Latents → PIL images, the way the SD1.5/SDXL pipelines decode; a half-precision decode
    that overflows (NaN: black images) is done again in fp32, and `full_precision` (a VAE known
    to overflow) decodes in fp32 at once. The VAE is put back in fp16 after: the img2img and
    inpaint pipelines encode their fp16 inputs with it. Returns (images, redone)."""
    import torch

    vae = pipe.vae

    def decode(dtype: torch.dtype) -> torch.Tensor:
        config = vae.config
        scaled = latents.to(dtype)
        mean = getattr(config, "latents_mean", None)
        std = getattr(config, "latents_std", None)
        if mean is not None and std is not None:
            shape = (1, len(mean), 1, 1)
            mean_t = torch.tensor(mean).view(shape).to(scaled)
            std_t = torch.tensor(std).view(shape).to(scaled)
            scaled = scaled * std_t / config.scaling_factor + mean_t
        else:
            scaled = scaled / config.scaling_factor
        with torch.inference_mode():
            return vae.decode(scaled, return_dict=False)[0]

    half = vae.dtype == torch.float16
    upcast_first = half and (
        full_precision or (getattr(vae.config, "force_upcast", False) and _is_sdxl(pipe))
    )
    redone = False
    if upcast_first:
        image = _decode_fp32(vae, decode)
    else:
        image = decode(vae.dtype)
        if half and torch.isnan(image).any():
            log.warning("the VAE overflowed in fp16 (black image); decoding in fp32 from now on")
            image = _decode_fp32(vae, decode)
            redone = True
    return pipe.image_processor.postprocess(image.float(), output_type="pil"), redone


def _is_sdxl(pipe: Any) -> bool:
    return getattr(pipe, "text_encoder_2", None) is not None


def _decode_fp32(vae: Any, decode: Any) -> Any:
    import torch

    vae.to(dtype=torch.float32)
    try:
        return decode(torch.float32)
    finally:
        vae.to(dtype=torch.float16)
