"""What loads the studio's own pipeline (`models.*`) on this machine. With `worker.backend:
comfyui` ComfyUI draws, and only these still run here: the quality gate (the IP-Adapter image
encoder) and the hires / face detail passes (tools/engine/second_pass.py), which redraw each
image ComfyUI sends with the local pipeline. The worker loads, the front end downloads and
`anime-gen doctor` checks the local models for exactly these."""

from __future__ import annotations

from tools.settings import Settings


def local_model_uses(settings: Settings) -> list[str]:
    """Why this machine loads `models.*` for `settings` (empty: it does not)."""
    if settings.worker.backend != "comfyui":
        return ["drawing"]
    uses = ["the quality gate"] if settings.quality.enabled else []
    if settings.output.hires is not None:
        uses.append("output.hires")
    if settings.output.face_detail is not None:
        uses.append("output.face_detail")
    return uses
