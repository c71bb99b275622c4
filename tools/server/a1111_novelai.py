"""A NovelAI PNG's parameters as A1111's png-info reads them (`modules/images.py`
`read_info_from_image`): NovelAI writes the prompt as its `Description` chunk and the settings
as JSON in `Comment` (with `Software: NovelAI`); A1111 writes them out as an infotext, naming
NovelAI's sampler by A1111's alias (`samplers_map`, "Euler a" when it has none) and adding the
Clip skip 2 and ENSD 31337 NovelAI draws with.
"""

from __future__ import annotations

import json
from typing import Any

# A1111's sampler aliases (`modules/sd_samplers_kdiffusion.py` samplers_k_diffusion) for the
# names NovelAI writes; A1111's `samplers_map` also holds each name lowercased.
SAMPLER_ALIASES = {
    "k_euler_a": "Euler a",
    "k_euler_ancestral": "Euler a",
    "k_euler": "Euler",
    "k_lms": "LMS",
    "k_heun": "Heun",
    "k_dpm_2": "DPM2",
    "k_dpm_2_a": "DPM2 a",
    "k_dpmpp_2s_a": "DPM++ 2S a",
    "k_dpmpp_2m": "DPM++ 2M",
    "k_dpmpp_sde": "DPM++ SDE",
    "k_dpm_fast": "DPM fast",
    "k_dpm_ad": "DPM adaptive",
    "ddim": "DDIM",
}
SAMPLER_NAMES = {name.lower(): name for name in SAMPLER_ALIASES.values()}


def novelai_infotext(items: dict[str, Any], size: tuple[int, int]) -> str | None:
    """The infotext of a NovelAI image's chunks, or None when they are not NovelAI's (or its
    record is not the JSON A1111 reads: A1111 then keeps what it had)."""
    if items.get("Software") != "NovelAI":
        return None
    try:
        record = json.loads(items["Comment"])
        name = record["sampler"]
        sampler = SAMPLER_ALIASES.get(name) or SAMPLER_NAMES.get(name, "Euler a")
        return (
            f"{items['Description']}\nNegative prompt: {record['uc']}\n"
            f"Steps: {record['steps']}, Sampler: {sampler}, CFG scale: {record['scale']},"
            f" Seed: {record['seed']}, Size: {size[0]}x{size[1]}, Clip skip: 2, ENSD: 31337"
        )
    except (KeyError, TypeError, ValueError, RecursionError):
        return None
