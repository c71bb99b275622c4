"""One `Settings` model, resolved once: CLI flag > environment > config file > default.

Home is `$ANIME_HOME` if set, else `~`; every path the project touches lives below it (see
`Paths`). The config file is `<home>/.anime-config.yaml`. Environment overrides are named
`ANIME_<SECTION>_<KEY>` (e.g. `ANIME_OUTPUT_RESOLUTION=768x1024`); `OLLAMA_HOST` fills
`llm.host` when the file leaves it unset.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationError,
)

from tools.engine.samplers import normalize_sampler
from tools.errors import ConfigError

CONFIG_FILENAME = ".anime-config.yaml"
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


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LoraSetting(_Section):
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


class ModelSettings(_Section):
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


class HiresSettings(_Section):
    """A1111's hires fix: draw at `output.resolution`, upscale by `scale`, refine (img2img)."""

    scale: float = Field(1.5, gt=1.0, le=4.0)
    denoise: float = Field(0.5, gt=0.0, le=1.0)
    # Steps of the second pass before `denoise` shortens it; null: output.steps (A1111's 0).
    steps: int | None = Field(None, ge=1, le=150)
    upscaler: Literal["latent", "lanczos"] = "latent"


class FaceDetailSettings(_Section):
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


class OutputSettings(_Section):
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


class QualitySettings(_Section):
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


class LLMSettings(_Section):
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


class WorkerSettings(_Section):
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


class ServerSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(7788, ge=0, le=65535)


@dataclass(frozen=True)
class Paths:
    """Every location below home, in one place."""

    home: Path

    @property
    def config_file(self) -> Path:
        return self.home / CONFIG_FILENAME

    @property
    def characters(self) -> Path:
        return self.home / ".anime-characters"

    @property
    def output(self) -> Path:
        return self.home / "anime-output"

    @property
    def state(self) -> Path:
        return self.home / ".anime-chat"

    @property
    def models(self) -> Path:
        return self.home / "models"

    @property
    def user_poses(self) -> Path:
        return self.state / "poses"


class Settings(_Section):
    models: ModelSettings = ModelSettings()
    output: OutputSettings = OutputSettings()
    quality: QualitySettings = QualitySettings()
    llm: LLMSettings = LLMSettings()
    worker: WorkerSettings = WorkerSettings()
    server: ServerSettings = ServerSettings()
    home: Path = Field(default_factory=Path.home, exclude=True)

    @property
    def paths(self) -> Paths:
        return Paths(self.home)

    def ollama_host(self) -> str:
        return self.llm.host or "http://localhost:11434"


_SECTIONS = ("models", "output", "quality", "llm", "worker", "server")


def resolve_home(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    home = env.get("ANIME_HOME")
    return Path(home).expanduser() if home else Path.home()


def _read_file(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark else ""
        raise ConfigError(
            f"{path}: not valid YAML{where}",
            "fix the syntax or move the file away to use the defaults",
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot be read ({exc})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of sections ({', '.join(_SECTIONS)})")
    return data


def _env_layer(env: Mapping[str, str]) -> dict[str, dict[str, str]]:
    layer: dict[str, dict[str, str]] = {}
    for section in _SECTIONS:
        fields = Settings.model_fields[section].annotation.model_fields  # type: ignore[union-attr]
        for key in fields:
            value = env.get(f"ANIME_{section}_{key}".upper())
            if value is not None:
                layer.setdefault(section, {})[key] = value
    return layer


def _merge(base: dict[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in top.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _merge(dict(merged[key]), value)
        else:
            merged[key] = value
    return merged


# Mappings inside a section, for the "known keys" of a typo in them.
_NESTED_SECTIONS: dict[tuple[str, ...], type[BaseModel]] = {
    ("output", "hires"): HiresSettings,
    ("output", "face_detail"): FaceDetailSettings,
}


def _explain(error: ValidationError, source: str) -> ConfigError:
    first = error.errors()[0]
    key = ".".join(str(part) for part in first["loc"])
    if first["type"] == "extra_forbidden":
        section = first["loc"][0] if len(first["loc"]) > 1 else None
        known = (
            Settings.model_fields[section].annotation.model_fields  # type: ignore[union-attr]
            if section in _SECTIONS
            else _SECTIONS
        )
        nested = _NESTED_SECTIONS.get(tuple(first["loc"][:-1]))
        if nested is not None:
            known = nested.model_fields
        return ConfigError(f"{source}: unknown key '{key}'", f"known keys: {', '.join(known)}")
    message = first["msg"].removeprefix("Value error, ")
    return ConfigError(f"{source}: {key}: {message}")


def load_settings(
    overrides: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    home: Path | None = None,
) -> Settings:
    """Resolve settings once. `overrides` are CLI flags as nested sections."""
    env = os.environ if env is None else env
    home = home or resolve_home(env)
    path = home / CONFIG_FILENAME
    file_layer = _read_file(path)
    try:
        Settings.model_validate(file_layer)
    except ValidationError as exc:
        raise _explain(exc, str(path)) from None

    merged = _merge(file_layer, _env_layer(env))
    if env.get("OLLAMA_HOST") and not merged.get("llm", {}).get("host"):
        merged = _merge(merged, {"llm": {"host": env["OLLAMA_HOST"]}})
    merged = _merge(merged, {k: v for k, v in (overrides or {}).items() if v is not None})
    try:
        return Settings.model_validate({**merged, "home": home})
    except ValidationError as exc:
        raise _explain(exc, "environment or command-line override") from None
