"""A1111's txt2img request, mapped onto our settings: what each field becomes, and what is declined.

The request model follows `StableDiffusionProcessingTxt2Img` as A1111 serves it
(AUTOMATIC1111/stable-diffusion-webui `modules/api/models.py`): unknown fields are accepted and
ignored, as A1111 does. A field left out means our configured value (A1111 would use its own
defaults, e.g. 50 steps), so a client that sends only a prompt gets the studio's look. Every
field becomes a settings override of the request's job (`{section: {key: value}}`), so the job
renders with them and the journal keeps them; what we cannot honour is named in `warnings`.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from tools.engine.samplers import normalize_sampler
from tools.errors import UserError
from tools.settings_sections import Resolution

# A1111's hires upscalers that are a latent upscale; every other one becomes our Lanczos resize.
LATENT_UPSCALERS = frozenset(
    {
        "latent",
        "latent (antialiased)",
        "latent (bicubic)",
        "latent (bicubic antialiased)",
        "latent (nearest)",
        "latent (nearest-exact)",
    }
)
# A1111's schedule types: "automatic" is the sampler's own; Karras is the one we also have.
AUTOMATIC_SCHEDULES = frozenset({"", "automatic", "auto", "default"})
KARRAS = "karras"
# Options (POST /options, override_settings) that map onto our settings.
OPTION_SETTINGS = {
    "sd_model_checkpoint": ("models", "checkpoint"),
    "CLIP_stop_at_last_layers": ("models", "clip_skip"),
    "sd_vae": ("models", "vae"),
}
NO_VAE = frozenset({"", "automatic", "none", "auto"})
# A1111 request fields with no counterpart here (read from the request's extra fields); their
# empty or "Use same ..." values (webuiapi sends those by default) change nothing.
NOT_HONOURED = ("script_name", "refiner_checkpoint")
HIRES_NOT_HONOURED = (
    "hr_prompt",
    "hr_negative_prompt",
    "hr_checkpoint_name",
    "hr_sampler_name",
    "hr_scheduler",
)
NO_CHANGE = frozenset({"", "none", "use same checkpoint", "use same sampler", "use same scheduler"})


class A1111Request(BaseModel):
    """The txt2img fields we read; anything else a client sends passes through unread."""

    model_config = ConfigDict(extra="allow")

    prompt: str = ""
    negative_prompt: str = ""
    styles: list[str] | None = None
    seed: int = -1
    subseed: int = -1
    subseed_strength: float = 0.0
    sampler_name: str | None = None
    sampler_index: str | None = None
    scheduler: str | None = None
    batch_size: int = Field(1, ge=1, le=100)
    n_iter: int = Field(1, ge=1, le=100)
    steps: int | None = None
    cfg_scale: float | None = None
    width: int | None = None
    height: int | None = None
    restore_faces: bool | None = None
    tiling: bool | None = None
    enable_hr: bool = False
    hr_scale: float = 2.0
    hr_upscaler: str | None = None
    hr_second_pass_steps: int = 0
    hr_resize_x: int = 0
    hr_resize_y: int = 0
    denoising_strength: float | None = None
    override_settings: dict[str, Any] = Field(default_factory=dict)
    alwayson_scripts: dict[str, Any] = Field(default_factory=dict)
    send_images: bool = True
    save_images: bool = False

    @model_validator(mode="before")
    @classmethod
    def _null_is_left_out(cls, data: Any) -> Any:
        """A1111 types every request field `Optional` (`seed: null` is a random seed there):
        a null is the field's default here."""
        if not isinstance(data, dict):
            return data
        return {k: v for k, v in data.items() if v is not None or k not in cls.model_fields}

    @property
    def count(self) -> int:
        return self.batch_size * self.n_iter

    @property
    def fixed_seed(self) -> int | None:
        """The seed, or None for A1111's -1 (random)."""
        return None if self.seed == -1 else self.seed


class A1111Img2ImgRequest(A1111Request):
    """`StableDiffusionProcessingImg2Img`'s fields we read, besides txt2img's."""

    init_images: list[str] | None = None
    # 0 is allowed as in A1111: the init image comes back (tools/engine/img2img.py).
    denoising_strength: float | None = Field(0.75, ge=0.0, le=1.0)
    mask: str | None = None
    resize_mode: int = 0


