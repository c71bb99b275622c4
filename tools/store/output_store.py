"""Where images land: `<home>/anime-output/YYYY-MM-DD/<character>_<posture>_<NNN>.png`.

A name is reserved in the generation index (one writer at a time, across processes) before the
file is written, so two runs never pick the same name and nothing is overwritten. The file is
written to a temp name and renamed into place; only then is the row marked saved. A reserved
key (one image of one job) always maps to the same path, which makes a retry after a crash
rewrite that image instead of adding a duplicate.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import time
from collections.abc import Callable, Mapping
from datetime import date
from pathlib import Path
from typing import Any

from PIL import Image
from PIL.PngImagePlugin import PngInfo

from tools.atomic import write_atomic
from tools.engine.samplers import a1111_sampler_and_schedule
from tools.settings import Settings
from tools.store.a1111_fields import second_pass_fields
from tools.store.gen_index import GenerationIndex
from tools.store.metadata import ImageMetadata
from tools.store.png_check import check_png
from tools.store.png_chunks import SOURCE_PNG, with_text_chunks
from tools.store.png_text import read_png_text

METADATA_KEY = "anime-chat"


def png_parameters(meta: ImageMetadata) -> str:
    """The `parameters` text in A1111's own spelling, so A1111, Civitai and image browsers read it.

    Our own fields (pose, IP-Adapter...) follow as extra `Key: value` entries; a value holding a
    comma or a colon is quoted the way A1111 quotes its `Lora hashes`.
    """
    sampler, schedule = a1111_sampler_and_schedule(meta.sampler)
    fields: list[tuple[str, Any]] = [
        ("Steps", meta.steps),
        ("Sampler", sampler),
        ("Schedule type", schedule),
        ("CFG scale", meta.guidance_scale),
        ("Seed", meta.seed),
        ("Size", f"{meta.width}x{meta.height}"),
        ("Model", meta.model),
        ("Clip skip", meta.clip_skip),
    ]
    fields += second_pass_fields(meta.record())
    if meta.loras:
        fields.append(("Lora weights", ", ".join(f"{x.name}: {x.weight}" for x in meta.loras)))
    if meta.vae:
        fields.append(("VAE", meta.vae))
    fields += [
        (
            "ControlNet 0",
            f"Module: none, Model: {meta.controlnet}, Weight: {meta.controlnet_strength}",
        ),
        ("IP-Adapter", meta.ipadapter),
        ("IP-Adapter weight", meta.ipadapter_weight),
        ("Pose", meta.pose.id),
        ("Pose tags", "|".join(meta.pose.tags)),
        ("Character", meta.character),
    ]
    if meta.loras:
        fields.append(("Loras", "|".join(f"{x.name}:{x.weight:g}" for x in meta.loras)))
    if meta.embeddings:
        fields.append(("Embeddings", "|".join(meta.embeddings)))
    fields += [
        (name.capitalize(), value) for name, value in meta.scores.items() if value is not None
    ]
    body = ", ".join(
        f"{name}: {_a1111_value(value)}" for name, value in fields if value is not None
    )
    return f"{meta.prompt}\nNegative prompt: {meta.negative_prompt}\n{body}"


def _a1111_value(value: Any) -> str:
    text = str(value)
    if any(char in text for char in ',:"\n'):
        return json.dumps(text)
    return text


def read_png_metadata(path: Path) -> dict[str, str]:
    """The PNG's text chunks; no pixel is decoded (tools/store/png_text.py)."""
    return read_png_text(path)


