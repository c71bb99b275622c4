"""Samplers by our names and A1111's: which diffusers scheduler, with which options.

`normalize_sampler("DPM++ 2M Karras") == "dpmpp_2m_karras"`: A1111 spellings (with the schedule
type appended, as A1111 ≥ 1.6 writes it in `parameters`) fold to our names.
"""

from __future__ import annotations

import re
from typing import Any

# name → (diffusers scheduler class, A1111 label, scheduler config options)
SAMPLER_TABLE: dict[str, tuple[str, str, dict[str, Any]]] = {
    "euler_a": ("EulerAncestralDiscreteScheduler", "Euler a", {}),
    "euler": ("EulerDiscreteScheduler", "Euler", {}),
    "dpmpp_2m": ("DPMSolverMultistepScheduler", "DPM++ 2M", {}),
    "dpmpp_2m_karras": (
        "DPMSolverMultistepScheduler",
        "DPM++ 2M Karras",
        {"use_karras_sigmas": True},
    ),
    # Needs torchsde (a dependency); its Brownian noise is seeded per image by the engine.
    "dpmpp_sde_karras": ("DPMSolverSDEScheduler", "DPM++ SDE Karras", {"use_karras_sigmas": True}),
    "dpmpp_2m_sde_karras": (
        "DPMSolverMultistepScheduler",
        "DPM++ 2M SDE Karras",
        {"algorithm_type": "sde-dpmsolver++", "use_karras_sigmas": True},
    ),
    "ddim": ("DDIMScheduler", "DDIM", {}),
    "unipc": ("UniPCMultistepScheduler", "UniPC", {}),
}


def normalize_sampler(value: Any) -> str:
    """Our name for a sampler written our way or A1111's; a ValueError lists the choices."""
    folded = re.sub(r"[^a-z0-9]+", "_", str(value).lower().replace("++", "pp")).strip("_")
    if folded in SAMPLER_TABLE:
        return folded
    choices = ", ".join(f"{name} ({label})" for name, (_, label, _) in SAMPLER_TABLE.items())
    raise ValueError(f"unknown sampler '{value}'; choose one of: {choices}")
