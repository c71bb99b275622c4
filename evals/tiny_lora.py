"""A tiny random LoRA for the tiny SD1.5 UNet, standing in for an LCM / TCD / Hyper-SD LoRA.

`build_tiny_lora(unet_dir, path)` writes a diffusers/peft-format `.safetensors` (keys
`unet.<module>.lora_A.weight` / `lora_B.weight`) on every attention projection of the UNet whose
config is in `unet_dir`. Its weights are seeded noise: it exercises the loading and fusing path
and visibly changes the output, nothing more. No download.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

RANK = 4
# The projections the real few-step LoRAs adapt in every transformer block.
TARGETS = ("to_q", "to_k", "to_v", "to_out.0")


def build_tiny_lora(unet_dir: Path, path: Path, seed: int = 0, scale: float = 0.5) -> Path:
    """Write the LoRA to `path` (atomically) and return it."""
    import torch
    from diffusers import UNet2DConditionModel
    from safetensors.torch import save_file

    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(unet_dir))
    generator = torch.Generator("cpu").manual_seed(seed)
    tensors: dict[str, torch.Tensor] = {}
    for name, module in unet.named_modules():
        if not isinstance(module, torch.nn.Linear) or not name.endswith(TARGETS):
            continue
        down = torch.randn(RANK, module.in_features, generator=generator)
        up = torch.randn(module.out_features, RANK, generator=generator)
        tensors[f"unet.{name}.lora_A.weight"] = down * scale / module.in_features**0.5
        tensors[f"unet.{name}.lora_B.weight"] = up * scale / RANK**0.5
    if not tensors:
        raise ValueError(f"no attention projections found in the UNet at {unet_dir}")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".safetensors", dir=path.parent)
    os.close(fd)
    save_file(tensors, temp)
    os.chmod(temp, 0o644)
    os.replace(temp, path)
    return path
