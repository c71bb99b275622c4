"""Keep one warm worker per GPU alive: the supervisor's process loop.

The supervisor (`anime-gen worker`, or `python -m tools.jobs.supervisor` started in the background
by the CLIs) holds `<state>/worker.lock`, runs one render worker per GPU (`worker.gpus`; each sees
its GPU alone through CUDA_VISIBLE_DEVICES) as child processes and watches them: a child that
dies (kill -9, segfault, CUDA error) or stops beating its image leases for `worker.hang_timeout`
is killed and replaced, and the images it held go back to the queue (the job backs off, or fails
after `worker.max_attempts`). When every child exits idle and nothing is queued, the supervisor
exits too. `anime-gen worker --ray` holds the same lock (tools.jobs.ray_workers).
It imports no torch, so it starts fast and survives whatever the child does.

Front ends hand it work and wait through `tools.jobs.client`; the lock and the background
start are `tools.jobs.processes`.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
import uuid
from typing import Any

from tools.jobs.job import Job
from tools.jobs.journal import JobJournal
from tools.jobs.leases import BeatWatch
from tools.jobs.processes import (
    WorkerAlreadyRunning,
    child_env,
    worker_lock,
)
from tools.settings import Settings, load_settings

log = logging.getLogger("anime.supervisor")

WATCH_SECONDS = 0.25
# A child that dies this many times in a row without having claimed a job cannot start at all.
MAX_START_FAILURES = 4


def exit_reason(returncode: int) -> str:
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = str(-returncode)
        return f"worker process died ({name})"
    return f"worker process exited with code {returncode}"


def visible_gpus(env: dict[str, str] | None = None) -> list[str]:
    """The GPU ids this machine shows, without importing torch (CUDA_VISIBLE_DEVICES, else
    `nvidia-smi -L`); [] without an NVIDIA GPU."""
    env = dict(os.environ if env is None else env)
    if "CUDA_VISIBLE_DEVICES" in env:
        return [part.strip() for part in env["CUDA_VISIBLE_DEVICES"].split(",") if part.strip()]
    try:
        listing = subprocess.run(
            ["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [str(n) for n, line in enumerate(listing.splitlines()) if line.startswith("GPU ")]


def worker_slots(settings: Settings) -> dict[str, dict[str, str]]:
    """The render workers to run: name -> the environment each adds (its GPU)."""
    worker = settings.worker
    if worker.backend == "comfyui" and len(settings.comfyui.urls) > 1:
        # Several ComfyUIs act as several workers, each drawing on its own (tools/jobs/worker.py
        # `pin_comfyui`); the local GPU only runs the quality gate.
        urls = settings.comfyui.urls
        return {f"comfyui{n}": {"ANIME_COMFYUI_URL": url} for n, url in enumerate(urls)}
    if worker.cpu_workers:
        # One torch thread each: N workers each starting a thread per core fight over the cores
        # (and OpenMP's spinning makes a busy machine far slower still).
        cpu = {"CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}
        return {f"cpu{n}": dict(cpu) for n in range(worker.cpu_workers)}
    if worker.gpus == "auto":
        gpus = visible_gpus()
    elif isinstance(worker.gpus, int):
        gpus = visible_gpus()[: worker.gpus] or [str(n) for n in range(worker.gpus)]
    else:
        gpus = [str(n) for n in worker.gpus]
    if not gpus:
        return {"cpu0": {}}
    return {f"gpu{gpu}": {"CUDA_VISIBLE_DEVICES": gpu} for gpu in gpus}


class _Slot:
    """One render worker the supervisor keeps alive: its process and its lease token."""

    def __init__(self, name: str, env: dict[str, str]) -> None:
        self.name = name
        self.env = env
        self.child: subprocess.Popen[bytes] | None = None
        self.token = ""
        self.failures = 0  # exits in a row without having held an image
        self.start_at = 0.0
        self.idle = False
        self.given_up = False


class Supervisor:
    """Runs one render worker per slot (GPU, or CPU for tests); each leases images of the queue,
    so one job spreads over all of them."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.state = settings.paths.state
        self.journal = JobJournal.for_state(self.state)
        self.beats = BeatWatch(self.journal)
        self.slots = [_Slot(name, env) for name, env in worker_slots(settings).items()]
        self.stopping = False

    def run(self) -> int:
        with worker_lock(self.state):
            self._install_signal_handlers()
            # The lock was free, so whatever claimed a job before us has died with its supervisor.
            self.journal.clear_leases()
            for job in self.journal.running():
                self._fail_run(job, "worker lost (its supervisor stopped)")
            log.info("render workers: %s", ", ".join(slot.name for slot in self.slots))
            try:
                return self._loop()
            finally:
                self._stop_children()

    def _loop(self) -> int:
        while not self.stopping:
            now = time.monotonic()
            pending = None
            for slot in self.slots:
                if slot.child is not None:
                    if slot.child.poll() is not None:
                        self._ended(slot)
                    continue
                if slot.given_up or now < slot.start_at:
                    continue
                if slot.idle:
                    pending = self.journal.pending_count() if pending is None else pending
                    if not pending:
                        continue
                self._start(slot)
            if all(slot.given_up for slot in self.slots):
                log.error("no render worker can start; giving up")
                return 1
            live = [slot for slot in self.slots if slot.child is not None]
            if not live and not self.journal.pending_count():
                log.info("workers idle; supervisor exits")
                return 0
            self._kill_hung(live)
            time.sleep(WATCH_SECONDS)
        return 0

    def _install_signal_handlers(self) -> None:
        def stop(signum: int, _frame: Any) -> None:
            self.stopping = True
            for slot in self.slots:
                if slot.child is not None and slot.child.poll() is None:
                    slot.child.terminate()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)

    def _start(self, slot: _Slot) -> None:
        slot.token = f"{slot.name}:{uuid.uuid4().hex[:12]}"
        slot.idle = False
        command = [
            *(sys.executable, "-m", "tools.jobs.worker", "--parent", str(os.getpid())),
            *("--name", slot.name, "--token", slot.token),
        ]
        env = {**child_env(), **slot.env}
        slot.child = subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL)
        log.info("started worker %s pid %d", slot.name, slot.child.pid)

    def _ended(self, slot: _Slot) -> None:
        """A worker exited: its images go back to the queue (counted, unless we stop it)."""
        assert slot.child is not None
        returncode = slot.child.returncode
        slot.child = None
        if self.stopping:
            self.journal.release_leases(slot.token, requeue=True)
            return
        held = self._fail_leases(slot, exit_reason(returncode))
        if returncode == 0:
            slot.idle, slot.failures = True, 0
            return
        slot.failures = 0 if held else slot.failures + 1
        if slot.failures >= MAX_START_FAILURES:
            log.error("worker %s cannot start (%s)", slot.name, exit_reason(returncode))
            slot.given_up = True
        slot.start_at = time.monotonic() + min(0.5 * 2**slot.failures, 30.0)

    def _kill_hung(self, live: list[_Slot]) -> None:
        hang_timeout = self.settings.worker.hang_timeout
        silent = self.beats.silent(hang_timeout)
        for slot in live:
            if slot.token in silent and slot.child is not None:
                log.warning(
                    "worker %s: no heartbeat for %.1f s; killing it", slot.name, silent[slot.token]
                )
                slot.child.kill()
                slot.child.wait()
                slot.child = None
                self._fail_leases(slot, f"worker hung (no heartbeat for {hang_timeout:g} s)")
                slot.start_at = time.monotonic() + 0.5

    def _fail_leases(self, slot: _Slot, reason: str) -> int:
        worker = self.settings.worker
        states = self.journal.lease_failed(
            slot.token, reason, worker.max_attempts, worker.retry_backoff
        )
        for job_id, state in states.items():
            log.warning("job %s: %s %s -> %s", job_id, slot.name, reason, state)
        return len(states)

    def _stop_children(self) -> None:
        for slot in self.slots:
            if slot.child is not None:
                if slot.child.poll() is None:
                    slot.child.terminate()
                try:
                    slot.child.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    slot.child.kill()
                    slot.child.wait()
                slot.child = None
            if slot.token:
                self.journal.release_leases(slot.token, requeue=True)

    def _fail_run(self, job: Job, reason: str) -> None:
        worker = self.settings.worker
        state = self.journal.attempt_failed(
            job.id, job.run_token, reason, worker.max_attempts, worker.retry_backoff
        )
        log.warning("job %s: %s -> %s", job.id, reason, state)


def main() -> int:
    logging.basicConfig(
        level=logging.INFO, format=f"%(asctime)s supervisor[{os.getpid()}] %(message)s"
    )
    settings = load_settings()
    try:
        return Supervisor(settings).run()
    except WorkerAlreadyRunning as error:
        log.info("%s", error.message)
        return 0


if __name__ == "__main__":
    sys.exit(main())