class OutputStore:
    def __init__(self, settings: Settings, index: GenerationIndex) -> None:
        self.root = settings.paths.output
        self.organize_by_date = settings.output.organize_by_date
        self.index = index

    def folder_for(self, accepted: bool, day: date | None = None) -> Path:
        base = self.root if accepted else self.root / "rejected"
        if self.organize_by_date:
            return base / (day or date.today()).isoformat()
        return base

    def save(
        self, image: Image.Image, meta: ImageMetadata | Mapping[str, Any], key: str | None = None
    ) -> Path:
        """Write one image with its metadata; returns its final path."""
        source = image.info.get(SOURCE_PNG)
        if isinstance(source, bytes):
            # Another renderer's PNG (ComfyUI's, with its own `prompt` chunk), kept unchanged.
            return self.save_png(source, meta, key)

        def write(path: Path, texts: dict[str, str]) -> None:
            info = PngInfo()
            for name, value in texts.items():
                info.add_text(name, value)
            write_atomic(path, lambda handle: image.save(handle, format="PNG", pnginfo=info))

        return self._save(ImageMetadata.of(meta), key, write)

    def save_png(
        self, png: bytes, meta: ImageMetadata | Mapping[str, Any], key: str | None = None
    ) -> Path:
        """Write PNG bytes made elsewhere (a Ray actor, ComfyUI) as they are: only our text
        chunks are added or replaced, the pixel data is not decoded nor re-encoded."""
        check_png(png)  # a broken PNG fails here, before a name is reserved for it
        return self._save(
            ImageMetadata.of(meta),
            key,
            lambda path, texts: write_atomic(
                path, lambda handle: handle.write(with_text_chunks(png, texts))
            ),
        )

    def _save(
        self, meta: ImageMetadata, key: str | None, write: Callable[[Path, dict[str, str]], None]
    ) -> Path:
        for part in (meta.character, meta.posture, meta.collection):
            _check_name_part(part)
        path = self._reserve(meta, key)
        texts = {
            "parameters": png_parameters(meta),
            METADATA_KEY: json.dumps(meta.record(path=str(path))),
        }
        write(path, texts)
        self.index.mark_saved(path)
        if meta.accepted and meta.character:  # a plain image (no character) has no view
            link_view(path, self.root / "characters" / meta.character, self.organize_by_date)
            if meta.collection:
                link_view(path, self.root / "collections" / meta.collection, self.organize_by_date)
        return path

    def sweep_stale_temp_files(self, older_than: float = 600.0) -> int:
        """Remove temp files left by a write that was killed mid-way (they are never images)."""
        if not self.root.exists():
            return 0
        cutoff = time.time() - older_than
        removed = 0
        for temp in self.root.rglob(".*.tmp"):
            with contextlib.suppress(OSError):
                if temp.stat().st_mtime < cutoff:
                    temp.unlink()
                    removed += 1
        return removed

    def _reserve(self, meta: ImageMetadata, key: str | None) -> Path:
        folder = self.folder_for(meta.accepted)
        folder.mkdir(parents=True, exist_ok=True)
        stem = "_".join(part for part in (meta.character, meta.posture) if part)
        with self.index.transaction() as connection:
            if key is not None:
                row = connection.execute("SELECT path FROM images WHERE key = ?", (key,)).fetchone()
                if row:
                    return Path(row["path"])
            taken = self.index.paths_with_prefix(connection, folder, stem)
            taken += [str(p) for p in folder.glob(f"{stem}_*.png")]
            number = 1 + max((_number(stem, p) for p in taken), default=0)
            path = folder / f"{stem}_{number:03d}.png"
            self.index.reserve(connection, path, key, meta)
        return path


def _check_name_part(part: str | None) -> None:
    """The record's names become parts of file and folder names (`_reserve`, `link_view`):
    metadata from elsewhere (a Ray actor) must not name a path out of the output folder."""
    if part and (part in (".", "..") or any(c in part for c in "/\\\x00")):
        raise ValueError(f"{part!r} cannot be part of an image's file name")


def link_view(target: Path, view: Path, organize_by_date: bool) -> None:
    """Link `target` into the view folder (a symlink, else a hard link); kept if there."""
    view.mkdir(parents=True, exist_ok=True)
    # Names repeat across days; the view is flat, so it carries the day in the name.
    name = f"{target.parent.name}_{target.name}" if organize_by_date else target.name
    link = view / name
    if link.is_symlink() or link.exists():
        return
    relative = os.path.relpath(target, view)
    try:
        link.symlink_to(relative)
    except OSError:
        os.link(target, link)


def _number(stem: str, path: str) -> int:
    match = re.fullmatch(re.escape(stem) + r"_(\d+)\.png", Path(path).name)
    return int(match[1]) if match else 0
