"""From a PNG's parameters to a drawing of ours: `anime-gen --from-png`.

`replay_plan` maps what `tools.store.png_info` read (ours, A1111/Forge's, ComfyUI's) onto a
generation request and settings overrides, naming what has no equivalent here;
`model_warning` says when the image was drawn with another checkpoint.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tools.errors import UserError
from tools.store.png_info import INLINE_LORA, as_number, file_stem

# ComfyUI's sampler names that differ from ours (the others fold with normalize_sampler).
_COMFYUI_SAMPLERS = {
    "euler_ancestral": "euler_a",
    "uni_pc": "unipc",
    "uni_pc_bh2": "unipc",
}


def our_sampler(name: Any) -> str | None:
    """Our `output.sampler` for a sampler as A1111 ("DPM++ 2M Karras", "UniPC") or ComfyUI
    ("dpmpp_2m_karras", "euler_ancestral") names it; None when we have no such sampler."""
    from tools.engine.samplers import normalize_sampler

    if not name:
        return None
    text = str(name).strip()
    if text.lower() in _COMFYUI_SAMPLERS:
        return _COMFYUI_SAMPLERS[text.lower()]
    try:
        return normalize_sampler(text)
    except ValueError:
        return None


def model_warning(info: dict[str, Any], configured: str) -> str | None:
    """One line when the image's model is not the configured checkpoint (compared by file
    stem, as A1111 and ComfyUI name models), else None."""
    recorded = info.get("model")
    if not recorded or _modelfile_stem(recorded) == _modelfile_stem(configured):
        return None
    return (
        f"warning: {info['source']} image drawn with model '{recorded}', yours is "
        f"'{configured}' (models.checkpoint): expect other pixels"
    )


def _modelfile_stem(name: str) -> str:
    return str(file_stem(str(name).strip().split(" [")[0])).lower()


def replay_plan(info: dict[str, Any], character: str | None) -> tuple[dict[str, Any], list[str]]:
    """What `--from-png` draws: (request fields, settings overrides) and what it cannot map.

    Ours: the recorded character, pose id, user prompt, seed and settings (negative prompt, clip
    skip, ControlNet strength, IP-Adapter weight, hires fix and face detail included; the VAE is
    `replay_vae`'s). Others: their settings, negative and prompt for the character named;
    anything without an equivalent here is listed. The model is checked apart (`model_warning`).
    The plan is {"request", "output", "models"}.
    """
    ours = info["source"] == "anime-chat"
    who = character or (info.get("character") if ours else None)
    if not who:
        raise UserError(
            f"this image comes from {info['source']}: no character of ours is recorded",
            "add --character NAME",
        )
    unmapped: list[str] = []
    sampler = our_sampler(info.get("sampler"))
    if info.get("sampler") and sampler is None:
        unmapped.append(f"sampler '{info['sampler']}'")
    output: dict[str, Any] = {
        "steps": info.get("steps"),
        "guidance_scale": info.get("cfg_scale"),
        "sampler": sampler,
    }
    if info.get("width") and info.get("height"):
        output["resolution"] = f"{info['width']}x{info['height']}"
    request: dict[str, Any] = {"character": who, "seed": info.get("seed"), "count": 1}
    models: dict[str, Any] = {}
    if ours:
        request["pose"] = (info.get("pose") or {}).get("id")
        request["prompt"] = info.get("user_prompt") or ""
        output.update(_our_second_passes(info))
        output["negative_prompt"] = info.get("negative_prompt")
        for key in ("clip_skip", "controlnet_strength", "ipadapter_weight"):
            models[key] = info.get(key)
    else:
        request["random_pose"] = True
        request["prompt"] = INLINE_LORA.sub("", info.get("prompt") or "").strip(" ,")
        output.update(_a1111_second_passes(info, unmapped))
        unmapped += [f"LoRA '{lora['name']}'" for lora in info.get("loras") or []]
        # A1111 writes no "Negative prompt:" line for an empty one, and no "Clip skip" for 1
        # (modules/infotext_utils.py parse_generation_parameters: "Missing CLIP skip means it was
        # set to 1"); ComfyUI without CLIPSetLastLayer uses the last layer too.
        output["negative_prompt"] = info.get("negative_prompt") or ""
        models["clip_skip"] = info.get("clip_skip") or 1
    if models.get("clip_skip") is not None and not 1 <= models["clip_skip"] <= 4:
        unmapped.append(f"clip skip {models.pop('clip_skip')} (ours: 1 to 4)")
    plan = {"request": request, "output": output, "models": _set(models)}
    return plan, unmapped


def _set(values: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in values.items() if value is not None}


def replay_vae(
    info: dict[str, Any], configured: str | None, models_dir: Path, also: Sequence[Path] = ()
) -> dict[str, Any]:
    """The `models.vae` override that draws with the image's VAE: none when the configured one
    is it (same label), null for the checkpoint's own, else the recorded name (a hub id, or a
    file or folder found under `models_dir` or `also`, as `tools.engine.vae.find_vae` looks).

    Raises UserError naming the VAE when the recorded one cannot be found here."""
    from tools.engine.vae import find_vae, vae_label

    if info["source"] != "anime-chat" or "vae" not in info:
        return {}
    recorded = info["vae"]
    if vae_label(configured) == recorded:
        return {}
    if recorded is not None:
        try:
            find_vae(recorded, models_dir, also)
        except UserError as error:
            raise UserError(
                f"this image was drawn with VAE '{recorded}', not found here ({error})",
                f"put it in {models_dir / 'vae'}, or set models.vae and use --seed to redraw",
            ) from None
    return {"vae": recorded}


def _our_second_passes(info: dict[str, Any]) -> dict[str, Any]:
    """Our recorded hires fix and face detail as the settings that drew them (off if absent)."""
    hires, detail = info.get("hires"), info.get("face_detail")
    passes: dict[str, Any] = {"hires": False, "face_detail": False}
    if hires:
        passes["hires"] = {key: hires[key] for key in ("scale", "denoise", "steps", "upscaler")}
    if detail:
        keys = ("denoise", "confidence", "padding", "mask_blur")
        passes["face_detail"] = {key: detail[key] for key in keys}
    return passes


def _a1111_second_passes(info: dict[str, Any], unmapped: list[str]) -> dict[str, Any]:
    """A1111's hires fix and ADetailer entries as our output.hires / output.face_detail."""
    passes: dict[str, Any] = {}
    scale = as_number(info.get("Hires upscale"), float)
    if scale and scale > 1:
        upscaler = str(info.get("Hires upscaler") or "Latent")
        hires: dict[str, Any] = {
            "scale": scale,
            "upscaler": "latent" if upscaler.lower().startswith("latent") else "lanczos",
        }
        if not upscaler.lower().startswith(("latent", "lanczos")):
            unmapped.append(f"hires upscaler '{upscaler}' (ours: lanczos)")
        if as_number(info.get("Denoising strength"), float):
            hires["denoise"] = as_number(info["Denoising strength"], float)
        if as_number(info.get("Hires steps"), int):
            hires["steps"] = as_number(info["Hires steps"], int)
        passes["hires"] = hires
    if info.get("ADetailer model"):
        detail: dict[str, Any] = {}
        for ours, theirs, kind in (
            ("denoise", "ADetailer denoising strength", float),
            ("confidence", "ADetailer confidence", float),
            ("padding", "ADetailer inpaint padding", int),
            ("mask_blur", "ADetailer mask blur", int),
        ):
            if as_number(info.get(theirs), kind) is not None:
                detail[ours] = as_number(info[theirs], kind)
        passes["face_detail"] = detail
        unmapped.append(f"ADetailer model '{info['ADetailer model']}' (ours: animeface)")
    return passes


