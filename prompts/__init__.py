"""Prompt text kept as data: system prompt, tool descriptions, anime quality/negative tags."""

from __future__ import annotations

from functools import cache
from importlib import resources


@cache
def load_prompt(name: str) -> str:
    """The text of `prompts/<name>.txt`, stripped."""
    return resources.files(__name__).joinpath(f"{name}.txt").read_text(encoding="utf-8").strip()
