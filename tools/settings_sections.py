"""The sections of `Settings` (one model each) and the parsing of their values.

Each value also accepts the text an environment variable holds (`ANIME_OUTPUT_HIRES=2`,
`ANIME_MODELS_LORAS=a:0.8,b`), so the parsers below turn such text into the model's shape.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PlainSerializer

from tools.engine.samplers import normalize_sampler

DEFAULT_CHECKPOINT = "gsdf/Counterfeit-V2.5"
DEFAULT_CONTROLNET = "lllyasviel/control_v11p_sd15_openpose"
DEFAULT_IPADAPTER = "h94/IP-Adapter"
DEFAULT_AESTHETIC_MODEL = "cafeai/cafe_aesthetic"

MIN_SIDE, MAX_SIDE = 64, 2048


@dataclass(frozen=True)
class Resolution:
    width: int
    height: int

    def __str__(self) -> str:
        return f"{self.width}x{self.height}"


def parse_resolution(value: Any) -> Resolution:
    if isinstance(value, Resolution):
        return value
    match = re.fullmatch(r"\s*(\d+)\s*[xX×]\s*(\d+)\s*", str(value))
    if not match:
        raise ValueError(f"'{value}' is not WIDTHxHEIGHT, e.g. 512x768")
    width, height = int(match[1]), int(match[2])
    for side in (width, height):
        if not MIN_SIDE <= side <= MAX_SIDE or side % 8:
            raise ValueError(
                f"'{value}': each side must be a multiple of 8 between {MIN_SIDE} and {MAX_SIDE}"
            )
    return Resolution(width, height)


_DURATION_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600}


def parse_duration(value: Any) -> float:
    """'10m', '120s', '1.5h' or a number of seconds → seconds."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    else:
        match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*", str(value))
        if not match:
            raise ValueError(f"'{value}' is not a duration like 30s, 10m or 1h")
        seconds = float(match[1]) * _DURATION_UNITS[match[2]]
    if seconds <= 0:
        raise ValueError(f"'{value}' must be longer than zero")
    return seconds


ResolutionField = Annotated[
    Resolution, BeforeValidator(parse_resolution), PlainSerializer(str, return_type=str)
]
Duration = Annotated[float, BeforeValidator(parse_duration)]


class Section(BaseModel):
    """A settings section: frozen, and an unknown key is an error (a typo never passes)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class LoraSetting(Section):
    """A LoRA: a file in `<home>/models/lora/` (name without .safetensors), a path or a hub id."""

    name: str = Field(min_length=1)
    weight: float = Field(1.0, ge=-5.0, le=5.0)


def parse_loras(value: Any) -> Any:
    """`models.loras` from a list, or from "NAME[:W],NAME[:W]" (environment variables)."""
    if not isinstance(value, str):
        return value
    loras = []
    for item in filter(None, (part.strip() for part in value.split(","))):
        name, _, weight = item.partition(":")
        loras.append({"name": name, "weight": weight or 1.0})
    return loras


Sampler = Annotated[str, BeforeValidator(normalize_sampler)]


class ModelSettings(Section):
    checkpoint: str = DEFAULT_CHECKPOINT
    # Architecture configs for a single-file checkpoint: a diffusers folder or hub id.
    checkpoint_config: str | None = None
    # Unset (null): the checkpoint family's default (tools/engine/families.py); for SD1.5 that is
    # DEFAULT_CONTROLNET and models/ip-adapter_sd15.safetensors of DEFAULT_IPADAPTER.
    controlnet: str | None = None
    ipadapter: str = DEFAULT_IPADAPTER
    ipadapter_subfolder: str | None = None
    ipadapter_weight_name: str | None = None
    # Like diffusers: a name with '/' is relative to the IP-Adapter repo, else to the subfolder.
    image_encoder_folder: str | None = None
    ipadapter_weight: float = Field(0.95, ge=0.0, le=2.0)
    controlnet_strength: float = Field(0.5, ge=0.0, le=2.0)
    clip_skip: int = Field(2, ge=1, le=4)
    device: Literal["auto", "cuda", "cpu", "mps"] = "auto"
    # Speed and memory (docs/PERFORMANCE.md): "auto" picks the SD1.5/SDXL pipelines from the
    # checkpoint; low_vram offloads idle models to the CPU (8 GB cards); compile warms up once.
    family: Literal["auto", "sd15", "sdxl"] = "auto"
    # What the UNet predicts; auto: a single file's v_pred/ztsnr keys, else its scheduler config.
    prediction_type: Literal["auto", "epsilon", "v_prediction"] = "auto"
    fuse_qkv: bool = True
    channels_last: bool = True
    compile: bool = False
    low_vram: bool = False
    # Few-step mode: an LCM, TCD or Hyper-SD LoRA (hub id, folder or .safetensors) fused into the
    # UNet; unset: off. Its sampler, steps and guidance are output.fast_*.
    fast_lora: str | None = None
    # An external VAE (hub id, folder, or .safetensors/.pt file, also found in <home>/models/).
    vae: str | None = None
    # LoRAs applied to every image, besides those of the character and the prompt's <lora:...>.
    loras: Annotated[list[LoraSetting], BeforeValidator(parse_loras)] = Field(default_factory=list)


class HiresSettings(Section):
    """A1111's hires fix: draw at `output.resolution`, upscale by `scale`, refine (img2img)."""

    scale: float = Field(1.5, gt=1.0, le=4.0)
    # 0 as in A1111: no second-pass step, the upscale itself (tools/engine/hires.py).
    denoise: float = Field(0.5, ge=0.0, le=1.0)
    # Steps the second pass runs, whatever the denoise (as A1111); null: output.steps (A1111's 0).
    steps: int | None = Field(None, ge=1, le=150)
    upscaler: Literal["latent", "lanczos"] = "latent"


