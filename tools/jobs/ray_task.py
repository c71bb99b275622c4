"""What the Ray head sends an actor for some images of a job: nothing that points into the
head's home. The files under `<home>/models/` go by content, and only those the job uses."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from tools.jobs.faults import FaultPlan
from tools.jobs.job import Job, JobImage
from tools.jobs.journal import JobJournal
from tools.jobs.ray_actor import ray_module
from tools.settings import Settings

# Files under <home>/models/ larger than this are not shipped: use a hub id or a shared path.
MAX_SHIPPED_BYTES = 1 << 30


class TaskBuilder:
    def __init__(
        self, settings: Settings, runtime: Any, journal: JobJournal, faults: FaultPlan
    ) -> None:
        self.settings = settings
        self.runtime = runtime
        self.journal = journal
        self.faults = faults
        self._shipped: dict[tuple[str, float, int], tuple[str, Any]] = {}

    def task(self, job: Job, images: list[JobImage]) -> dict[str, Any]:
        """Everything the actor needs for these images."""
        # A sheet image's character is not in the library yet, and a plain image has none.
        names = {
            image.spec["character"]
            for image in images
            if not image.spec.get("sheet") and not image.spec.get("plain")
        }
        characters = {}
        for name in names:
            character = self.runtime.characters.get(name)
            characters[name] = {
                "record": character.model_dump(mode="json"),
                "references": {
                    ref: (character.folder / ref).read_bytes() for ref in character.references
                },
            }
        poses = {
            image.spec["pose"]["id"]: self.runtime.poses.get(image.spec["pose"]["id"])
            for image in images
        }
        faults = {}
        for image in images:
            kind = self.faults.kind_for(
                job.id,
                image.index,
                image.tries,
                lambda index=image.index: self.journal.mark_fault_fired(job.id, index),
            )
            if kind is not None:
                faults[image.index] = kind
        request = {
            # The settings captured at submit (or, from older jobs, the overrides).
            "settings": job.request.get("settings"),
            "overrides": job.request.get("overrides") or {},
        }
        files, path_map = self.files(json.dumps([request, [i.spec for i in images]]))
        return {
            "specs": [image.spec for image in images],
            # A sheet image's reference goes by content; its path on the actor is the actor's.
            "sheet_references": {
                image.index: Path(image.spec["sheet"]["reference"]).read_bytes()
                for image in images
                if (image.spec.get("sheet") or {}).get("reference")
            },
            "request": request,
            "characters": characters,
            "poses": poses,
            "faults": faults,
            "files": files,
            "path_map": path_map,
            "low_memory": job.low_memory,
        }

    def files(self, text: str) -> tuple[dict[str, tuple[str, Any]], dict[str, str]]:
        """The files under <home>/models/ that `text` (the job's settings and specs) uses, each
        put in the object store once per content; and head path -> relative path."""
        ray = ray_module()
        home = self.settings.home.resolve()
        named = self._named_paths(text)
        files: dict[str, tuple[str, Any]] = {}
        path_map = {value: str(path.relative_to(home)) for value, path in named.items()}
        for path in self._used(text, set(named.values())):
            stat = path.stat()
            if stat.st_size > MAX_SHIPPED_BYTES:
                continue
            stamp = (str(path), stat.st_mtime, stat.st_size)
            if stamp not in self._shipped:
                data = path.read_bytes()
                self._shipped[stamp] = (hashlib.sha256(data).hexdigest(), ray.put(data))
            files[str(path.relative_to(home))] = self._shipped[stamp]
        return files, path_map

    def _used(self, text: str, named: set[Path]) -> list[Path]:
        """A file a setting names (or lies in a folder one names), a LoRA or embedding whose
        name the text uses as a word, and the usual negative embeddings (the default negative
        prompt names those present)."""
        from prompts import load_prompt
        from tools.engine.extra_networks import named_in

        root = self.settings.paths.models.resolve()
        if not root.is_dir():
            return []
        words = f"{text} {load_prompt('negative_embeddings')}"
        used = []
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            if any(path == p or p in path.parents for p in named) or named_in(words, [path.stem]):
                used.append(path)
        return used

    def _named_paths(self, text: str) -> dict[str, Path]:
        """The strings of the settings that name a path under <home>/models/, and the path."""
        root = self.settings.paths.models.resolve()
        named = {}
        for value in _strings(json.loads(text)):
            if "/" not in value:
                continue
            path = Path(value)
            if not path.is_absolute():
                path = self.settings.home / path
            path = path.resolve()
            if (path == root or root in path.parents) and path.exists():
                named[value] = path
        return named


def _strings(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [s for item in value.values() for s in _strings(item)]
    if isinstance(value, list):
        return [s for item in value for s in _strings(item)]
    return [value] if isinstance(value, str) else []
