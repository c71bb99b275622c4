"""A render worker: the process that owns one GPU. It leases images of queued jobs and draws them.

It is started (and watched, and restarted) by `tools.jobs.supervisor`, one per GPU; each leases the
next pending images of the first runnable job (`batch_size` of them), so several workers share
one job. It beats its lease once per denoising step so the supervisor can tell a hang from slow
work. Images go through `Producer.produce_batch`,
`batch_size` at a time, which is idempotent on each image's key: a job retried after a crash skips
the images the journal has as done and redraws the interrupted ones under the same names, so
nothing is duplicated. Out of memory halves the batch; at one image, the retry slices the VAE.
After `worker.keep_alive` without work it exits, which frees the GPU.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
import traceback
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from tools.jobs.faults import FaultPlan
from tools.jobs.heartbeat import Heartbeat, Keepalive, RunEnded, load_allowance
from tools.jobs.job import Job
from tools.jobs.journal import JobJournal
from tools.settings import Settings, load_settings
from tools.settings import _explain as explain_settings_error

if TYPE_CHECKING:
    from tools.generation.runtime import Runtime
    from tools.generation.specs import ImageSpec, OutputRecord

log = logging.getLogger("anime.worker")

POLL_SECONDS = 0.2
EXIT_IDLE, EXIT_RESTART = 0, 3


def is_out_of_memory(error: BaseException) -> bool:
    return "out of memory" in str(error).lower() and isinstance(error, RuntimeError)


def is_device_broken(error: BaseException) -> bool:
    """A CUDA error other than OOM leaves the context unusable: only a new process helps."""
    return "cuda error" in str(error).lower() or "device-side assert" in str(error).lower()


class Worker:
    def __init__(
        self,
        settings: Settings,
        faults: FaultPlan | None = None,
        name: str = "local",
        token: str | None = None,
    ) -> None:
        import uuid

        from tools.generation.runtime import Runtime

        self.settings = settings
        # Who drew an image (the index and `anime-gen jobs` name it) and this process's lease.
        self.name = name
        self.token = token or f"{name}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.journal = JobJournal.for_state(settings.paths.state)
        self.faults = faults or FaultPlan([])
        self.base = Runtime(settings)
        self._runtimes: dict[str, Runtime] = {}
        self.low_memory = False
        # Images per engine call after an out-of-memory error halved it; None: the setting's.
        self.batch_limit: int | None = None
        self._calibrated: set[str] = set()

    def job_settings(self, job: Job) -> Settings:
        """The settings the submitter resolved (the config file as it was at submit time)."""
        return self.request_settings(job.request)

    def request_settings(self, request: dict[str, Any]) -> Settings:
        captured = request.get("settings")
        if captured is None:  # a job queued by a version that kept only the overrides
            overrides = request.get("overrides") or {}
            return load_settings(overrides=overrides, env={}, home=self.settings.home)
        try:
            settings = Settings.model_validate({**captured, "home": self.settings.home})
        except ValidationError as error:
            # A newer CLI's key reaching an older warm worker: that job fails with the reason
            # (not retried), the worker and the queue behind it go on.
            raise explain_settings_error(error, "the job's saved settings") from None
        return pin_comfyui(settings, self.settings)

    def runtime_for(self, settings: Settings) -> Runtime:
        """The runtime for a job's settings.

        Jobs whose settings render alike share the warm engine; one that needs another engine
        (other models or sampling) replaces it, so two pipelines never sit on the GPU at once.
        """
        import json

        from tools.generation.runtime import Runtime

        key = json.dumps(settings.model_dump(mode="json"), sort_keys=True)
        if key not in self._runtimes:
            if _engine_key(settings) == _engine_key(self.base.settings):
                runtime = Runtime(settings, engine=self.base.engine)
            else:
                runtime = Runtime(settings)
                self._runtimes.clear()
                self.base = runtime
                self.low_memory = False
                self.batch_limit = None
            self._runtimes[key] = runtime
        return self._runtimes[key]

    # -- the loop ------------------------------------------------------------------------------
    def serve(self, parent_pid: int | None = None) -> int:
        keep_alive = self.settings.worker.keep_alive
        swept = self.base.store.sweep_stale_temp_files()
        if swept:
            log.info("removed %d temp files left by interrupted writes", swept)
        from tools.engine.rendering import batch_size_for

        # Asked once now: it imports torch, which must not happen inside the claim's
        # transaction (where `_limit` runs), or the lease it stamps is stale on arrival.
        batch_size_for(self.settings)

        idle_since = time.monotonic()
        while True:
            if parent_pid is not None and os.getppid() != parent_pid:
                return EXIT_IDLE  # the supervisor is gone; it will recover our images
            claimed = self.journal.claim_images(self.name, self.token, os.getpid(), self._limit)
            if claimed is None:
                if time.monotonic() - idle_since > keep_alive:
                    log.info("idle for %.0f s: unloading and exiting", keep_alive)
                    return EXIT_IDLE
                time.sleep(POLL_SECONDS)
                continue
            if not self.run_images(*claimed):
                return EXIT_RESTART
            idle_since = time.monotonic()

    def _limit(self, request: dict[str, Any]) -> int:
        """Images to lease at once: the job's batch size, or less after out of memory."""
        from tools.engine.rendering import batch_size_for

        if self.batch_limit:
            return self.batch_limit
        try:
            return batch_size_for(self.request_settings(request))
        except Exception:  # the job's own fault: its run (one image) fails it with the reason
            log.warning("job settings unusable; leasing one image to fail it", exc_info=True)
            return 1

    def run_job(self, job: Job) -> bool:
        """Draw every pending image of one job on this worker alone; False when this process
        must be replaced."""
        while True:
            claimed = self.journal.claim_images(
                self.name, self.token, os.getpid(), self._limit, job_id=job.id
            )
            if claimed is None:
                return True
            if not self.run_images(*claimed):
                return False

    def run_images(self, job: Job, indices: list[int]) -> bool:
        """Draw the images of `job` this worker leased; False when this process must be
        replaced. The last image committed (by any worker) finishes the job."""
        from tools.errors import UserError
        from tools.generation.specs import ImageSpec

        worker = self.settings.worker
        heartbeat = Heartbeat(self.journal, job, self.token)
        chunk = [image for image in job.images if image.index in indices]
        log.info("job %s attempt %d: images %s", job.id, job.attempts, indices)
        try:
            runtime = self.runtime_for(self.job_settings(job))
            _report_phases(runtime, heartbeat)
            specs = [ImageSpec.model_validate(image.spec) for image in chunk]
            self._warm(runtime, specs, heartbeat, job.low_memory)
            for image in chunk:
                heartbeat.beat(force=True, image=image.index, step=0, phase="rendering")
                self.faults.before_image(
                    job.id,
                    image.index,
                    image.tries,
                    lambda index=image.index: self.journal.mark_fault_fired(job.id, index),
                )
            try:
                records = runtime.producer.produce_batch(specs, on_step=heartbeat.on_step)
            except Exception as error:
                if len(chunk) == 1 or not is_out_of_memory(error):
                    raise
                # Smaller batches first; VAE slicing/tiling (a retry) only once at one image.
                self.batch_limit = len(chunk) // 2
                log.warning("job %s: out of memory at batch %d", job.id, len(chunk))
                self.journal.release_leases(self.token)
                _free_device_memory()
                return True
            # An image is done when its file is on disk (produce_batch saved it) and its row
            # is committed; a crash between the two redraws nothing (the key is saved).
            for image, record in zip(chunk, records, strict=True):
                self._commit(runtime, job, image.index, image.key, record)
            return True
        except RunEnded:
            log.info("job %s was cancelled or taken over; stopping it", job.id)
            # Images of the batch saved before the stop are done: commit them, so no accepted
            # file is left without its row (a retry draws only the rest).
            for image, spec in zip(chunk, specs, strict=True):
                if (saved := runtime.producer.saved(spec)) is not None:
                    self._commit(runtime, job, image.index, image.key, saved)
            self.journal.release_leases(self.token)
            return True
        except UserError as error:
            # Retrying cannot fix what the user must fix (a removed character, a bad setting).
            self.journal.lease_failed(self.token, str(error), 0, 0)
            return True
        except Exception as error:
            log.error("job %s failed:\n%s", job.id, traceback.format_exc())
            oom = is_out_of_memory(error)
            reason = f"{type(error).__name__}: {error}"
            self.journal.lease_failed(
                self.token, reason, worker.max_attempts, worker.retry_backoff, low_memory=oom
            )
            if oom:
                _free_device_memory()
            return not is_device_broken(error)

    def _commit(
        self, runtime: Runtime, job: Job, index: int, key: str, record: OutputRecord
    ) -> None:
        """Commit one saved image under this worker's lease (a no-op once the lease is gone)."""
        runtime.index.set_worker(key, self.name)
        self.journal.lease_done(
            job.id, index, self.token, self.name, record.path, record.model_dump(mode="json")
        )

    def _warm(
        self, runtime: Runtime, specs: list[ImageSpec], heartbeat: Heartbeat, low_memory: bool
    ) -> None:
        """Load models and calibrate the images' characters while a thread beats for us (a
        character-sheet image's character is not in the library yet, a plain one has none)."""
        from tools.engine.local_models import local_model_uses

        engine, gate = runtime.engine, runtime.gate
        uses = local_model_uses(runtime.settings)  # the job's: hires is per job, the engine not
        if not uses:
            return  # ComfyUI draws, no gate judges, no second pass: nothing local to load
        # Only hires / face detail here (ComfyUI draws, no gate): no character to calibrate.
        judged = "drawing" in uses or "the quality gate" in uses
        names = sorted({spec.character for spec in specs if spec.sheet is None and not spec.plain})
        characters = [runtime.characters.get(name) for name in names] if judged else []
        cold = [c for c in characters if c.name not in self._calibrated]
        if not engine.loaded or cold:
            with Keepalive(heartbeat, load_allowance(self.settings.worker.hang_timeout)):
                engine.pipe  # noqa: B018  (loading is the point)
                if judged:
                    gate.aesthetic  # noqa: B018
                for character in cold:
                    gate.baseline(character)
                    self._calibrated.add(character.name)
        if low_memory and not self.low_memory:
            engine.use_less_memory()
            self.low_memory = True


