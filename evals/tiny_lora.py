"""Tiny random LoRAs for the tiny SD1.5 models; seeded noise, no download.

`build_tiny_lora(unet_dir, path)` stands in for an LCM / TCD / Hyper-SD LoRA: a diffusers/peft
`.safetensors` (keys `unet.<module>.lora_A.weight` / `lora_B.weight`) on every attention
projection of the UNet whose config is in `unet_dir`. `build_tiny_kohya_lora(unet, text_encoder,
path)` stands in for a character LoRA from Civitai: kohya key layout, UNet and text encoder. Both
exercise the real loading paths and visibly change the output, nothing more.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

RANK = 4
# The projections the real few-step LoRAs adapt in every transformer block.
TARGETS = ("to_q", "to_k", "to_v", "to_out.0")


def build_tiny_lora(unet_dir: Path, path: Path, seed: int = 0, scale: float = 0.5) -> Path:
    """Write the LoRA to `path` (atomically) and return it."""
    import torch
    from diffusers import UNet2DConditionModel

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
    _save(tensors, path)
    return path


# The text encoder's projections a character LoRA trained with kohya's sd-scripts adapts.
TEXT_TARGETS = ("q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2")


def build_tiny_kohya_lora(unet: Any, text_encoder: Any, path: Path, seed: int = 1) -> Path:
    """A tiny character-style LoRA in the kohya/A1111 key layout that Civitai files use
    (`lora_unet_<module>.lora_down.weight` / `.lora_up.weight` / `.alpha`, and `lora_te_...` for
    the text encoder), on the UNet's attention and the text encoder's layers. Seeded noise."""
    import torch

    generator = torch.Generator("cpu").manual_seed(seed)
    tensors: dict[str, torch.Tensor] = {}

    def add(prefix: str, module: torch.nn.Linear, scale: float) -> None:
        down = torch.randn(RANK, module.in_features, generator=generator)
        up = torch.randn(module.out_features, RANK, generator=generator)
        tensors[f"{prefix}.lora_down.weight"] = down * scale / module.in_features**0.5
        tensors[f"{prefix}.lora_up.weight"] = up * scale / RANK**0.5
        tensors[f"{prefix}.alpha"] = torch.tensor(float(RANK))

    for name, module in unet.named_modules():
        if isinstance(module, torch.nn.Linear) and name.endswith(TARGETS):
            add("lora_unet_" + name.replace(".", "_"), module, 1.0)
    for name, module in text_encoder.named_modules():
        if isinstance(module, torch.nn.Linear) and name.endswith(TEXT_TARGETS):
            # transformers 5 dropped the `text_model.` level; kohya's names keep it.
            inner = name.removeprefix("text_model.")
            add("lora_te_text_model_" + inner.replace(".", "_"), module, 1.0)
    _save(tensors, path)
    return path


def _save(tensors: dict[str, Any], path: Path) -> None:
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".safetensors", dir=path.parent)
    os.close(fd)
    save_file({key: value.contiguous() for key, value in tensors.items()}, temp)
    os.chmod(temp, 0o644)
    os.replace(temp, path)
