"""Tiny random-weight models in the formats real users have, for tests and evals on a CPU.

`python -m evals.tiny_models DIR` (or `build_tiny_models(DIR)`) writes, with no download:

- `sd15/`: a diffusers StableDiffusion folder with SD1.5's structure at toy sizes;
- `sd15.safetensors`: the same weights as one original-LDM (A1111/ComfyUI) checkpoint;
- `controlnet/`: a ControlNet made from that UNet;
- `ip-adapter/models/`: a plain IP-Adapter and its CLIP image encoder;
- `aesthetic/`: an image classifier with the labels `hq` / `lq`;
- `lora/tiny.safetensors`: a character-style LoRA (kohya key layout, UNet and text encoder);
- `embeddings/TinyNegative.safetensors`: a textual-inversion embedding (A1111 `emb_params`);
- `vae.safetensors`: another VAE of the same architecture, as one original-layout file;
- `anime-config.yaml`: settings pointing at all of them, with quality thresholds noise passes.

Everything is seeded, so two builds are byte-identical. A finished build is stamped; building
again into a stamped folder only rewrites the config.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import tempfile
from itertools import pairwise
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:
    import torch

# Bump when anything below changes what is written, so stale builds are rebuilt.
BUILD_VERSION = "3"
STAMP_NAME = ".tiny-models-version"
CONFIG_NAME = "anime-config.yaml"
RESOLUTION = (128, 192)  # width, height of the config's default output
VAE_SCALE = 8
CROSS_DIM = 32
IMAGE_EMBED_DIM = 16  # the image encoder's projection size, the IP-Adapter's input
IP_TOKENS = 4  # a plain IP-Adapter always adds four image tokens
LORA_NAME = "tiny"
EMBEDDING_NAME = "TinyNegative"
EMBEDDING_VECTORS = 2
ENDOFTEXT = "<|endoftext|>"
STARTOFTEXT = "<|startoftext|>"

# Words that get a single token, so ordinary prompts fit in 77 tokens; others spell out.
_WHOLE_WORDS = """
a girl boy woman man anime portrait standing sitting smile hair eyes dress red blue green black
white long short masterpiece best quality high low worst lowres bad hands sky city school uniform
arms crossed looking at viewer
"""


def build_tiny_models(directory: Path) -> Path:
    """Build every tiny model into `directory` (idempotent) and return the config file's path."""
    directory = Path(directory).resolve()
    directory.mkdir(parents=True, exist_ok=True)
    if not _is_complete(directory):
        _build_all(directory)
    return _write_config(directory)


def _is_complete(directory: Path) -> bool:
    stamp = directory / STAMP_NAME
    return stamp.is_file() and stamp.read_text(encoding="utf-8").strip() == BUILD_VERSION


def _build_all(directory: Path) -> None:
    # Build in a scratch folder beside the result, then move each part in: a crash leaves no
    # half-written model where a reader would find it, and no stamp.
    from transformers.utils import logging as transformers_logging

    scratch = Path(tempfile.mkdtemp(prefix=".partial-", dir=directory))
    bars_were_on = transformers_logging.is_progress_bar_enabled()
    transformers_logging.disable_progress_bar()  # one "Writing model shards" bar per model
    try:
        pipe = _build_sd15(scratch / "sd15")
        _write_single_file(pipe, scratch / "sd15.safetensors")
        _build_controlnet(pipe.unet, scratch / "controlnet")
        _build_ip_adapter(pipe.unet, scratch / "ip-adapter" / "models")
        _build_aesthetic(scratch / "aesthetic")
        _build_extra_networks(pipe, scratch)
        for file in scratch.rglob("*"):
            if file.is_file():  # some writers make owner-only files; these are ordinary files
                file.chmod(0o644)
        for part in sorted(scratch.iterdir()):
            target = directory / part.name
            if target.is_dir():
                shutil.rmtree(target)
            os.replace(part, target)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        if bars_were_on:
            transformers_logging.enable_progress_bar()
    _write_atomic(directory / STAMP_NAME, BUILD_VERSION + "\n")


