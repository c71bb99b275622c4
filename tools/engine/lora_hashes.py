"""LoRA and embedding hashes as A1111 records them (`Lora hashes: "name: 0123456789ab"`, `TI
hashes: "name: 0123456789ab"`), so Civitai and image browsers can tell which drew an image.

A1111's hash of a `.safetensors` LoRA is kohya's "addnet" hash: the SHA-256 of the file after its
JSON header (so editing the metadata keeps it), or the `sshs_model_hash` the trainer stored in that
header; the short form is its first 12 hex digits. An embedding's is the SHA-256 of the whole file
(A1111 modules/textual_inversion/textual_inversion.py `set_hash(hashes.sha256(...))`), short form
12 digits too. Hashes are cached per file path, size and mtime:
a LoRA of hundreds of MB is read once per process.
"""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from tools.engine.extra_networks import available_embeddings, lora_folder
from tools.user_paths import expand_user

if TYPE_CHECKING:
    from tools.engine.prompt_syntax import LoraRequest
    from tools.settings import Paths

SHORT_HASH = 12
_cache: dict[tuple[str, str, int, int], str] = {}


def addnet_hash(path: Path) -> str:
    """The full A1111/kohya hash of a `.safetensors` file."""
    return _cached(path, "addnet", _compute)


def file_digest(path: Path) -> str:
    """The SHA-256 of the whole file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_hash(path: Path) -> str:
    """The SHA-256 of the whole file (A1111's `hashes.sha256`, used for embeddings), cached."""
    return _cached(path, "sha256", file_digest)


def _cached(path: Path, kind: str, compute: Callable[[Path], str]) -> str:
    stat = path.stat()
    key = (kind, str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _cache:
        _cache[key] = compute(path)
    return _cache[key]


def _compute(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        (header_size,) = struct.unpack("<Q", handle.read(8))
        header = handle.read(header_size)
        stored = _stored_hash(header)
        if stored:
            return stored
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _stored_hash(header: bytes) -> str | None:
    try:
        metadata = json.loads(header).get("__metadata__") or {}
    except (ValueError, AttributeError):
        return None
    stored = metadata.get("sshs_model_hash")
    return stored if isinstance(stored, str) and stored else None


def local_lora_file(name: str, paths: Paths) -> Path | None:
    """The `.safetensors` file a LoRA name means on disk; None for a hub id or a folder."""
    folder = lora_folder(paths)
    given = expand_user(name)
    candidates = [given] if given.is_absolute() else [folder / name, folder / f"{name}.safetensors"]
    return next((c for c in candidates if c.is_file() and c.suffix == ".safetensors"), None)


def lora_hashes(loras: tuple[LoraRequest, ...] | list[LoraRequest], paths: Paths) -> dict[str, str]:
    """{LoRA name as A1111 writes it (the file stem): short hash} for the local LoRA files."""
    hashes = {}
    for lora in loras:
        file = local_lora_file(lora.name, paths)
        if file is not None:
            hashes[file.stem] = addnet_hash(file)[:SHORT_HASH]
    return hashes


def embedding_hashes(names: list[str], paths: Paths) -> dict[str, str]:
    """{embedding name as A1111 writes it: short hash} for the installed embeddings `names`.

    A1111 modules/sd_hijack_clip.py `forward` (lines 237-250) writes the embeddings a prompt
    used as `TI hashes`, each name without ':' and ','."""
    files = available_embeddings(paths)
    hashes = {}
    for name in names:
        if name in files:
            written = name.replace(":", "").replace(",", "")
            hashes[written] = file_hash(files[name])[:SHORT_HASH]
    return hashes