# What our PNG records that decides the pixels, besides the request (character, pose, seed):
# each either restored by `replay_plan` / `replay_vae` or, when it still differs, named.
_DRAWN_WITH = (
    "prompt",
    "negative_prompt",
    "steps",
    "sampler",
    "guidance_scale",
    "width",
    "height",
    "clip_skip",
    "controlnet",
    "controlnet_strength",
    "ipadapter",
    "ipadapter_weight",
    "loras",
    "embeddings",
    "vae",
    "fast_lora",
)


def not_restored(info: dict[str, Any], planned: dict[str, Any]) -> list[str]:
    """Our recorded settings that the replay's own metadata (`Producer.metadata` of its first
    image) does not match, one entry each: 'controlnet: recorded X, yours Y'. The model is
    `model_warning`'s; others' images have `replay_plan`'s list."""
    if info["source"] != "anime-chat":
        return []
    differ = []
    for key in _DRAWN_WITH:
        if key not in info or key not in planned:
            continue
        recorded, now = info[key], planned[key]
        if key == "loras":
            recorded = [(lora["name"], lora.get("weight")) for lora in recorded or []]
            now = [(lora["name"], lora.get("weight")) for lora in now or []]
        if recorded != now:
            differ.append(f"{key}: recorded {_shown(recorded)}, yours {_shown(now)}")
    return differ


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