class FaceDetailSettings(Section):
    """ADetailer-style face pass: faces found with `confidence` are inpainted again."""

    denoise: float = Field(0.4, gt=0.0, le=1.0)
    confidence: float = Field(0.3, ge=0.0, le=1.0)
    # Pixels of context around the face in the crop that is redrawn (ADetailer's inpaint padding).
    padding: int = Field(32, ge=0, le=512)
    mask_blur: int = Field(4, ge=0, le=64)


_OFF_WORDS = {"", "off", "false", "no", "none", "null", "0"}
_ON_WORDS = {"on", "true", "yes", "1"}


def parse_hires(value: Any) -> Any:
    """`output.hires`: off (null/false), a bare number (the scale), or a mapping."""
    if value is None or value is False:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return {"scale": value}
    if isinstance(value, str):
        text = value.strip().lower()
        if text in _OFF_WORDS:
            return None
        if text.startswith("{"):
            return _mapping_from_text(value)
        try:
            return {"scale": float(text.removesuffix("x"))}
        except ValueError:
            raise ValueError(
                f"'{value}' is not a scale (e.g. 1.5) or a mapping {{scale, denoise, steps, "
                "upscaler}"
            ) from None
    return value


def _mapping_from_text(text: str) -> Any:
    """An environment variable holding a mapping, e.g. '{scale: 2, upscaler: lanczos}'."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        raise ValueError(f"'{text}' is not a mapping like {{scale: 2, denoise: 0.4}}") from None


def parse_face_detail(value: Any) -> Any:
    """`output.face_detail`: true/false, or a mapping {denoise, confidence, padding, mask_blur}."""
    if value is None or value is False:
        return None
    if value is True:
        return {}
    if isinstance(value, str):
        text = value.strip().lower()
        if text in _OFF_WORDS:
            return None
        if text in _ON_WORDS:
            return {}
        if text.startswith("{"):
            return _mapping_from_text(value)
        raise ValueError(f"'{value}' is not true, false or a mapping {{denoise, confidence, ...}}")
    return value


class OutputSettings(Section):
    resolution: ResolutionField = Resolution(512, 768)
    organize_by_date: bool = True
    steps: int = Field(25, ge=1, le=150)
    guidance_scale: float = Field(7.0, ge=0.0, le=30.0)
    # Our names or A1111's ("DPM++ 2M Karras"), see tools/engine/samplers.py.
    sampler: Sampler = "euler_a"
    # null: the default negative tags, plus the usual negative embeddings that are installed.
    negative_prompt: str | None = None
    max_batch: int = Field(100, ge=1, le=1000)
    # Stop classifier-free guidance after this fraction of the steps (e.g. 0.4); unset: never.
    cfg_cutoff: float | None = Field(None, gt=0.0, le=1.0)
    # Images drawn together in one engine call; "auto": 4 on CUDA (1 with low_vram), 1 elsewhere.
    batch_size: Annotated[int, Field(ge=1, le=16)] | Literal["auto"] = "auto"
    # With models.fast_lora: steps, guidance and the scheduler that LoRA was distilled for.
    fast_steps: int = Field(6, ge=1, le=50)
    fast_guidance_scale: float = Field(1.5, ge=0.0, le=30.0)
    fast_sampler: Literal["lcm", "tcd"] = "lcm"
    # Second passes (tools/engine/second_pass.py); both off by default.
    hires: Annotated[HiresSettings | None, BeforeValidator(parse_hires)] = None
    face_detail: Annotated[FaceDetailSettings | None, BeforeValidator(parse_face_detail)] = None


class QualitySettings(Section):
    enabled: bool = True
    min_consistency: float = Field(0.90, ge=0.0, le=1.0)
    # Colour-palette similarity (calibrated like consistency; no model weights), 0 turns it off.
    min_palette: float = Field(0.70, ge=0.0, le=1.0)
    max_attempts: int = Field(3, ge=1, le=20)
    require_face: bool = True
    # An image classifier (hub id or local dir); unavailable means the gate runs without it.
    aesthetic_model: str | None = DEFAULT_AESTHETIC_MODEL
    min_aesthetic: float = Field(0.0, ge=0.0, le=1.0)
    # A CLIP vision model for consistency; null reuses the IP-Adapter's image encoder.
    consistency_model: str | None = None


def parse_unload(value: Any) -> bool | Literal["auto"]:
    """`auto`, or a YAML boolean (`true`/`false`, also as the strings an env variable holds)."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    words = {"auto": "auto", "true": True, "yes": True, "1": True, "on": True,
             "false": False, "no": False, "0": False, "off": False}  # fmt: skip
    if text not in words:
        raise ValueError(f"'{value}' is not auto, true or false")
    return words[text]


