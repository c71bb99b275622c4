"""Random-weight model folders with real architectures, for benchmarks and SDXL tests; no download.

`build_bench_models(directory, family, size)` writes what `Engine` and raw diffusers both load:

- `checkpoint/`: a diffusers SD1.5 or SDXL folder (UNet, VAE, text encoder(s), tokenizer(s));
- `controlnet/`: a ControlNet made from that UNet;
- `ip-adapter/<subfolder>/`: a plain IP-Adapter and its CLIP vision encoder;

`size="full"` uses the published SD1.5 / SDXL architectures (UNet, ControlNet, VAE, CLIP text
and vision encoders), so timings are real compute; `size="tiny"` uses toy widths for CPU tests.
Weights are random, so images are noise: this measures speed, never quality.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

STAMP_NAME = ".bench-models"
BUILD_VERSION = "1"


@dataclass(frozen=True)
class Architecture:
    unet: dict[str, Any]
    vae: dict[str, Any]
    text: list[dict[str, Any]]  # one CLIPTextConfig per encoder; SDXL's second has projection
    vision: dict[str, Any]
    controlnet_embedding: tuple[int, ...]
    ipadapter_subfolder: str
    ipadapter_weight_name: str


def architecture(family: str, size: str) -> Architecture:
    if family == "sd15":
        return _SD15_FULL if size == "full" else _SD15_TINY
    return _SDXL_FULL if size == "full" else _SDXL_TINY


_TEXT_COMMON = {"max_position_embeddings": 77, "hidden_act": "quick_gelu"}
_SD15_FULL = Architecture(
    unet={
        "sample_size": 64,
        "block_out_channels": (320, 640, 1280, 1280),
        "layers_per_block": 2,
        "cross_attention_dim": 768,
        "attention_head_dim": 8,
    },
    vae={
        "block_out_channels": (128, 256, 512, 512),
        "down_block_types": ("DownEncoderBlock2D",) * 4,
        "up_block_types": ("UpDecoderBlock2D",) * 4,
        "layers_per_block": 2,
        "latent_channels": 4,
        "sample_size": 512,
    },
    text=[
        {
            "hidden_size": 768,
            "intermediate_size": 3072,
            "num_hidden_layers": 12,
            "num_attention_heads": 12,
            "projection_dim": 768,
        }
    ],
    vision={  # CLIP ViT-H/14, the encoder of ip-adapter_sd15
        "hidden_size": 1280,
        "intermediate_size": 5120,
        "num_hidden_layers": 32,
        "num_attention_heads": 16,
        "image_size": 224,
        "patch_size": 14,
        "projection_dim": 1024,
        "hidden_act": "gelu",
    },
    controlnet_embedding=(16, 32, 96, 256),
    ipadapter_subfolder="models",
    ipadapter_weight_name="ip-adapter_sd15.safetensors",
)
_SD15_TINY = Architecture(
    unet={
        "sample_size": 16,
        "block_out_channels": (32, 64),
        "layers_per_block": 1,
        "down_block_types": ("CrossAttnDownBlock2D", "DownBlock2D"),
        "up_block_types": ("UpBlock2D", "CrossAttnUpBlock2D"),
        "cross_attention_dim": 32,
        "attention_head_dim": 4,
        "norm_num_groups": 8,
    },
    vae={
        "block_out_channels": (8, 16, 16, 16),
        "down_block_types": ("DownEncoderBlock2D",) * 4,
        "up_block_types": ("UpDecoderBlock2D",) * 4,
        "layers_per_block": 1,
        "latent_channels": 4,
        "norm_num_groups": 8,
        "sample_size": 128,
    },
    text=[
        {
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 3,
            "num_attention_heads": 4,
            "projection_dim": 32,
        }
    ],
    vision={
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "image_size": 32,
        "patch_size": 8,
        "projection_dim": 16,
        "hidden_act": "quick_gelu",
    },
    controlnet_embedding=(8, 16, 32, 32),
    ipadapter_subfolder="models",
    ipadapter_weight_name="ip-adapter_sd15.safetensors",
)
_SDXL_UNET_COMMON = {
    "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    "up_block_types": ("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    "addition_embed_type": "text_time",
    "use_linear_projection": True,
}
_SDXL_FULL = Architecture(
    unet={
        **_SDXL_UNET_COMMON,
        "sample_size": 128,
        "block_out_channels": (320, 640, 1280),
        "layers_per_block": 2,
        "transformer_layers_per_block": (1, 2, 10),
        "attention_head_dim": (5, 10, 20),
        "cross_attention_dim": 2048,
        "addition_time_embed_dim": 256,
        "projection_class_embeddings_input_dim": 2816,
    },
    vae={**_SD15_FULL.vae, "sample_size": 1024, "scaling_factor": 0.13025},
    text=[
        {**_SD15_FULL.text[0]},
        {  # OpenCLIP bigG text tower
            "hidden_size": 1280,
            "intermediate_size": 5120,
            "num_hidden_layers": 32,
            "num_attention_heads": 20,
            "projection_dim": 1280,
            "hidden_act": "gelu",
        },
    ],
    vision={  # OpenCLIP bigG vision tower, the encoder of ip-adapter_sdxl
        "hidden_size": 1664,
        "intermediate_size": 8192,
        "num_hidden_layers": 48,
        "num_attention_heads": 16,
        "image_size": 224,
        "patch_size": 14,
        "projection_dim": 1280,
        "hidden_act": "gelu",
    },
    controlnet_embedding=(16, 32, 96, 256),
    ipadapter_subfolder="sdxl_models",
    ipadapter_weight_name="ip-adapter_sdxl.safetensors",
)
_SDXL_TINY = Architecture(
    unet={
        **_SDXL_UNET_COMMON,
        "sample_size": 16,
        "block_out_channels": (16, 32, 32),
        "layers_per_block": 1,
        "transformer_layers_per_block": (1, 1, 1),
        "attention_head_dim": (2, 4, 4),
        "cross_attention_dim": 64,  # 32 + 32: both text encoders side by side
        "addition_time_embed_dim": 8,
        "projection_class_embeddings_input_dim": 32 + 6 * 8,
        "norm_num_groups": 8,
    },
    vae=_SD15_TINY.vae,
    text=[_SD15_TINY.text[0], {**_SD15_TINY.text[0]}],
    vision=_SD15_TINY.vision,
    controlnet_embedding=(8, 16, 32, 32),
    ipadapter_subfolder="sdxl_models",
    ipadapter_weight_name="ip-adapter_sdxl.safetensors",
)


def build_bench_models(directory: Path, family: str = "sd15", size: str = "tiny") -> Path:
    """Build (once; stamped) and return `directory`. Builds on the GPU when there is one."""
    directory = Path(directory)
    stamp = directory / STAMP_NAME
    wanted = f"{BUILD_VERSION} {family} {size}"
    if stamp.is_file() and stamp.read_text(encoding="utf-8").strip() == wanted:
        return directory
    directory.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".partial-", dir=directory))
    try:
        _build(scratch, architecture(family, size), family, size)
        for part in sorted(scratch.iterdir()):
            target = directory / part.name
            if target.is_dir():
                shutil.rmtree(target)
            part.replace(target)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    stamp.write_text(wanted + "\n", encoding="utf-8")
    return directory


def model_settings(directory: Path, family: str) -> dict[str, str]:
    """The `models` section pointing the engine at a build."""
    arch = architecture(family, "tiny")
    return {
        "checkpoint": str(Path(directory) / "checkpoint"),
        "controlnet": str(Path(directory) / "controlnet"),
        "ipadapter": str(Path(directory) / "ip-adapter"),
        "ipadapter_subfolder": arch.ipadapter_subfolder,
        "ipadapter_weight_name": arch.ipadapter_weight_name,
        "image_encoder_folder": "image_encoder",
    }


def _build(folder: Path, arch: Architecture, family: str, size: str) -> None:
    import torch

    # Random init of ~2.5 G parameters is minutes on a CPU and seconds on a GPU.
    device = "cuda" if size == "full" and torch.cuda.is_available() else "cpu"
    dtype = torch.float16 if size == "full" else torch.float32
    torch.manual_seed(0)
    with torch.device(device):
        unet = _unet(arch)
        checkpoint = _checkpoint(arch, family, unet)
        controlnet = _controlnet(arch, unet)
        encoder, weights = _ip_adapter(arch, unet)
    if dtype != torch.float32:
        for model in (checkpoint, controlnet, encoder):
            model.to(dtype)
    checkpoint.save_pretrained(folder / "checkpoint", safe_serialization=True)
    controlnet.save_pretrained(folder / "controlnet", safe_serialization=True)
    models = folder / "ip-adapter" / arch.ipadapter_subfolder
    encoder.save_pretrained(models / "image_encoder", safe_serialization=True)
    from safetensors.torch import save_file
    from transformers import CLIPImageProcessor

    side = arch.vision["image_size"]
    CLIPImageProcessor(
        size={"shortest_edge": side}, crop_size={"height": side, "width": side}
    ).save_pretrained(models / "image_encoder")
    save_file(
        {k: v.to(dtype).contiguous().cpu() for k, v in weights.items()},
        str(models / arch.ipadapter_weight_name),
    )


def _unet(arch: Architecture) -> Any:
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(in_channels=4, out_channels=4, **arch.unet)


def _checkpoint(arch: Architecture, family: str, unet: Any) -> Any:
    from diffusers import (
        AutoencoderKL,
        StableDiffusionPipeline,
        StableDiffusionXLPipeline,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from evals.tiny_models import _build_tokenizer, sd_scheduler

    vae = AutoencoderKL(in_channels=3, out_channels=3, **arch.vae)
    tokenizer = _build_tokenizer(Path(tempfile.mkdtemp(prefix="bench-tokenizer-")))
    special = {
        "vocab_size": len(tokenizer),
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }
    configs = [CLIPTextConfig(**{**_TEXT_COMMON, **text, **special}) for text in arch.text]
    scheduler = sd_scheduler()
    if family == "sd15":
        return StableDiffusionPipeline(
            vae=vae,
            text_encoder=CLIPTextModel(configs[0]),
            tokenizer=tokenizer,
            unet=unet,
            scheduler=scheduler,
            safety_checker=None,
            feature_extractor=None,
            image_encoder=None,
            requires_safety_checker=False,
        )
    return StableDiffusionXLPipeline(
        vae=vae,
        text_encoder=CLIPTextModel(configs[0]),
        text_encoder_2=CLIPTextModelWithProjection(configs[1]),
        tokenizer=tokenizer,
        tokenizer_2=tokenizer,
        unet=unet,
        scheduler=scheduler,
        image_encoder=None,
        feature_extractor=None,
    )


def _controlnet(arch: Architecture, unet: Any) -> Any:
    from diffusers import ControlNetModel

    controlnet = ControlNetModel.from_unet(
        unet, conditioning_embedding_out_channels=arch.controlnet_embedding
    )
    # Trained ControlNets have non-zero output convs; zero ones would make the pose map a no-op.
    for name, parameter in controlnet.named_parameters():
        if name.startswith(("controlnet_down_blocks", "controlnet_mid_block")) or (
            name.startswith("controlnet_cond_embedding.conv_out")
        ):
            parameter.data.normal_(0.0, 0.02)
    return controlnet


def _ip_adapter(arch: Architecture, unet: Any) -> tuple[Any, dict[str, Any]]:
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    encoder = CLIPVisionModelWithProjection(CLIPVisionConfig(**arch.vision))
    from evals.tiny_models import ip_adapter_weights

    weights = ip_adapter_weights(
        unet, unet.config.cross_attention_dim, arch.vision["projection_dim"]
    )
    return encoder, weights
