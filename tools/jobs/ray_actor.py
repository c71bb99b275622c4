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
import shutil
import socket
import tempfile
import threading
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tools.errors import UserError
from tools.jobs.faults import trigger
from tools.settings import load_settings

if TYPE_CHECKING:
    from tools.generation.specs import ImageSpec

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
        from tools.store.png_chunks import SOURCE_PNG

        png = image.info.get(SOURCE_PNG)  # another renderer's PNG (ComfyUI's), kept unchanged
        if not isinstance(png, bytes):
            buffer = io.BytesIO()
            image.save(buffer, format="PNG")
            png = buffer.getvalue()
        placeholder = f"{PLACEHOLDER}/{len(self.saves)}-{uuid.uuid4().hex[:8]}.png"
        self.saves.append({"placeholder": placeholder, "key": key, "meta": meta, "png": png})
        return Path(placeholder)


class TaskCancelled(Exception):
    """The head cancelled the task (its job was cancelled or failed elsewhere)."""


def node_root() -> Path:
    """This node's folder for actor homes and shipped files (its temp dir: TMPDIR)."""
    return Path(tempfile.gettempdir()) / "anime-actors"


class RenderActor:
    """Renders image specs in a home of its own from what each task brings.

    Its home is `<node temp>/anime-actors/home-<pid>-<nonce>`; a killed actor runs no cleanup,
    so each new one removes the homes of dead actors on its node, and `cleanup` (the head calls
    it before it stops) removes its own. Shipped files are kept once per node by content
    (`files/<sha256>`) and linked into the homes that use them.
    """

    def __init__(self, slot: str, config: dict[str, Any]) -> None:
        import yaml

        from tools.jobs.worker import Worker
        from tools.settings import CONFIG_FILENAME

        self.slot = slot
        self.root = node_root()
        self.root.mkdir(parents=True, exist_ok=True)
        _sweep_dead_homes(self.root)
        self.home = self.root / f"home-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.home.mkdir()
        (self.home / CONFIG_FILENAME).write_text(yaml.safe_dump(config), encoding="utf-8")
        self.worker = Worker(load_settings(env={}, home=self.home), name=slot)
        self.files: dict[str, str] = {}  # relative path -> sha256 of what is there
        self.calibrated: set[str] = set()
        # Progress the head reads from another thread (the actor runs several calls at once):
        # a count that moves with every step and phase, whether models are loading, and which
        # task runs (the head keeps a second one waiting here, on the lock: one render at a
        # time, whatever order Ray's threads take them in).
        self.ticks = 0
        self.steps = 0  # steps of the task now
        self.loading = False
        self.running: str | None = None
        self._render_lock = threading.Lock()

    def host(self) -> dict[str, Any]:
        return {"host": socket.gethostname(), "pid": os.getpid(), "home": str(self.home)}

    def progress(self) -> dict[str, Any]:
        return {
            "ticks": self.ticks,
            "loading": self.loading,
            "steps": self.steps,
            "running": self.running,
        }

    def cleanup(self) -> None:
        """Remove this actor's home (and, if no other actor lives on this node, the files)."""
        shutil.rmtree(self.home, ignore_errors=True)
        _sweep_dead_homes(self.root)
        if not any(self.root.glob("home-*")):
            shutil.rmtree(self.root / "files", ignore_errors=True)

    def render(self, task: dict[str, Any]) -> dict[str, Any]:
        with self._render_lock:
            if ray_module().get_runtime_context().is_canceled():  # cancelled while it waited
                raise TaskCancelled(f"{self.slot}: cancelled by the head")
            self.running = task.get("token")
            try:
                return self._render(task)
            finally:
                self.running = None

    def _render(self, task: dict[str, Any]) -> dict[str, Any]:
        from tools.jobs.worker import is_out_of_memory

        self.ticks, self.steps = self.ticks + 1, 0
        self._fetch_files(task["files"])
        self._write_characters(task["characters"])
        request = _local_paths(task["request"], task["path_map"], self.home)
        self.loading = True
        try:
            runtime = self.worker.runtime_for(self.worker.request_settings(request))
            producer = self._producer(runtime, task)
            runtime.engine.pipe  # noqa: B018  (loading is the point: it is judged as loading)
            runtime.gate.aesthetic  # noqa: B018
            for name in task["characters"]:
                if name not in self.calibrated:
                    runtime.gate.baseline(runtime.characters.get(name))
                    self.calibrated.add(name)
            if task.get("low_memory") and not self.worker.low_memory:
                runtime.engine.use_less_memory()
                self.worker.low_memory = True
        finally:
            self.loading = False
        self.ticks += 1
        for spec in task["specs"]:
            kind = task["faults"].get(spec["index"])
            if kind is not None:
                trigger(kind, spec["index"])
        specs = [self._local_sheet(spec, task["sheet_references"]) for spec in task["specs"]]
        try:
            records = producer.produce_batch(specs, on_step=self._on_step)
        except Exception as error:
            if is_out_of_memory(error):
                from tools.jobs.worker import _free_device_memory

                _free_device_memory()
            raise
        images = []
        for spec, record in zip(specs, records, strict=True):
            mine = [save for save in producer.store.saves if _base_key(save["key"]) == spec.key]
            item = {"key": spec.key, "record": record.model_dump(mode="json"), "saves": mine}
            if spec.sheet is not None:  # written in this home: its bytes go to the head
                item["sheet_png"] = Path(spec.sheet.path).read_bytes()
            images.append(item)
        return {
            "slot": self.slot,
            "host": socket.gethostname(),
            "images": images,
            "baselines": self._baselines(runtime, task["characters"]),
        }

    def _local_sheet(self, spec: dict[str, Any], references: dict[int, bytes]) -> ImageSpec:
        """A sheet image is drawn into this home (and from its reference's copy here), not at
        the head's paths."""
        from tools.generation.specs import ImageSpec

        if not spec.get("sheet"):
            return ImageSpec.model_validate(spec)
        folder = self.home / "sheets"
        folder.mkdir(exist_ok=True)
        sheet = {**spec["sheet"], "path": str(folder / f"{spec['index']}.png")}
        if spec["index"] in references:
            reference = folder / f"{spec['index']}-reference.png"
            reference.write_bytes(references[spec["index"]])
            sheet["reference"] = str(reference)
        return ImageSpec.model_validate({**spec, "sheet": sheet})

    def _baselines(self, runtime: Any, names: dict[str, Any]) -> dict[str, dict[str, float]]:
        """The baselines this actor measured for the task's characters: the head stores them
        (this home's library is thrown away)."""
        fields = ("consistency_baseline", "palette_baseline")
        measured = {}
        for name in names:
            character = runtime.characters.get(name)
            values = {f: getattr(character, f) for f in fields if getattr(character, f) is not None}
            measured[name] = values
        return measured

    def _on_step(self, step: int, steps: int) -> None:
        self.ticks, self.steps = self.ticks + 1, self.steps + 1
        if ray_module().get_runtime_context().is_canceled():
            raise TaskCancelled(f"{self.slot}: cancelled by the head")

    def _producer(self, runtime: Any, task: dict[str, Any]) -> Any:
        from tools.generation.producer import Producer

        return Producer(
            runtime.settings,
            engine=runtime.engine,
            gate=runtime.gate,
            store=_CapturingStore(),
            index=runtime.index,
            characters=runtime.characters,
            poses=_ShippedPoses(task["poses"]),
        )

    def _fetch_files(self, files: dict[str, tuple[str, Any]]) -> None:
        """Link each shipped file into this home from the node's copy (fetched once per node)."""
        ray = ray_module()
        store = self.root / "files"
        store.mkdir(exist_ok=True)
        for relative, (digest, ref) in files.items():
            if self.files.get(relative) == digest:
                continue
            kept = store / digest
            if not kept.exists():
                partial = store / f".{digest}.{uuid.uuid4().hex[:8]}.part"
                partial.write_bytes(ray.get(ref))
                partial.replace(kept)
            target = self.home / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            target.unlink(missing_ok=True)
            os.link(kept, target)
            self.files[relative] = digest

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


def _sweep_dead_homes(root: Path) -> None:
    """Remove the homes of actors on this node whose process is gone (ray.kill, a crash)."""
    for home in root.glob("home-*"):
        pid = home.name.split("-")[1]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(home, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


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
