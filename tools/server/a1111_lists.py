"""The lists A1111 clients read (`GET /sdapi/v1/sd-models`, `samplers`, ...), from our models.

Each item has the fields of A1111's own item model (`SDModelItem`, `SamplerItem`, ... in
AUTOMATIC1111/stable-diffusion-webui `modules/api/models.py`), so a client's parser finds what it
expects; the values are ours: the configured checkpoint and the files in `<home>/models/`.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

from tools.engine.extra_networks import available_embeddings, lora_folder
from tools.engine.model_sources import CHECKPOINT_SUFFIXES
from tools.engine.samplers import SAMPLER_TABLE
from tools.engine.vae import VAE_SUFFIXES
from tools.settings import Settings
from tools.user_paths import expand_user

LATENT_MODES = ("Latent", "Latent (antialiased)", "Latent (bicubic)", "Latent (nearest)")
# A safetensors header is tiny; anything claiming more is not one (never read it whole).
MAX_HEADER_BYTES = 1 << 20


def checkpoint_title(settings: Settings) -> str:
    """The configured checkpoint as A1111 titles it (the file or folder name, or the hub id)."""
    value = settings.models.checkpoint
    return Path(value).name if expand_user(value).exists() else value


def sd_models(settings: Settings) -> list[dict[str, Any]]:
    """The configured checkpoint, then the checkpoint files in `<home>/models/`."""
    items = [_model_item(checkpoint_title(settings), settings.models.checkpoint)]
    folder = settings.paths.models
    if folder.is_dir():
        for file in sorted(folder.iterdir()):
            checkpoint = file.is_file() and file.suffix.lower() in CHECKPOINT_SUFFIXES
            if checkpoint and "vae" not in file.stem.lower() and file.name != items[0]["title"]:
                items.append(_model_item(file.name, str(file)))
    return items


def known_names(settings: Settings) -> dict[str, dict[str, str]]:
    """What a client may send back from our lists → the file: checkpoint titles and model
    names (`sd_model_checkpoint`), VAE model names (`sd_vae`)."""
    checkpoints: dict[str, str] = {}
    for item in sd_models(settings):
        checkpoints.setdefault(item["title"], item["filename"])
        checkpoints.setdefault(item["model_name"], item["filename"])
    vaes = {item["model_name"]: item["filename"] for item in sd_vae(settings)}
    return {"sd_model_checkpoint": checkpoints, "sd_vae": vaes}


def _model_item(title: str, filename: str) -> dict[str, Any]:
    return {
        "title": title,
        "model_name": Path(title).stem if Path(title).suffix else title,
        "hash": None,
        "sha256": None,
        "filename": filename,
        "config": None,
    }


def samplers() -> list[dict[str, Any]]:
    """A1111's sampler names (the schedule type is a separate list since A1111 1.9)."""
    seen: dict[str, list[str]] = {}
    for name, (_, label, _) in SAMPLER_TABLE.items():
        base = label.removesuffix(" Karras")
        seen.setdefault(base, []).append(name)
    return [{"name": base, "aliases": names, "options": {}} for base, names in seen.items()]


def schedulers() -> list[dict[str, Any]]:
    automatic = {"name": "automatic", "label": "Automatic", "aliases": None}
    karras = {"name": "karras", "label": "Karras", "aliases": None}
    return [
        {**automatic, "default_rho": -1.0, "need_inner_model": False},
        {**karras, "default_rho": 7.0, "need_inner_model": False},
    ]


def upscalers() -> list[dict[str, Any]]:
    """What `hr_upscaler` may name: a latent upscale or Lanczos (anything else uses Lanczos)."""
    names = ("None", "Lanczos", *LATENT_MODES)
    return [
        {"name": name, "model_name": None, "model_path": None, "model_url": None, "scale": 4.0}
        for name in names
    ]


def latent_upscale_modes() -> list[dict[str, str]]:
    return [{"name": name} for name in LATENT_MODES]


def sd_vae(settings: Settings) -> list[dict[str, str]]:
    """VAE files in `<home>/models/` (and `models/vae/`), plus the configured one."""
    items: dict[str, str] = {}
    if settings.models.vae:
        items[Path(settings.models.vae).name] = settings.models.vae
    for folder in (settings.paths.models, settings.paths.models / "vae"):
        if folder.is_dir():
            for file in sorted(folder.iterdir()):
                suffix_ok = file.suffix.lower() in VAE_SUFFIXES
                if file.is_file() and suffix_ok and "vae" in file.name.lower():
                    items.setdefault(file.name, str(file))
    return [{"model_name": name, "filename": path} for name, path in items.items()]


def loras(settings: Settings) -> list[dict[str, Any]]:
    folder = lora_folder(settings.paths)
    if not folder.is_dir():
        return []
    return [
        {"name": file.stem, "alias": file.stem, "path": str(file), "metadata": {}}
        for file in sorted(folder.iterdir())
        if file.is_file() and file.suffix.lower() == ".safetensors"
    ]


def embeddings(settings: Settings) -> dict[str, Any]:
    loaded = {}
    for name, file in available_embeddings(settings.paths).items():
        vectors, shape = _embedding_shape(file)
        loaded[name] = {
            "step": None,
            "sd_checkpoint": None,
            "sd_checkpoint_name": None,
            "shape": shape,
            "vectors": vectors,
        }
    return {"loaded": loaded, "skipped": {}}


def _embedding_shape(file: Path) -> tuple[int, int]:
    """(vectors, width) of an embedding's first tensor, from a safetensors header; (0, 0) when
    the file is not one (a `.pt` needs torch to read, and this is the light side)."""
    try:
        with file.open("rb") as handle:
            (length,) = struct.unpack("<Q", handle.read(8))
            if length > MAX_HEADER_BYTES:
                return 0, 0
            header = json.loads(handle.read(length))
    except (OSError, ValueError, struct.error):
        return 0, 0
    # The file's JSON may be anything: only a mapping of tensors with two whole sides counts.
    for name, entry in header.items() if isinstance(header, dict) else ():
        shape = entry.get("shape") if isinstance(entry, dict) and name != "__metadata__" else None
        if isinstance(shape, list) and len(shape) == 2 and all(type(n) is int for n in shape):
            return shape[0], shape[1]
    return 0, 0