class Mapping(BaseModel):
    """What one request becomes: settings flags and the warnings for what was declined."""

    flags: dict[str, dict[str, Any]] = Field(default_factory=dict)
    warnings: list[str] = Field(default_factory=list)

    def set(self, section: str, key: str, value: Any) -> None:
        self.flags.setdefault(section, {})[key] = value


# Per option, the names our lists answer (a checkpoint's title, a VAE's model_name) → the file.
Known = dict[str, dict[str, str]]


def map_request(
    body: A1111Request,
    options: dict[str, Any],
    known: Known | None = None,
    configured: Resolution | None = None,
) -> Mapping:
    """The request's settings: the client's options, its override_settings, then its fields.
    `configured` is the resolution the request has without its width and height."""
    mapping = Mapping()
    for name, value in {**options, **body.override_settings}.items():
        apply_option(mapping, name, value, known)
    if body.steps is not None:
        mapping.set("output", "steps", body.steps)
    if body.cfg_scale is not None:
        mapping.set("output", "guidance_scale", body.cfg_scale)
    if body.width is not None or body.height is not None:
        mapping.set("output", "resolution", _resolution(body, configured, mapping.warnings))
    sampler = body.sampler_name or body.sampler_index
    if sampler:
        mapping.set("output", "sampler", _sampler(sampler, body.scheduler, mapping.warnings))
    if body.negative_prompt.strip():
        mapping.set("output", "negative_prompt", body.negative_prompt)
    if body.enable_hr:
        mapping.set("output", "hires", _hires(body, mapping.warnings))
    face_detail = _adetailer(body.alwayson_scripts.get("ADetailer"), mapping.warnings)
    if face_detail is not None:
        mapping.set("output", "face_detail", face_detail)
    _declined(body, mapping.warnings)
    return mapping


def map_img2img(
    body: A1111Img2ImgRequest,
    options: dict[str, Any],
    known: Known | None = None,
    configured: Resolution | None = None,
) -> Mapping:
    """As txt2img, without the hires pass (A1111's `StableDiffusionProcessingImg2Img` has
    none, its request model drops enable_hr); what img2img adds that we cannot do is warned
    about."""
    mapping = map_request(body.model_copy(update={"enable_hr": False}), options, known, configured)
    if body.enable_hr:
        mapping.warnings.append("enable_hr is a txt2img field; img2img ignores it as A1111 does")
    if body.mask:
        mapping.warnings.append("inpainting (mask) is not supported; the whole image is redrawn")
    if body.resize_mode:
        mapping.warnings.append("only resize_mode 0 (just resize) is supported; used it")
    return mapping


def apply_option(mapping: Mapping, name: str, value: Any, known: Known | None = None) -> None:
    """One A1111 option onto our settings; other options are kept by the client only. A name
    from our own lists (`GET /sd-models`, `/sd-vae`) becomes its file; any other is used as
    given (a file in `<home>/models/`, a path or a hub id)."""
    if name not in OPTION_SETTINGS:
        return
    section, key = OPTION_SETTINGS[name]
    if name == "sd_vae" and str(value or "").strip().lower() in NO_VAE:
        mapping.set(section, key, None)
        return
    if name in ("sd_vae", "sd_model_checkpoint"):
        # A1111 titles read "name.safetensors [hash]"; the hash is not part of the file name.
        value = str(value).split(" [")[0].strip()
        if not value:
            return
        value = (known or {}).get(name, {}).get(value, value)
    mapping.set(section, key, value)


def _resolution(body: A1111Request, configured: Resolution | None, warnings: list[str]) -> str:
    """The size asked for. A side left out is the configured one, as every field left out here
    (A1111's `StableDiffusionProcessing` defaults both to 512, which an SDXL checkpoint draws
    badly, and which a client sending one side rarely means); it is named in the warnings, as a
    side rounded down to a multiple of 8 is (A1111 rounds the latent size down silently)."""
    size = configured or Resolution(512, 512)
    width, height = body.width or size.width, body.height or size.height
    for name, given, used in (("width", body.width, width), ("height", body.height, height)):
        if not given:
            warnings.append(
                f"{name} not given: used the configured {used} (output.resolution {size};"
                " A1111 would use 512)"
            )
    if width % 8 or height % 8:
        rounded = width - width % 8, height - height % 8
        warnings.append(
            f"width/height {width}x{height} rounded down to multiples of 8:"
            f" {rounded[0]}x{rounded[1]}"
        )
        width, height = rounded
    return f"{width}x{height}"


