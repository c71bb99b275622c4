"""Where model weights come from: a hub id, a local diffusers folder, or a single checkpoint file.

Local things are found as given or under `<home>/models/`. Hub ids are served from the Hugging
Face cache when present; the first download prints one line with its size, then shows progress.
"""

from __future__ import annotations

import contextlib
import fnmatch
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from tools.engine.comfyui_folders import inside, is_dir, is_file
from tools.errors import UserError
from tools.user_paths import expand_user

if TYPE_CHECKING:
    from tools.settings import ModelSettings

CHECKPOINT_SUFFIXES = (".safetensors", ".ckpt")
# Architecture configs for converting a single-file checkpoint when the user named none.
SD15_CONFIG_REPO = "stable-diffusion-v1-5/stable-diffusion-v1-5"
CONFIG_PATTERNS = ["*.json", "*.txt"]
WEIGHT_PREFERENCE = (
    "diffusion_pytorch_model.safetensors",
    "model.safetensors",
    "diffusion_pytorch_model.bin",
    "pytorch_model.bin",
)


def image_encoder_subfolder(subfolder: str, image_encoder_folder: str) -> str:
    """Where `load_ip_adapter` looks for the image encoder, by diffusers' own rule: a folder
    name with a '/' is relative to the repository root, a bare name to `subfolder`."""
    if "/" in image_encoder_folder:
        return Path(image_encoder_folder).as_posix()
    return Path(subfolder, image_encoder_folder).as_posix()


def weight_patterns(models: ModelSettings, key: str) -> list[str]:
    """The weights files the loaders open for `models.<key>`; downloads and the cache probe
    both go by these, so what is fetched is exactly what counts as downloaded."""
    if key == "checkpoint":
        return ["unet/*", "vae/*", "text_encoder/*", "text_encoder_2/*"]
    if key == "controlnet":
        return ["diffusion_pytorch_model*"]
    if key == "ipadapter":
        subfolder = models.ipadapter_subfolder
        return [
            f"{subfolder}/{models.ipadapter_weight_name}",
            f"{image_encoder_subfolder(subfolder, models.image_encoder_folder)}/*",
        ]
    return ["*.safetensors"]


@dataclass(frozen=True)
class ModelSource:
    kind: Literal["hub", "dir", "file"]
    location: str

    @property
    def label(self) -> str:
        """A short name for metadata: the hub id, or the file/folder name."""
        return self.location if self.kind == "hub" else Path(self.location).name


def resolve_source(
    value: str, models_dir: Path, what: str, also: list[Path] | tuple[Path, ...] = ()
) -> ModelSource:
    """Classify `value` (a setting) as a local dir, a local file, or a hub id; a relative name
    is looked up in `models_dir`, then in the folders `also` (a ComfyUI install's)."""
    given = expand_user(value)
    candidates = (
        [given]
        if given.is_absolute()
        else [given, models_dir / given, *filter(None, (inside(d, given) for d in also))]
    )
    for candidate in candidates:
        if is_dir(candidate):
            if what == "checkpoint" and not (candidate / "model_index.json").is_file():
                # Any folder would pass here and fail in the worker, attempt after attempt.
                raise UserError(
                    f"checkpoint: {candidate} is a folder without model_index.json",
                    "name a diffusers model folder, a checkpoint file, or a hub id",
                )
            return ModelSource("dir", str(candidate.resolve()))
        if is_file(candidate):
            if candidate.suffix.lower() not in CHECKPOINT_SUFFIXES:
                raise UserError(
                    f"{what}: {candidate} is not a .safetensors or .ckpt file",
                    "name a checkpoint file, a diffusers folder, or a hub id",
                )
            return ModelSource("file", str(candidate.resolve()))
    if given.suffix.lower() in CHECKPOINT_SUFFIXES or given.is_absolute() or value.startswith("."):
        looked = " or ".join(str(c) for c in candidates)
        raise UserError(
            f"{what} not found: {looked}",
            f"put the file in {models_dir} or set models.{what} to its full path",
        )
    if value.count("/") == 1 and all(value.split("/")):
        return ModelSource("hub", value)
    raise UserError(
        f"{what} '{value}' is neither a local path nor a hub id (owner/name)",
        f"put the model in {models_dir} or use a hub id",
    )


def _pick_weights(files: list[str], patterns: list[str]) -> list[str]:
    """Config files plus, per folder, the one preferred weights file."""
    chosen = [f for f in files if any(fnmatch.fnmatch(f, p) for p in CONFIG_PATTERNS)]
    by_folder: dict[str, list[str]] = {}
    for name in files:
        if any(fnmatch.fnmatch(name, p) for p in patterns):
            folder, _, base = name.rpartition("/")
            by_folder.setdefault(folder, []).append(base)
    for folder, names in by_folder.items():
        for preferred in WEIGHT_PREFERENCE:
            if preferred in names:
                chosen.append(f"{folder}/{preferred}" if folder else preferred)
                break
        else:
            chosen.extend(f"{folder}/{n}" if folder else n for n in names)
    return chosen


