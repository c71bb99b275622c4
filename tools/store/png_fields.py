"""The contract fields of `anime-gen info --json` and the small value readers every PNG reader
shares (`tools.store.png_info`, `tools.store.png_info_comfyui`)."""

from __future__ import annotations

import re
from typing import Any

FIELDS = (
    "prompt",
    "negative_prompt",
    "steps",
    "sampler",
    "cfg_scale",
    "seed",
    "width",
    "height",
    "model",
    "clip_skip",
)


def empty_info(source: str) -> dict[str, Any]:
    return {**dict.fromkeys(FIELDS), "loras": [], "source": source}


def as_number(value: Any, kind: type) -> Any:
    if value is None:
        return None
    try:
        return kind(float(value)) if kind is int else kind(value)
    except (TypeError, ValueError, OverflowError):
        return None


def file_stem(name: Any) -> Any:
    if not isinstance(name, str):
        return name
    return re.sub(r"\.(safetensors|ckpt|pt|pth|bin)$", "", name.replace("\\", "/").split("/")[-1])
