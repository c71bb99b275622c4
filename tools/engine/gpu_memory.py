"""How much GPU memory this machine has, asked of `nvidia-smi` (no torch import: the chat and
CLI processes stay light), and whether Ollama should free its model before a render."""

from __future__ import annotations

import shutil
import subprocess
from typing import Literal

# Below this much memory on the smallest GPU, a 7B chat model and an SD pipeline do not both fit.
UNLOAD_BELOW_GB = 16.0


def smallest_gpu_memory_gb() -> float | None:
    """Total memory of the smallest visible NVIDIA GPU in GB; None when there is none."""
    nvidia_smi = shutil.which("nvidia-smi")
    if nvidia_smi is None:
        return None
    try:
        answer = subprocess.run(
            [nvidia_smi, "--query-gpu=memory.total", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        )
        sizes_mib = [float(line) for line in answer.stdout.split() if line.strip()]
    except (OSError, subprocess.SubprocessError, ValueError):
        return None
    return min(sizes_mib) / 1024 if sizes_mib else None


def should_unload_llm(setting: bool | Literal["auto"], gpu_memory_gb: float | None) -> bool:
    """`llm.unload_before_generate`: true/false as set; auto unloads only on a small GPU (on a
    machine without one, Ollama's model sits in RAM and costs the render nothing)."""
    if setting != "auto":
        return bool(setting)
    return gpu_memory_gb is not None and gpu_memory_gb < UNLOAD_BELOW_GB