class LLMSettings(Section):
    model: str = "qwen2.5:7b"
    host: str | None = None
    # auto: unload Ollama's model before rendering when the GPU is too small to hold both.
    unload_before_generate: Annotated[bool | Literal["auto"], BeforeValidator(parse_unload)] = (
        "auto"
    )
    # Bounds a whole planning attempt (probe, chat, re-asks); past it `auto` uses the rules.
    timeout: Duration = 120.0


def parse_gpus(value: Any) -> Any:
    """`auto`, a count of GPUs (the first N), or a list of GPU ids ("0,1" from the env)."""
    if isinstance(value, str) and value.strip() != "auto":
        text = value.strip().strip("[]")
        if "," in value or value.strip().startswith("["):
            return [int(part) for part in text.split(",") if part.strip()]
        return int(text)
    return value


class WorkerSettings(Section):
    keep_alive: Duration = 600.0
    hang_timeout: Duration = 120.0
    max_attempts: int = Field(3, ge=1, le=20)
    # Wait before retrying a failed job: retry_backoff, then doubled per further attempt.
    retry_backoff: Duration = 2.0
    # One render worker per GPU: auto (every visible GPU), N (the first N), or ids [0, 1].
    gpus: Annotated[
        Literal["auto"] | Annotated[int, Field(ge=1)] | list[Annotated[int, Field(ge=0)]],
        BeforeValidator(parse_gpus),
    ] = "auto"
    # For tests and CPU-only machines: N render workers on the CPU (0: off, workers follow gpus).
    cpu_workers: int = Field(0, ge=0, le=16)
    # Who draws the pixels: our diffusers pipeline, or the user's running ComfyUI (comfyui.*).
    backend: Literal["diffusers", "comfyui"] = "diffusers"
