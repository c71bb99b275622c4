"""From a PNG's parameters to a drawing of ours: `anime-gen --from-png`.

`replay_plan` maps what `tools.store.png_info` read (ours, A1111/Forge's, ComfyUI's) onto a
generation request and settings overrides, naming what has no equivalent here;
`model_warning` says when the image was drawn with another checkpoint.
"""

from __future__ import annotations

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

    Ours: the recorded character, pose id, user prompt, seed and settings (hires fix and face
    detail included). Others: their settings and prompt for the character named; anything
    without an equivalent here is listed. The model is checked apart (`model_warning`).
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
    if ours:
        request["pose"] = (info.get("pose") or {}).get("id")
        request["prompt"] = info.get("user_prompt") or ""
        output.update(_our_second_passes(info))
    else:
        request["random_pose"] = True
        request["prompt"] = INLINE_LORA.sub("", info.get("prompt") or "").strip(" ,")
        output.update(_a1111_second_passes(info, unmapped))
        unmapped += [f"LoRA '{lora['name']}'" for lora in info.get("loras") or []]
    return {"request": request, "output": output}, unmapped


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