def _write_config(directory: Path) -> Path:
    width, height = RESOLUTION
    config = {
        "models": {
            "checkpoint": str(directory / "sd15"),
            "controlnet": str(directory / "controlnet"),
            "ipadapter": str(directory / "ip-adapter"),
            "ipadapter_subfolder": "models",
            "ipadapter_weight_name": "ip-adapter_sd15.safetensors",
            "image_encoder_folder": "image_encoder",
        },
        "output": {"resolution": f"{width}x{height}", "steps": 4},
        "quality": {
            "min_consistency": 0.0,
            "min_palette": 0.0,
            "require_face": False,
            "aesthetic_model": str(directory / "aesthetic"),
            "min_aesthetic": 0.0,
        },
    }
    path = directory / CONFIG_NAME
    _write_atomic(path, yaml.safe_dump(config, sort_keys=False))
    return path


def _write_atomic(path: Path, text: str) -> None:
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.chmod(temp, 0o644)  # mkstemp makes it owner-only; this is an ordinary file
    os.replace(temp, path)


def _seeded(seed: int) -> None:
    import torch

    torch.manual_seed(seed)


# --- Stable Diffusion 1.5 at toy size ---------------------------------------------------------


def _build_sd15(folder: Path) -> Any:
    from diffusers import (
        AutoencoderKL,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel

    width, _ = RESOLUTION
    _seeded(0)
    unet = UNet2DConditionModel(
        sample_size=width // VAE_SCALE,
        in_channels=4,
        out_channels=4,
        block_out_channels=(32, 64),
        layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=CROSS_DIM,
        attention_head_dim=4,
        norm_num_groups=8,
    )
    _seeded(1)
    vae = AutoencoderKL(
        sample_size=width,
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        block_out_channels=(8, 16, 16, 16),
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        layers_per_block=1,
        norm_num_groups=8,
    )
    tokenizer = _build_tokenizer(folder.parent / ".tokenizer-source")
    _seeded(2)
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tokenizer),
            hidden_size=CROSS_DIM,
            intermediate_size=64,
            num_hidden_layers=3,
            num_attention_heads=4,
            max_position_embeddings=77,
            projection_dim=CROSS_DIM,
            hidden_act="quick_gelu",
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
    )
    scheduler = sd_scheduler()
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        image_encoder=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(folder, safe_serialization=True)
    return pipe


def _bytes_to_unicode() -> dict[int, str]:
    """CLIP's byte → printable character table (the BPE's base alphabet)."""
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    table, extra = {}, 0
    for byte in range(256):
        if byte in printable:
            table[byte] = chr(byte)
        else:
            table[byte] = chr(256 + extra)
            extra += 1
    return table


def _bpe(word: str, merges: list[tuple[str, str]]) -> list[str]:
    """Split `word` the way CLIP's BPE does: apply the best-ranked merge until none applies."""
    ranks = {pair: rank for rank, pair in enumerate(merges)}
    pieces = list(word[:-1]) + [word[-1] + "</w>"]
    while len(pieces) > 1:
        best = min(pairwise(pieces), key=lambda pair: ranks.get(pair, len(ranks)))
        if best not in ranks:
            break
        merged, i = [], 0
        while i < len(pieces):
            if tuple(pieces[i : i + 2]) == best:
                merged.append(pieces[i] + pieces[i + 1])
                i += 2
            else:
                merged.append(pieces[i])
                i += 1
        pieces = merged
    return pieces