def _sampler(name: str, scheduler: str | None, warnings: list[str]) -> str:
    """A1111's sampler (+ schedule type) in our names; a sampler we lack is a user error."""
    schedule = (scheduler or "").strip().lower()
    label = name.strip()
    if schedule == KARRAS and not label.lower().endswith(KARRAS):
        label = f"{label} Karras"
    elif schedule not in AUTOMATIC_SCHEDULES and schedule != KARRAS:
        warnings.append(f"schedule type '{scheduler}' is not available; used the sampler's own")
    try:
        return normalize_sampler(label)
    except ValueError:
        pass
    try:
        # "DPM++ SDE" exists here with the Karras schedule only (A1111's own default for it).
        return normalize_sampler(f"{label} Karras")
    except ValueError as error:
        raise UserError(str(error), "GET /sdapi/v1/samplers lists the samplers") from None


def _hires(body: A1111Request, warnings: list[str]) -> dict[str, Any]:
    upscaler = (body.hr_upscaler or "Latent").strip()
    ours = "latent" if upscaler.lower() in LATENT_UPSCALERS else "lanczos"
    if ours == "lanczos" and upscaler.lower() != "lanczos":
        warnings.append(f"hr_upscaler '{upscaler}' is not available; used Lanczos")
    if body.hr_resize_x or body.hr_resize_y:
        warnings.append("hr_resize_x/hr_resize_y are not supported; used hr_scale")
    hires: dict[str, Any] = {"scale": body.hr_scale, "upscaler": ours}
    if body.denoising_strength is not None:
        hires["denoise"] = body.denoising_strength
    if body.hr_second_pass_steps:
        hires["steps"] = body.hr_second_pass_steps
    return hires


def _adetailer(script: Any, warnings: list[str]) -> dict[str, Any] | None:
    """`alwayson_scripts.ADetailer.args`: `[enabled, {ad_* of the first unit}, ...]` (ADetailer's
    own layout; older clients send the units alone). Our face pass has one unit, for faces."""
    args = script.get("args") if isinstance(script, dict) else None
    if not isinstance(args, list) or not args:
        return None
    if isinstance(args[0], bool):
        if not args[0]:
            return None
        args = args[1:]
    units = [unit for unit in args if isinstance(unit, dict)]
    unit = units[0] if units else {}
    model = str(unit.get("ad_model") or "face")
    if "face" not in model.lower():
        warnings.append(f"ADetailer model '{model}' is not available; detailed the faces")
    if len(units) > 1:
        warnings.append("ADetailer: only the first unit is used")
    fields = {
        "denoise": unit.get("ad_denoising_strength"),
        "confidence": unit.get("ad_confidence"),
        "padding": unit.get("ad_inpaint_only_masked_padding"),
        "mask_blur": unit.get("ad_mask_blur"),
    }
    return {key: value for key, value in fields.items() if value is not None}


def _declined(body: A1111Request, warnings: list[str]) -> None:
    if body.restore_faces:
        warnings.append("restore_faces is not supported (use ADetailer: our face detail pass)")
    if body.subseed != -1 and body.subseed_strength:
        warnings.append("subseed/subseed_strength are not supported; ignored")
    if body.tiling:
        warnings.append("tiling is not supported; ignored")
    if body.styles:
        warnings.append("styles are not supported; ignored")
    if body.save_images is False:
        warnings.append("every image is saved to the output folder (save_images: false ignored)")
    extra = body.model_extra or {}
    names = [*NOT_HONOURED, *(HIRES_NOT_HONOURED if body.enable_hr else ())]
    given = [name for name in names if _changes(extra.get(name))]
    if given:
        warnings.append(f"not supported, ignored: {', '.join(given)}")
    scripts = set(body.alwayson_scripts) - {"ADetailer"}
    enabled = sorted(name for name in scripts if _script_enabled(body.alwayson_scripts[name]))
    if enabled:
        warnings.append(f"scripts not supported, ignored: {', '.join(enabled)}")


def _changes(value: Any) -> bool:
    return value is not None and str(value).strip().lower() not in NO_CHANGE


def _script_enabled(script: Any) -> bool:
    """A script whose args are empty or start with False is off (clients send those always)."""
    args = script.get("args") if isinstance(script, dict) else None
    return bool(args) and args[0] is not False
