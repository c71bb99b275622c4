"""The `parameters` entries of our second passes and LoRA hashes, in A1111's own spelling.

Hires fix as A1111 writes it (`Denoising strength`, `Hires upscale`, `Hires steps`, `Hires
upscaler`), face detail with ADetailer's keys, LoRAs as `Lora hashes: "name: hash, ..."` and
embeddings as `TI hashes`, so A1111, Civitai and image browsers read them from our PNGs.
"""

from __future__ import annotations

from typing import Any

# Our hires upscaler names → A1111's `Hires upscaler` values.
A1111_UPSCALERS = {"latent": "Latent", "lanczos": "Lanczos"}
ADETAILER_VERSION = "anime-chat"


def second_pass_fields(meta: dict[str, Any]) -> list[tuple[str, Any]]:
    """(key, value) entries for the hires fix, face detail and LoRA hashes the meta records."""
    fields: list[tuple[str, Any]] = []
    hires = meta.get("hires")
    if hires:
        fields += [
            ("Denoising strength", hires["denoise"]),
            ("Hires upscale", hires["scale"]),
            ("Hires steps", hires["steps"]),
            ("Hires upscaler", A1111_UPSCALERS.get(hires["upscaler"], hires["upscaler"])),
        ]
    detail = meta.get("face_detail")
    if detail and detail.get("applied"):
        fields += [
            ("ADetailer model", detail["model"]),
            ("ADetailer confidence", detail["confidence"]),
            ("ADetailer dilate erode", detail["mask_blur"]),
            ("ADetailer mask blur", detail["mask_blur"]),
            ("ADetailer denoising strength", detail["denoise"]),
            ("ADetailer inpaint only masked", True),
            ("ADetailer inpaint padding", detail["padding"]),
            ("ADetailer version", ADETAILER_VERSION),
        ]
    elif detail:
        fields.append(("Face detail", "no face found"))
    hashes = meta.get("lora_hashes") or {}
    if hashes:
        fields.append(("Lora hashes", ", ".join(f"{name}: {h}" for name, h in hashes.items())))
    embedding_hashes = meta.get("ti_hashes") or {}
    if embedding_hashes:
        # A1111 modules/sd_hijack_clip.py `forward`: "TI hashes", read by Civitai.
        written = ", ".join(f"{name}: {h}" for name, h in embedding_hashes.items())
        fields.append(("TI hashes", written))
    return fields