def _needs_weights(folder: str, weight_patterns: list[str]) -> bool:
    """Whether a model folder (it has a config.json) is one the loaders open weights from."""
    names = (f"{folder}/{name}" if folder else name for name in WEIGHT_PREFERENCE)
    return any(fnmatch.fnmatch(name, p) for name in names for p in weight_patterns)


def _complete(present: list[str], chosen: list[str], weight_patterns: list[str]) -> bool:
    """Every file named outright is there, some weights are, and every model folder has its
    weights (a snapshot holding only `model_index.json`, fetched alone to detect the family,
    is not a download)."""
    if any(p not in present for p in weight_patterns if not any(c in p for c in "*?[")):
        return False
    configs = _configs(chosen)
    weighted = {name.rpartition("/")[0] for name in chosen if name not in configs}
    if not weighted:
        return False
    model_folders = {f.rpartition("/")[0] for f in present if f.rpartition("/")[2] == "config.json"}
    return all(
        folder in weighted for folder in model_folders if _needs_weights(folder, weight_patterns)
    )


def _configs(files: list[str]) -> set[str]:
    return {f for f in files if any(fnmatch.fnmatch(f, p) for p in CONFIG_PATTERNS)}


def cached_snapshot(repo_id: str, weight_patterns: list[str]) -> Path | None:
    """The cached snapshot of `repo_id` when it holds every file the loaders open, else None.

    Never asks the network. The downloads here are partial on purpose (one weights file per
    folder), so the question is put with exactly those files: asking for the whole repo makes
    huggingface_hub compare against the full remote listing and call the snapshot incomplete.
    """
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        folder = Path(
            snapshot_download(repo_id, allow_patterns=CONFIG_PATTERNS, local_files_only=True)
        )
        present = [p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()]
        chosen = _pick_weights(present, weight_patterns)
        if not _complete(present, chosen, weight_patterns):
            return None
        return Path(snapshot_download(repo_id, allow_patterns=chosen, local_files_only=True))
    except (LocalEntryNotFoundError, OSError, ValueError):
        return None


def fetch_hub(repo_id: str, weight_patterns: list[str], what: str) -> Path:
    """A local snapshot of `repo_id`: from the cache, else downloaded with a size note."""
    from huggingface_hub import HfApi, snapshot_download

    cached = cached_snapshot(repo_id, weight_patterns)
    if cached is not None:
        return cached
    try:
        info = HfApi().model_info(repo_id, files_metadata=True)
    except Exception as exc:  # network down, repo gone, auth: all are "cannot download"
        raise UserError(
            f"{what} '{repo_id}' is not downloaded and cannot be fetched "
            f"({exc.__class__.__name__})",
            "connect to the internet once, or point the setting at a local file or folder "
            "(see `anime-gen doctor`)",
        ) from None
    sizes = {s.rfilename: s.size or 0 for s in info.siblings or []}
    wanted = _pick_weights(list(sizes), weight_patterns)
    total = sum(sizes[name] for name in wanted)
    print(
        f"downloading {what} {repo_id} ({total / 1e9:.2f} GB) into the Hugging Face cache, once",
        file=sys.stderr,
    )
    with _download_progress_shown():
        return Path(snapshot_download(repo_id, allow_patterns=wanted))


@contextlib.contextmanager
def _download_progress_shown() -> Iterator[None]:
    """Show the client's progress bar for a download even where a loader silenced the Hub's
    bars for good (transformers' `disable_progress_bar` does, e.g. in the pose search); a user's
    HF_HUB_DISABLE_PROGRESS_BARS=1 still wins."""
    from huggingface_hub import constants
    from huggingface_hub.utils import (
        are_progress_bars_disabled,
        disable_progress_bars,
        enable_progress_bars,
    )

    silenced = are_progress_bars_disabled() and constants.HF_HUB_DISABLE_PROGRESS_BARS is not True
    if silenced:
        enable_progress_bars()
    try:
        yield
    finally:
        if silenced:
            disable_progress_bars()


def local_path(source: ModelSource, weight_patterns: list[str], what: str) -> Path:
    if source.kind == "hub":
        return fetch_hub(source.location, weight_patterns, what)
    return Path(source.location)


def is_hub_id(value: str) -> bool:
    """`owner/name`, not a relative path (LoRAs and the VAE take either)."""
    return value.count("/") == 1 and all(value.split("/")) and not value.startswith((".", "~"))
