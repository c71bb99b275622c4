"""The render actor of `anime-gen worker --ray`, on any node of the cluster.

It renders image specs in a home of its own (a temp folder) from what each task brings: the
specs, the character's record and reference bytes, the pose, the job's settings and the files
under the head's `<home>/models/` by content (each fetched once). It never reads the head's home;
it sends back PNG bytes, metadata and scores, which the head (`tools.jobs.ray_head`) saves.
"""

from __future__ import annotations

import io
import json
import os
import socket
import tempfile
import uuid
from pathlib import Path
from typing import Any

from tools.errors import UserError
from tools.jobs.faults import trigger
from tools.settings import load_settings

PLACEHOLDER = "/ray-pending"


def ray_module() -> Any:
    try:
        import ray
    except ImportError:
        raise UserError(
            "Ray is not installed", "pip install 'anime-chat[ray]' (on the head and every node)"
        ) from None
    return ray


class _ShippedPoses:
    """The poses a task brought, in place of the actor's own pose bank."""

    def __init__(self, poses: dict[str, Any]) -> None:
        self._poses = poses

    def get(self, pose_id: str) -> Any:
        return self._poses[pose_id]


class _CapturingStore:
    """The output store on an actor: keeps each image as PNG bytes for the head to save."""

    def __init__(self) -> None:
        self.saves: list[dict[str, Any]] = []

    def save(self, image: Any, meta: dict[str, Any], key: str | None = None) -> Path:
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        placeholder = f"{PLACEHOLDER}/{len(self.saves)}-{uuid.uuid4().hex[:8]}.png"
        self.saves.append(
            {"placeholder": placeholder, "key": key, "meta": meta, "png": buffer.getvalue()}
        )
        return Path(placeholder)


class RenderActor:
    """Renders image specs in a home of its own (a temp folder) from what each task brings."""

    def __init__(self, slot: str, config: dict[str, Any]) -> None:
        import yaml

        from tools.jobs.worker import Worker
        from tools.settings import CONFIG_FILENAME

        self.slot = slot
        self.home = Path(tempfile.mkdtemp(prefix="anime-actor-"))
        (self.home / CONFIG_FILENAME).write_text(yaml.safe_dump(config), encoding="utf-8")
        self.worker = Worker(load_settings(env={}, home=self.home), name=slot)
        self.files: dict[str, str] = {}  # relative path -> sha256 of what is there
        self.calibrated: set[str] = set()

    def host(self) -> dict[str, Any]:
        return {"host": socket.gethostname(), "pid": os.getpid()}

    def render(self, task: dict[str, Any]) -> dict[str, Any]:
        from tools.generation.producer import Producer
        from tools.generation.specs import ImageSpec

        ray = ray_module()
        for relative, (digest, ref) in task["files"].items():
            if self.files.get(relative) != digest:
                target = self.home / relative
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(ray.get(ref))
                self.files[relative] = digest
        self._write_characters(task["characters"])
        request = _local_paths(task["request"], task["path_map"], self.home)
        runtime = self.worker.runtime_for(self.worker.request_settings(request))
        store = _CapturingStore()
        producer = Producer(
            runtime.settings,
            engine=runtime.engine,
            gate=runtime.gate,
            store=store,
            index=runtime.index,
            characters=runtime.characters,
            poses=_ShippedPoses(task["poses"]),
        )
        for name in {spec["character"] for spec in task["specs"] if not spec.get("sheet")}:
            if name not in self.calibrated:
                runtime.gate.baseline(runtime.characters.get(name))
                self.calibrated.add(name)
        for spec in task["specs"]:
            kind = task["faults"].get(spec["index"])
            if kind is not None:
                trigger(kind, spec["index"])
        specs = [ImageSpec.model_validate(spec) for spec in task["specs"]]
        records = producer.produce_batch(specs)
        images = []
        for spec, record in zip(specs, records, strict=True):
            mine = [save for save in store.saves if _base_key(save["key"]) == spec.key]
            images.append(
                {"key": spec.key, "record": record.model_dump(mode="json"), "saves": mine}
            )
        return {"slot": self.slot, "host": socket.gethostname(), "images": images}

    def _write_characters(self, characters: dict[str, dict[str, Any]]) -> None:
        from tools.atomic import write_json_atomic
        from tools.characters.library import INDEX_FILENAME

        root = self.home / ".anime-characters"
        index = root / INDEX_FILENAME
        known = json.loads(index.read_text())["characters"] if index.exists() else []
        entries = {entry["name"]: entry for entry in known}
        for name, payload in characters.items():
            for filename, data in payload["references"].items():
                path = root / name / filename
                path.parent.mkdir(parents=True, exist_ok=True)
                if not path.exists() or path.read_bytes() != data:
                    path.write_bytes(data)
            entries[name] = payload["record"]
        write_json_atomic(index, {"version": 1, "characters": list(entries.values())})


def _base_key(key: str | None) -> str | None:
    return key.split("#rejected", 1)[0] if key else key


def _local_paths(value: Any, path_map: dict[str, str], home: Path) -> Any:
    """Settings values naming a shipped file of the head's home, made to name the actor's copy."""
    if isinstance(value, dict):
        return {key: _local_paths(item, path_map, home) for key, item in value.items()}
    if isinstance(value, list):
        return [_local_paths(item, path_map, home) for item in value]
    if isinstance(value, str) and value in path_map:
        return str(home / path_map[value])
    return value