def _build_tokenizer(source: Path) -> Any:
    """A real `CLIPTokenizer` over a small vocabulary: every byte, plus some whole words."""
    from transformers import CLIPTokenizer

    alphabet = list(_bytes_to_unicode().values())
    vocab_tokens = alphabet + [char + "</w>" for char in alphabet]
    merges: list[tuple[str, str]] = []
    for word in _WHOLE_WORDS.split():
        # Add the merge of the first two pieces left over until the word is one `word</w>`:
        # each new merge ranks last, so it never changes how earlier words split.
        while len(pieces := _bpe(word, merges)) > 1:
            merges.append((pieces[0], pieces[1]))
            if pieces[0] + pieces[1] not in vocab_tokens:
                vocab_tokens.append(pieces[0] + pieces[1])
    vocab_tokens += [STARTOFTEXT, ENDOFTEXT]
    source.mkdir(parents=True, exist_ok=True)
    vocab = {token: index for index, token in enumerate(vocab_tokens)}
    (source / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    merges_text = "#version: 0.2\n" + "".join(f"{left} {right}\n" for left, right in merges)
    (source / "merges.txt").write_text(merges_text, encoding="utf-8")
    tokenizer = CLIPTokenizer.from_pretrained(
        str(source),
        local_files_only=True,  # also makes the saved tokenizer_config.json independent of env
        model_max_length=77,
        bos_token=STARTOFTEXT,
        eos_token=ENDOFTEXT,
        unk_token=ENDOFTEXT,
        pad_token=ENDOFTEXT,
    )
    shutil.rmtree(source)
    return tokenizer


# --- ControlNet, IP-Adapter, aesthetic classifier -----------------------------------------------


def _build_controlnet(unet: Any, folder: Path) -> None:
    from diffusers import ControlNetModel

    _seeded(3)
    controlnet = ControlNetModel.from_unet(
        unet, conditioning_embedding_out_channels=(8, 16, 32, 32)
    )
    # Trained ControlNets have non-zero output convs; zero ones would make the pose map a no-op.
    _seeded(4)
    for name, parameter in controlnet.named_parameters():
        if name.startswith(("controlnet_down_blocks", "controlnet_mid_block")) or (
            name.startswith("controlnet_cond_embedding.conv_out")
        ):
            parameter.data.normal_(0.0, 0.02)
    controlnet.save_pretrained(folder, safe_serialization=True)


def _build_ip_adapter(unet: Any, models: Path) -> None:
    import torch
    from safetensors.torch import save_file
    from transformers import (
        CLIPImageProcessor,
        CLIPVisionConfig,
        CLIPVisionModelWithProjection,
    )

    _seeded(5)
    encoder = CLIPVisionModelWithProjection(
        CLIPVisionConfig(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            image_size=32,
            patch_size=8,
            projection_dim=IMAGE_EMBED_DIM,
            hidden_act="quick_gelu",
        )
    )
    encoder.save_pretrained(models / "image_encoder", safe_serialization=True)
    CLIPImageProcessor(
        size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}
    ).save_pretrained(models / "image_encoder")

    generator = torch.Generator().manual_seed(6)
    weights = ip_adapter_weights(unet, CROSS_DIM, IMAGE_EMBED_DIM, generator)
    save_file(weights, str(models / "ip-adapter_sd15.safetensors"))


def sd_scheduler() -> Any:
    """Euler a with the SD1.x/SDXL training schedule (what real checkpoints ship)."""
    from diffusers import EulerAncestralDiscreteScheduler

    return EulerAncestralDiscreteScheduler(
        num_train_timesteps=1000,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        steps_offset=1,
        timestep_spacing="leading",
    )


def ip_adapter_weights(
    unet: Any, cross_dim: int, embed_dim: int, generator: Any = None
) -> dict[str, Any]:
    """A plain IP-Adapter state dict (random, small) matching `unet`'s cross-attention layers."""
    import torch

    def random(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=generator) * 0.02

    weights = {
        "image_proj.proj.weight": random(IP_TOKENS * cross_dim, embed_dim),
        "image_proj.proj.bias": torch.zeros(IP_TOKENS * cross_dim),
        "image_proj.norm.weight": torch.ones(cross_dim),
        "image_proj.norm.bias": torch.zeros(cross_dim),
    }
    # The loader numbers the cross-attention processors 1, 3, 5, … in `attn_processors` order.
    cross_attentions = [name for name in unet.attn_processors if name.endswith("attn2.processor")]
    for index, name in enumerate(cross_attentions):
        hidden = unet.get_submodule(name.removesuffix(".processor")).to_k.out_features
        key = 2 * index + 1
        weights[f"ip_adapter.{key}.to_k_ip.weight"] = random(hidden, cross_dim)
        weights[f"ip_adapter.{key}.to_v_ip.weight"] = random(hidden, cross_dim)
    return weights


def _build_aesthetic(folder: Path) -> None:
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

    _seeded(7)
    model = ViTForImageClassification(
        ViTConfig(
            image_size=32,
            patch_size=8,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            id2label={0: "hq", 1: "lq"},
            label2id={"hq": 0, "lq": 1},
        )
    )
    model.save_pretrained(folder, safe_serialization=True)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(folder)


