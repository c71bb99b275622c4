"""`RenderJob`: one image for the engine to draw. Its own module, below both `rendering` (which
draws jobs) and `conditioning` (which embeds their prompts and references)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from tools.engine.prompt_syntax import LoraRequest


@dataclass(frozen=True)
class RenderJob:
    """One image to draw. Jobs rendered together must share size, steps, CFG and weights."""

    prompt: str
    negative_prompt: str
    pose_image: Image.Image
    reference: Path | None
    seed: int
    # LoRAs of this image besides models.loras and the prompt's own <lora:NAME:W> tags.
    loras: tuple[LoraRequest, ...] = ()
