"""Samplers by our names and A1111's: which diffusers scheduler, with which options.

`normalize_sampler("DPM++ 2M Karras") == "dpmpp_2m_karras"`: A1111 spellings (with the schedule
type appended, as A1111 ≥ 1.6 writes it in `parameters`) fold to our names.
"""

from __future__ import annotations

import re
from typing import Any

# A1111's "Uniform" schedule (modules/sd_schedulers.py `uniform`: k-diffusion's
# `get_sigmas(n)`, t = linspace(999, 0, n)) and ComfyUI's "normal": it starts at t = 999
# (σ≈14.61 on SD's betas), where the checkpoint configs' "leading" spacing starts at t = 961
# (σ≈11.68 at 25 steps).
_UNIFORM = {"timestep_spacing": "linspace"}
# name → (diffusers scheduler class, A1111 label, scheduler config options)
SAMPLER_TABLE: dict[str, tuple[str, str, dict[str, Any]]] = {
    "euler_a": ("EulerAncestralDiscreteScheduler", "Euler a", _UNIFORM),
    "euler": ("EulerDiscreteScheduler", "Euler", _UNIFORM),
    "dpmpp_2m": ("DPMSolverMultistepScheduler", "DPM++ 2M", _UNIFORM),
    "dpmpp_2m_karras": (
        "DPMSolverMultistepScheduler",
        "DPM++ 2M Karras",
        {"use_karras_sigmas": True},
    ),
    # Needs torchsde (a dependency); its Brownian noise is seeded per image by the engine.
    # Karras sigmas between the model's own σmax and σmin (k-diffusion `get_sigmas_karras` in
    # A1111), which "leading" spacing would cap at σ(961).
    "dpmpp_sde_karras": (
        "DPMSolverSDEScheduler",
        "DPM++ SDE Karras",
        {"use_karras_sigmas": True, **_UNIFORM},
    ),
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


# The A1111 `Schedule type` of what each sampler runs. A1111 >= 1.9 reads "DPM++ 2M" with
# "Automatic" as Karras (modules/sd_samplers_kdiffusion.py `samplers_k_diffusion`, its
# {"scheduler": "karras"} option), so the uniform one is written as "Uniform".
A1111_SCHEDULE = {
    "euler_a": "Uniform",
    "euler": "Uniform",
    "dpmpp_2m": "Uniform",
    "dpmpp_2m_karras": "Karras",
    "dpmpp_sde_karras": "Karras",
    "dpmpp_2m_sde_karras": "Karras",
}


def a1111_sampler_and_schedule(label: str) -> tuple[str, str]:
    """Our sampler label as A1111's `Sampler` and `Schedule type`: "DPM++ 2M Karras" →
    ("DPM++ 2M", "Karras"), "DPM++ 2M" → ("DPM++ 2M", "Uniform"), "LCM" → ("LCM", "Automatic")."""
    try:
        name = normalize_sampler(label)
    except ValueError:
        return label, "Automatic"
    schedule = A1111_SCHEDULE.get(name, "Automatic")
    return label.removesuffix(f" {schedule}"), schedule