def _build_extra_networks(pipe: Any, directory: Path) -> None:
    """The files users drop into `<home>/models/lora|embeddings/` and `models.vae`."""
    import torch
    from diffusers import AutoencoderKL
    from safetensors.torch import save_file

    from evals.tiny_lora import build_tiny_kohya_lora

    build_tiny_kohya_lora(
        pipe.unet, pipe.text_encoder, directory / "lora" / f"{LORA_NAME}.safetensors"
    )
    generator = torch.Generator().manual_seed(8)
    vectors = torch.randn(EMBEDDING_VECTORS, CROSS_DIM, generator=generator)
    (directory / "embeddings").mkdir()
    save_file(
        {"emb_params": vectors}, str(directory / "embeddings" / f"{EMBEDDING_NAME}.safetensors")
    )
    _seeded(9)
    vae = AutoencoderKL.from_config(pipe.vae.config)
    # Standalone VAE files (kl-f8-anime2, vae-ft-mse) hold the LDM keys without the prefix.
    weights = {
        key.removeprefix(LDM_VAE_PREFIX): tensor.contiguous()
        for key, tensor in vae_to_ldm(vae.state_dict(), vae.config).items()
    }
    save_file(weights, str(directory / "vae.safetensors"))


# --- diffusers → original LDM checkpoint --------------------------------------------------------
# The inverse of diffusers' `loaders/single_file_utils.py` (`convert_ldm_unet_checkpoint`,
# `convert_ldm_vae_checkpoint`, `convert_ldm_clip_checkpoint`), following the tables of
# `scripts/convert_diffusers_to_original_stable_diffusion.py`, generalised to any block count.

LDM_UNET_PREFIX = "model.diffusion_model."
LDM_VAE_PREFIX = "first_stage_model."
LDM_CLIP_PREFIX = "cond_stage_model.transformer.text_model."

_UNET_TOP_LEVEL = {
    "time_embedding.linear_1": "time_embed.0",
    "time_embedding.linear_2": "time_embed.2",
    "conv_in": "input_blocks.0.0",
    "conv_norm_out": "out.0",
    "conv_out": "out.2",
}
_UNET_RESNET = {
    "norm1": "in_layers.0",
    "conv1": "in_layers.2",
    "norm2": "out_layers.0",
    "conv2": "out_layers.3",
    "time_emb_proj": "emb_layers.1",
    "conv_shortcut": "skip_connection",
}
_VAE_ATTENTION = {
    "group_norm": "norm",
    "to_q": "q",
    "to_k": "k",
    "to_v": "v",
    "to_out.0": "proj_out",
}


def _write_single_file(pipe: Any, path: Path) -> None:
    from safetensors.torch import save_file

    unet, vae = pipe.unet, pipe.vae
    checkpoint = {
        **unet_to_ldm(unet.state_dict(), unet.config),
        **vae_to_ldm(vae.state_dict(), vae.config),
        **clip_to_ldm(pipe.text_encoder.state_dict()),
    }
    save_file({key: tensor.contiguous() for key, tensor in checkpoint.items()}, str(path))


def _split(key: str) -> tuple[str, str]:
    """'a.b.c.weight' → ('a.b.c', 'weight')."""
    module, _, leaf = key.rpartition(".")
    return module, leaf


def _rename_resnet(rest: str) -> str:
    head, _, tail = rest.partition(".")
    return f"{_UNET_RESNET.get(head, head)}.{tail}"


