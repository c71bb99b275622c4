"""The head of `anime-gen worker --ray`: leases images for each actor slot and commits results.

For each slot (one actor per GPU of the cluster, or `--slots N` CPU actors) the head leases
images from the journal under the slot's token, exactly as a local worker does, sends the actor
what the images need (`_task`), saves each image it sends back under its key (the head owns the
output store and the index) and commits it. A dead actor's leases fail (the job backs off like
after a crashed local worker) and a new actor takes the slot; a task that outlives
`worker.hang_timeout` per image (plus load time on a fresh actor) counts as a hang.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from tools.errors import UserError
from tools.jobs.faults import FaultPlan
from tools.jobs.heartbeat import load_allowance
from tools.jobs.job import Job, JobImage
from tools.jobs.journal import JobJournal
from tools.jobs.ray_actor import RenderActor, ray_module
from tools.settings import Settings, load_settings

log = logging.getLogger("anime.ray")

NAMESPACE = "anime-chat"
INFO_NAME = "ray.json"  # <state>/ray.json: the head's pid, cluster address and actor names
POLL_SECONDS = 0.2
BEAT_SECONDS = 1.0
# Files under <home>/models/ larger than this are not shipped: use a hub id or a shared path.
MAX_SHIPPED_BYTES = 1 << 30


@dataclass
class _InFlight:
    ref: Any
    job: Job
    images: list[JobImage]
    deadline: float


@dataclass
class _ActorSlot:
    name: str
    gpu: bool
    actor: Any = None
    actor_name: str = ""
    token: str = ""
    incarnation: int = 0
    inflight: _InFlight | None = None
    loaded: set[str] = field(default_factory=set)  # settings overrides it has rendered with
    # Answered once the actor runs: until then (no node has room for it, e.g. its node left)
    # the slot leases nothing, so no job fails for want of a place to run.
    started: Any = None
    ready: bool = False
    respawn_at: float = 0.0


def cluster_slots(slots: int | None) -> list[_ActorSlot]:
    """One slot per GPU of the cluster, or `slots` CPU slots (also where there is no GPU)."""
    if slots:
        return [_ActorSlot(f"ray-slot{n}", gpu=False) for n in range(slots)]
    gpus = int(ray_module().cluster_resources().get("GPU", 0))
    if not gpus:
        log.warning("the cluster has no GPU: one CPU actor (--slots N for more)")
        return [_ActorSlot("ray-slot0", gpu=False)]
    return [_ActorSlot(f"ray-gpu{n}", gpu=True) for n in range(gpus)]


class RayHead:
    def __init__(self, settings: Settings, slots: list[_ActorSlot], faults: FaultPlan) -> None:
        from tools.generation.runtime import Runtime

        self.settings = settings
        self.runtime = Runtime(settings)
        self.journal = JobJournal.for_state(settings.paths.state)
        self.slots = slots
        self.faults = faults
        self.stopping = False
        self._config = load_settings(env={}, home=settings.home).model_dump(mode="json")
        self._shipped: dict[tuple[str, float, int], tuple[str, Any]] = {}
        self._last_beat = 0.0

    # -- the loop ----------------------------------------------------------------------------
    def serve(self) -> int:
        ray = ray_module()
        try:
            while not self.stopping:
                for slot in self.slots:
                    if slot.actor is None and time.monotonic() >= slot.respawn_at:
                        self._spawn(slot)
                    if slot.actor is not None and not slot.ready:
                        self._check_started(slot)
                    if slot.ready and slot.inflight is None:
                        self._dispatch(slot)
                busy = [slot for slot in self.slots if slot.inflight is not None]
                if not busy:
                    time.sleep(POLL_SECONDS)
                    continue
                refs = [slot.inflight.ref for slot in busy]  # type: ignore[union-attr]
                ready, _ = ray.wait(refs, num_returns=1, timeout=POLL_SECONDS)
                for slot in busy:
                    assert slot.inflight is not None
                    if slot.inflight.ref in ready:
                        self._collect(slot)
                    elif time.monotonic() > slot.inflight.deadline:
                        self._hung(slot)
                self._beat()
        finally:
            self._stop()
        return 0

    def _spawn(self, slot: _ActorSlot) -> None:
        ray = ray_module()
        slot.incarnation += 1
        slot.actor_name = f"{slot.name}-{slot.incarnation}"
        slot.token = f"{slot.name}:{uuid.uuid4().hex[:12]}"
        slot.loaded = set()
        resources = {"num_gpus": 1, "num_cpus": 1} if slot.gpu else {"num_cpus": 1}
        slot.actor = (
            ray.remote(RenderActor)
            .options(name=slot.actor_name, max_restarts=0, **resources)
            .remote(slot.name, self._config)
        )
        slot.started, slot.ready = slot.actor.host.remote(), False
        log.info("starting actor %s", slot.actor_name)
        self._write_info()

    def _check_started(self, slot: _ActorSlot) -> None:
        ray = ray_module()
        ready, _ = ray.wait([slot.started], timeout=0)
        if not ready:
            return
        try:
            where = ray.get(slot.started)
        except ray.exceptions.RayError as error:
            log.warning("actor %s did not start (%s)", slot.actor_name, type(error).__name__)
            slot.actor, slot.respawn_at = None, time.monotonic() + 2.0
            return
        slot.ready = True
        log.info("actor %s runs on %s (pid %s)", slot.actor_name, where["host"], where["pid"])

    def _write_info(self) -> None:
        from tools.atomic import write_json_atomic

        ray = ray_module()
        info = {
            "pid": os.getpid(),
            "address": ray.get_runtime_context().gcs_address,
            "namespace": NAMESPACE,
            # What another driver needs to join a token-protected cluster (this file is 0600).
            "auth_token": os.environ.get("RAY_AUTH_TOKEN"),
            "actors": {slot.name: slot.actor_name for slot in self.slots if slot.actor_name},
        }
        write_json_atomic(self.settings.paths.state / INFO_NAME, info)

    def _dispatch(self, slot: _ActorSlot) -> None:
        claimed = self.journal.claim_images(
            slot.name, slot.token, os.getpid(), lambda request: self._batch_size(slot, request)
        )
        if claimed is None:
            return
        job, indices = claimed
        images = [image for image in job.images if image.index in indices]
        try:
            task = self._task(job, images)
        except UserError as error:
            self.journal.lease_failed(slot.token, str(error), 0, 0)
            return
        overrides_key = json.dumps(task["request"].get("settings"), sort_keys=True)
        timeout = self.settings.worker.hang_timeout
        grace = 0.0 if overrides_key in slot.loaded else load_allowance(timeout)
        slot.loaded.add(overrides_key)
        deadline = time.monotonic() + grace + timeout * len(images)
        slot.inflight = _InFlight(slot.actor.render.remote(task), job, images, deadline)
        self.journal.beat_lease(job.id, slot.token, {"image": indices[0], "phase": "rendering"})

    def _batch_size(self, slot: _ActorSlot, request: dict[str, Any]) -> int:
        if not slot.gpu:
            return 1
        captured = (request.get("settings") or {}).get("output") or {}
        size = captured.get("batch_size", self.settings.output.batch_size)
        return size if isinstance(size, int) else 4

    def _task(self, job: Job, images: list[JobImage]) -> dict[str, Any]:
        """Everything the actor needs for these images; nothing that points into our home."""
        names = {image.spec["character"] for image in images}
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
        files, path_map = self._files()
        return {
            "specs": [image.spec for image in images],
            # The settings captured at submit (or, from older jobs, the overrides).
            "request": {
                "settings": job.request.get("settings"),
                "overrides": job.request.get("overrides") or {},
            },
            "characters": characters,
            "poses": poses,
            "faults": faults,
            "files": files,
            "path_map": path_map,
        }

    def _files(self) -> tuple[dict[str, tuple[str, Any]], dict[str, str]]:
        """The files under <home>/models/ (LoRAs, embeddings, a VAE...), each put in the object
        store once per content; and head path -> relative path for settings naming them."""
        ray = ray_module()
        root = self.settings.paths.models
        files: dict[str, tuple[str, Any]] = {}
        path_map: dict[str, str] = {}
        if not root.is_dir():
            return files, path_map
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            stat = path.stat()
            if stat.st_size > MAX_SHIPPED_BYTES:
                continue
            stamp = (str(path), stat.st_mtime, stat.st_size)
            if stamp not in self._shipped:
                data = path.read_bytes()
                self._shipped[stamp] = (hashlib.sha256(data).hexdigest(), ray.put(data))
            relative = str(path.relative_to(self.settings.home))
            files[relative] = self._shipped[stamp]
            path_map[str(path)] = relative
        return files, path_map

    def _collect(self, slot: _ActorSlot) -> None:
        ray = ray_module()
        inflight = slot.inflight
        assert inflight is not None
        slot.inflight = None
        worker = self.settings.worker
        try:
            result = ray.get(inflight.ref)
        except ray.exceptions.RayTaskError as error:
            cause = error.cause if isinstance(error.cause, BaseException) else error
            if isinstance(cause, UserError):
                self.journal.lease_failed(slot.token, str(cause), 0, 0)
                return
            reason = f"{type(cause).__name__}: {cause}".splitlines()[0]
            log.warning("job %s on %s: %s", inflight.job.id, slot.name, reason)
            self.journal.lease_failed(slot.token, reason, worker.max_attempts, worker.retry_backoff)
            return
        except ray.exceptions.RayError as error:
            self._lost(slot, f"ray actor {slot.name} died ({type(error).__name__})")
            return
        for item in result["images"]:
            self._commit(slot, inflight.job, item)

    def _commit(self, slot: _ActorSlot, job: Job, item: dict[str, Any]) -> None:
        """Save the actor's images under their keys (the head owns the store), then commit."""
        from PIL import Image

        from posebank.export import write_pose_files

        paths: dict[str, str] = {}
        for save in item["saves"]:
            meta = dict(save["meta"])
            if isinstance(meta.get("output"), dict):
                output = dict(meta["output"])
                output["rejected"] = [paths.get(p, p) for p in output.get("rejected", [])]
                meta["output"] = output
            with Image.open(io.BytesIO(save["png"])) as image:
                image.load()
                path = self.runtime.store.save(image, meta, key=save["key"])
            paths[save["placeholder"]] = str(path)
        record = dict(item["record"])
        record["path"] = paths.get(record["path"], record["path"])
        record["rejected"] = [paths.get(p, p) for p in record.get("rejected", [])]
        image = next(image for image in job.images if image.key == item["key"])
        character = self.runtime.characters.get(image.spec["character"])
        pose = self.runtime.poses.get(image.spec["pose"]["id"])
        if not (character.folder / "poses" / f"{pose.id}.json").exists():
            resolution = self.settings.output.resolution
            write_pose_files(pose, character.folder / "poses", resolution.width, resolution.height)
        self.runtime.index.set_worker(image.key, slot.name)
        self.journal.lease_done(job.id, image.index, slot.token, slot.name, record["path"], record)

    def _hung(self, slot: _ActorSlot) -> None:
        timeout = self.settings.worker.hang_timeout
        log.warning("%s: no result in time; killing its actor", slot.name)
        self._lost(slot, f"worker hung (no heartbeat for {timeout:g} s)")

    def _lost(self, slot: _ActorSlot, reason: str) -> None:
        """The slot's actor is gone or given up on: its images back to the queue, a new actor."""
        ray = ray_module()
        worker = self.settings.worker
        for job_id, state in self.journal.lease_failed(
            slot.token, reason, worker.max_attempts, worker.retry_backoff
        ).items():
            log.warning("job %s: %s -> %s", job_id, reason, state)
        with contextlib.suppress(Exception):
            ray.kill(slot.actor)
        slot.actor, slot.inflight, slot.ready = None, None, False

    def _beat(self) -> None:
        now = time.monotonic()
        if now - self._last_beat < BEAT_SECONDS:
            return
        self._last_beat = now
        for slot in self.slots:
            if slot.inflight is not None:
                self.journal.beat_lease(slot.inflight.job.id, slot.token)

    def _stop(self) -> None:
        ray = ray_module()
        for slot in self.slots:
            if slot.token:
                self.journal.release_leases(slot.token, requeue=True)
            if slot.actor is not None:
                with contextlib.suppress(Exception):
                    ray.kill(slot.actor)
        (self.settings.paths.state / INFO_NAME).unlink(missing_ok=True)