def pin_comfyui(job: Settings, own: Settings) -> Settings:
    """A worker the supervisor gave one of several ComfyUI URLs (`worker_slots`) draws the
    job's images on that one; otherwise the job's first URL draws."""
    urls = own.comfyui.urls
    if job.worker.backend != "comfyui" or len(urls) != 1 or urls[0] not in job.comfyui.urls:
        return job
    return job.model_copy(update={"comfyui": job.comfyui.model_copy(update={"url": urls[0]})})


def _engine_key(settings: Settings) -> tuple[Any, ...]:
    """What the engine bakes in when it loads and renders."""
    from tools.engine.rendering import sampling_for

    backend = settings.worker.backend
    return (settings.models, sampling_for(settings), backend, settings.comfyui)


def _report_phases(runtime: Runtime, heartbeat: Heartbeat) -> None:
    """A ComfyUI engine says what it waits for ("waiting for ComfyUI at URL"); each report is
    a beat, so a job waiting for a restarting ComfyUI is not taken for a hung worker."""
    if runtime.settings.worker.backend != "comfyui":
        return
    engine = runtime.engine
    engine.phase = lambda text: heartbeat.beat(phase=text)  # type: ignore[attr-defined]


def _free_device_memory() -> None:
    import gc

    gc.collect()
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _die_with_parent() -> None:
    """Linux: the kernel kills this process if the supervisor dies, so no orphan holds the GPU."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes
    import signal

    pr_set_pdeathsig = 1
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(pr_set_pdeathsig, signal.SIGKILL)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="The GPU worker (started by tools.jobs.supervisor)."
    )
    parser.add_argument("--parent", type=int, default=None, help="the supervisor's pid")
    parser.add_argument("--name", default="local", help="the worker's name (e.g. gpu0)")
    parser.add_argument("--token", default=None, help="its lease token (from the supervisor)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s worker[{os.getpid()}] %(message)s")
    if args.parent is not None:
        _die_with_parent()
        if os.getppid() != args.parent:
            return EXIT_IDLE
    faults = FaultPlan.from_env()
    if faults.active:
        log.warning("FAULT INJECTION ACTIVE: %s", os.environ.get("ANIME_WORKER_FAULTS"))
    settings = load_settings()
    pid_file = settings.paths.state / f"worker-{args.name}.pid"
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    pid_file.write_text(f"{os.getpid()}\n")
    try:
        return Worker(settings, faults, args.name, args.token).serve(args.parent)
    finally:
        pid_file.unlink(missing_ok=True)


if __name__ == "__main__":
    sys.exit(main())