def unet_to_ldm(state: dict[str, torch.Tensor], config: Any) -> dict[str, torch.Tensor]:
    """Diffusers `UNet2DConditionModel` weights → `model.diffusion_model.*` keys."""
    per_block = config.layers_per_block + 1  # resnets (+ attentions), then a down/upsampler
    up_has_attention = ["CrossAttn" in kind for kind in config.up_block_types]
    converted = {}
    for key, tensor in state.items():
        module, leaf = _split(key)
        if module in _UNET_TOP_LEVEL:
            ldm = f"{_UNET_TOP_LEVEL[module]}.{leaf}"
        elif match := re.fullmatch(r"down_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.+)", key):
            block, kind, layer, rest = int(match[1]), match[2], int(match[3]), match[4]
            index = 1 + block * per_block + layer
            ldm = (
                f"input_blocks.{index}.0.{_rename_resnet(rest)}"
                if kind == "resnets"
                else f"input_blocks.{index}.1.{rest}"
            )
        elif match := re.fullmatch(r"down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.+)", key):
            ldm = f"input_blocks.{(int(match[1]) + 1) * per_block}.0.op.{match[2]}"
        elif match := re.fullmatch(r"mid_block\.resnets\.(\d+)\.(.+)", key):
            ldm = f"middle_block.{2 * int(match[1])}.{_rename_resnet(match[2])}"
        elif match := re.fullmatch(r"mid_block\.attentions\.0\.(.+)", key):
            ldm = f"middle_block.1.{match[1]}"
        elif match := re.fullmatch(r"up_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.+)", key):
            block, kind, layer, rest = int(match[1]), match[2], int(match[3]), match[4]
            index = block * per_block + layer
            ldm = (
                f"output_blocks.{index}.0.{_rename_resnet(rest)}"
                if kind == "resnets"
                else f"output_blocks.{index}.1.{rest}"
            )
        elif match := re.fullmatch(r"up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.+)", key):
            block = int(match[1])
            # LDM puts the upsampler after the block's attention, when it has one.
            slot = 2 if up_has_attention[block] else 1
            ldm = f"output_blocks.{block * per_block + per_block - 1}.{slot}.conv.{match[2]}"
        else:
            raise ValueError(f"no LDM name for UNet weight '{key}'")
        converted[LDM_UNET_PREFIX + ldm] = tensor
    return converted


def vae_to_ldm(state: dict[str, torch.Tensor], config: Any) -> dict[str, torch.Tensor]:
    """Diffusers `AutoencoderKL` weights → `first_stage_model.*` keys."""
    blocks = len(config.up_block_types)
    converted = {}
    for key, tensor in state.items():
        ldm = key
        if match := re.fullmatch(r"(encoder|decoder)\.conv_norm_out\.(.+)", key):
            ldm = f"{match[1]}.norm_out.{match[2]}"
        elif match := re.fullmatch(r"encoder\.down_blocks\.(\d+)\.resnets\.(\d+)\.(.+)", key):
            ldm = f"encoder.down.{match[1]}.block.{match[2]}.{match[3]}"
        elif match := re.fullmatch(r"encoder\.down_blocks\.(\d+)\.downsamplers\.0\.(.+)", key):
            ldm = f"encoder.down.{match[1]}.downsample.{match[2]}"
        elif match := re.fullmatch(r"decoder\.up_blocks\.(\d+)\.resnets\.(\d+)\.(.+)", key):
            # LDM numbers the decoder's blocks from the bottom up.
            ldm = f"decoder.up.{blocks - 1 - int(match[1])}.block.{match[2]}.{match[3]}"
        elif match := re.fullmatch(r"decoder\.up_blocks\.(\d+)\.upsamplers\.0\.(.+)", key):
            ldm = f"decoder.up.{blocks - 1 - int(match[1])}.upsample.{match[2]}"
        elif match := re.fullmatch(r"(encoder|decoder)\.mid_block\.resnets\.(\d+)\.(.+)", key):
            ldm = f"{match[1]}.mid.block_{int(match[2]) + 1}.{match[3]}"
        elif match := re.fullmatch(r"(encoder|decoder)\.mid_block\.attentions\.0\.(.+)", key):
            module, leaf = _split(match[2])
            if module not in _VAE_ATTENTION:
                raise ValueError(f"no LDM name for VAE weight '{key}'")
            ldm = f"{match[1]}.mid.attn_1.{_VAE_ATTENTION[module]}.{leaf}"
            if tensor.ndim == 2:  # LDM's attention projections are 1×1 convolutions
                tensor = tensor[:, :, None, None]
        elif not re.fullmatch(
            r"(encoder|decoder)\.conv_(in|out)\.\w+|(post_)?quant_conv\.\w+", key
        ):
            raise ValueError(f"no LDM name for VAE weight '{key}'")
        ldm = ldm.replace("conv_shortcut", "nin_shortcut")
        converted[LDM_VAE_PREFIX + ldm] = tensor
    return converted


def clip_to_ldm(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Transformers `CLIPTextModel` weights → `cond_stage_model.transformer.text_model.*` keys."""
    # transformers 5 dropped the `text_model.` level; older versions still have it.
    return {LDM_CLIP_PREFIX + key.removeprefix("text_model."): t for key, t in state.items()}


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or args[0] in ("-h", "--help"):
        print("usage: python -m evals.tiny_models DIR", file=sys.stderr)
        return 2
    print(build_tiny_models(Path(args[0])))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
