"""Checkpoint families (SD1.5, SDXL): how to tell them apart, and each one's default models.

A ControlNet or IP-Adapter works with one family only, so the `models.*` settings the user
leaves unset take the checkpoint's family defaults (`models_for_family`), and a ControlNet or
IP-Adapter of the other family is one clear error (`check_controlnet_family`,
`check_ipadapter_family`) instead of a shape-mismatch traceback.

The family comes from the checkpoint itself: a diffusers folder's (or hub repo's)
`model_index.json`, or a single file's keys; never from words in its name.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tools.engine.model_sources import ModelSource
from tools.errors import UserError
from tools.settings import DEFAULT_CONTROLNET, ModelSettings, Settings

FAMILY_NAMES = {"sd15": "SD1.5", "sdxl": "SDXL"}


@dataclass(frozen=True)
class FamilyDefaults:
    controlnet: str
    ipadapter_subfolder: str
    ipadapter_weight_name: str


FAMILY_DEFAULTS = {
    "sd15": FamilyDefaults(
        controlnet=DEFAULT_CONTROLNET,
        ipadapter_subfolder="models",
        ipadapter_weight_name="ip-adapter_sd15.safetensors",
    ),
    "sdxl": FamilyDefaults(
        # OpenPose for SDXL in diffusers format (config.json + diffusion_pytorch_model.*).
        controlnet="xinsir/controlnet-openpose-sdxl-1.0",
        ipadapter_subfolder="sdxl_models",
        ipadapter_weight_name="ip-adapter_sdxl.safetensors",
    ),
}
# h94/IP-Adapter keeps the ViT-H encoder in models/ and the bigG one in sdxl_models/; the SDXL
# adapters trained on ViT-H (`*_vit-h.safetensors`) need the former.
VIT_H_ENCODER = "models/image_encoder"
OWN_ENCODER = "image_encoder"


def default_image_encoder_folder(weight_name: str) -> str:
    return VIT_H_ENCODER if "vit-h" in weight_name.lower() else OWN_ENCODER


def models_for_family(models: ModelSettings, family: str) -> ModelSettings:
    """`models` with every unset ControlNet / IP-Adapter setting filled from `family`."""
    defaults = FAMILY_DEFAULTS[family]
    weight_name = models.ipadapter_weight_name or defaults.ipadapter_weight_name
    return models.model_copy(
        update={
            "controlnet": models.controlnet or defaults.controlnet,
            "ipadapter_subfolder": models.ipadapter_subfolder or defaults.ipadapter_subfolder,
            "ipadapter_weight_name": weight_name,
            "image_encoder_folder": models.image_encoder_folder
            or default_image_encoder_folder(weight_name),
        }
    )


# -- detection ------------------------------------------------------------------------------------


def family_of_model_index(index: dict[str, Any]) -> str:
    return "sdxl" if "XL" in index.get("_class_name", "") else "sd15"


def family_for(settings: Settings, download: bool = True) -> str:
    """`models.family`, or detected from the checkpoint when it is `auto`."""
    from tools.engine.comfyui_folders import setting_dirs
    from tools.engine.model_sources import resolve_source

    models = settings.models
    if models.family != "auto":
        return models.family
    also = setting_dirs(settings.comfyui.root, "checkpoint")
    return detect_family(
        resolve_source(models.checkpoint, settings.paths.models, "checkpoint", also), download
    )


def detect_family(source: ModelSource, download: bool = True) -> str:
    """'sdxl' or 'sd15', from the folder's or hub repo's model index, or the file's keys.

    A hub repo's index is read from the cache, else downloaded unless `download` is False
    (then an uncached repo is a UserError)."""
    if source.kind == "dir":
        folder = Path(source.location)
        index = folder / "model_index.json"
        if index.is_file():
            return family_of_model_index(json.loads(index.read_text(encoding="utf-8")))
        return "sdxl" if (folder / "text_encoder_2").is_dir() else "sd15"
    if source.kind == "file":
        if not source.location.endswith(".safetensors"):
            return "sd15"
        from safetensors import safe_open

        with safe_open(source.location, framework="pt") as handle:
            keys = handle.keys()
        return "sdxl" if any(k.startswith("conditioner.embedders.1.") for k in keys) else "sd15"
    index = _hub_model_index(source.location, download)
    return family_of_model_index(json.loads(index.read_text(encoding="utf-8")))


def _hub_model_index(repo_id: str, download: bool) -> Path:
    """The repo's model_index.json: from the cache, else downloaded (a few hundred bytes)."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return Path(hf_hub_download(repo_id, "model_index.json", local_files_only=True))
    except LocalEntryNotFoundError:
        if not download:
            raise UserError(
                f"checkpoint '{repo_id}' is not downloaded yet: its family is not known",
                "it downloads on the first image (needs internet once)",
            ) from None
    try:
        return Path(hf_hub_download(repo_id, "model_index.json"))
    except Exception as exc:  # offline, repo gone, no model_index.json: all "cannot tell"
        raise UserError(
            f"checkpoint '{repo_id}': cannot read its model_index.json to tell SD1.5 from SDXL "
            f"({exc.__class__.__name__})",
            "connect to the internet once, or set models.family to sd15 or sdxl",
        ) from None


# -- mismatches -------------------------------------------------------------------------------


def controlnet_family(config: dict[str, Any]) -> str:
    """SDXL ControlNets condition on SDXL's added text/time embeddings, SD1.5 ones do not."""
    return "sdxl" if config.get("addition_embed_type") == "text_time" else "sd15"


def check_controlnet_family(folder: Path, family: str, label: str, checkpoint: str) -> None:
    config_file = folder / "config.json"
    if not config_file.is_file():
        return
    found = controlnet_family(json.loads(config_file.read_text(encoding="utf-8")))
    if found != family:
        raise mismatch("controlnet", label, found, family, checkpoint)


def check_ipadapter_family(
    weights: Path, cross_attention_dim: int, family: str, label: str, checkpoint: str
) -> None:
    """The adapter's key/value projections take the UNet's text width (768 SD1.5, 2048 SDXL)."""
    if weights.suffix != ".safetensors" or not weights.is_file():
        return
    from safetensors import safe_open

    with safe_open(str(weights), framework="pt") as handle:
        names = handle.keys()
        key = next((name for name in names if name.endswith("to_k_ip.weight")), None)
        if key is None:
            return
        width = handle.get_slice(key).get_shape()[1]
    if width != cross_attention_dim:
        other = "sd15" if family == "sdxl" else "sdxl"
        raise mismatch("ipadapter", label, other, family, checkpoint)


def mismatch(key: str, label: str, found: str, family: str, checkpoint: str) -> UserError:
    default = FAMILY_DEFAULTS[family]
    suggestion = (
        default.controlnet
        if key == "controlnet"
        else f"{default.ipadapter_subfolder}/{default.ipadapter_weight_name}"
    )
    return UserError(
        f"models.{key} {label} is for {FAMILY_NAMES[found]} but the checkpoint {checkpoint} is "
        f"{FAMILY_NAMES[family]}",
        f"leave models.{key} (and its subfolder/weight_name) unset for the "
        f"{FAMILY_NAMES[family]} default ({suggestion}), or name a {FAMILY_NAMES[family]} one",
    )


def configured_models(settings: Settings) -> ModelSettings:
    """The model settings filled for the checkpoint's family, for reports (`doctor`) that must
    not download: a hub checkpoint not downloaded yet counts as SD1.5 (the default family)."""
    try:
        family = family_for(settings, download=False)
    except UserError:
        family = "sd15"
    return models_for_family(settings.models, family)
