"""Keep one warm worker per GPU alive, and let front ends hand it work and wait for it.

The supervisor (`anime-gen worker`, or `python -m tools.jobs.supervisor` started in the background
by the CLIs) holds `<state>/worker.lock`, runs one render worker per GPU (`worker.gpus`; each sees
its GPU alone through CUDA_VISIBLE_DEVICES) as child processes and watches them: a child that
dies (kill -9, segfault, CUDA error) or stops beating its image leases for `worker.hang_timeout`
is killed and replaced, and the images it held go back to the queue (the job backs off, or fails
after `worker.max_attempts`). When every child exits idle and nothing is queued, the supervisor
exits too. `anime-gen worker --ray` holds the same lock (tools.jobs.ray_workers).
It imports no torch, so it starts fast and survives whatever the child does.

Front ends call `run_in_worker` (submit, make sure a worker runs, wait), or the three steps.
"""

from __future__ import annotations

import fcntl
import logging
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tools.errors import UserError
from tools.jobs.journal import CANCELLED, DONE, Job, JobJournal
from tools.settings import Settings, load_settings

if TYPE_CHECKING:
    from tools.generation.specs import ImageSpec, OutputRecord

log = logging.getLogger("anime.supervisor")

LOCK_NAME = "worker.lock"
PID_NAME = "worker.pid"
WATCH_SECONDS = 0.25
# A child that dies this many times in a row without having claimed a job cannot start at all.
MAX_START_FAILURES = 4
CLIENT_RESTARTS = 3
PROJECT_ROOT = Path(__file__).resolve().parent.parent


class WorkerAlreadyRunning(UserError):
    def __init__(self, pid: str) -> None:
        super().__init__(
            f"a worker is already running{f' (pid {pid})' if pid else ''}",
            "it serves every anime-gen and anime-chat; `anime-gen jobs` shows its queue",
        )


def log_path(state: Path) -> Path:
    return state / "logs" / "worker.log"


@contextmanager
def worker_lock(state: Path) -> Iterator[None]:
    """Hold the one-worker-per-GPU lock; the kernel drops it if the holder dies."""
    state.mkdir(parents=True, exist_ok=True)
    handle = open(state / LOCK_NAME, "a+")  # noqa: SIM115  (held for the block's lifetime)
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid_file = state / PID_NAME
            raise WorkerAlreadyRunning(
                pid_file.read_text().strip() if pid_file.exists() else ""
            ) from None
        (state / PID_NAME).write_text(f"{os.getpid()}\n")
        yield
    finally:
        handle.close()


def lock_held(lock: Path) -> bool:
    """Whether a live process holds the flock on `lock` (the kernel drops it when one dies)."""
    if not lock.exists():
        return False
    with open(lock, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
    return False


def worker_running(state: Path) -> bool:
    return lock_held(state / LOCK_NAME)


def stop_worker(state: Path, timeout: float = 10.0) -> bool:
    """Ask the running worker to stop (SIGTERM: its job goes back to the queue uncounted)."""
    pid_file = state / PID_NAME
    if not worker_running(state) or not pid_file.exists():
        return False
    pid = int(pid_file.read_text().strip())
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while worker_running(state):
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            break
        time.sleep(0.1)
    return True


def _child_env(env: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ if env is None else env)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROJECT_ROOT), env.get("PYTHONPATH")]))
    return env


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
        env = {**_child_env(), **slot.env}
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
        silent = self.journal.silent_leases(hang_timeout)
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


# -- front ends ------------------------------------------------------------------------------------
def start_background(settings: Settings) -> None:
    """Start a supervisor detached from this terminal; a second one exits if the lock is taken."""
    state = settings.paths.state
    log_file = log_path(state)
    log_file.parent.mkdir(parents=True, exist_ok=True)
    env = _child_env()
    env["ANIME_HOME"] = str(settings.home)
    with open(log_file, "ab") as output:
        subprocess.Popen(
            [sys.executable, "-m", "tools.jobs.supervisor"],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def ensure_worker(settings: Settings) -> bool:
    """Start a background worker unless one runs; True when one was started."""
    if worker_running(settings.paths.state):
        return False
    start_background(settings)
    return True


def settings_overrides(settings: Settings) -> dict[str, Any]:
    """What `settings` has beyond the config file alone (flags, environment), as sections."""
    base = load_settings(env={}, home=settings.home).model_dump(mode="json")
    mine = settings.model_dump(mode="json")
    overrides = {
        section: {key: value for key, value in values.items() if base[section].get(key) != value}
        for section, values in mine.items()
        if isinstance(values, dict)
    }
    return {section: values for section, values in overrides.items() if values}


def prefetch_models(settings: Settings) -> None:
    """Download what the worker will need, here in the user's terminal (size note, progress
    bar) rather than unseen in the background worker. Instant when everything is cached."""
    from tools.engine.rendering import Engine
    from tools.quality.aesthetic import AestheticScorer

    Engine(settings).prefetch()
    if settings.quality.enabled and settings.quality.aesthetic_model:
        try:
            AestheticScorer(settings).folder()
        except UserError as error:
            print(f"note: {error.message}; images are not scored for looks", file=sys.stderr)


def submit_job(
    settings: Settings, specs: list[ImageSpec], label: str | None = None
) -> tuple[JobJournal, str]:
    from tools.store.gen_index import GenerationIndex

    # Both stores fail here, in the user's terminal, rather than in every attempt of the job.
    GenerationIndex(settings.paths.state / "generations.sqlite").ensure_readable()
    journal = JobJournal.for_state(settings.paths.state)
    journal.ensure_readable()
    prefetch_models(settings)
    job_id = journal.submit(
        [spec.model_dump(mode="json") for spec in specs],
        label=label,
        overrides=settings_overrides(settings),
        settings=settings.model_dump(mode="json"),
    )
    return journal, job_id


def wait_for_job(
    settings: Settings,
    job_id: str,
    on_update: Callable[[Job], None] | None = None,
    poll: float = 0.2,
    timeout: float | None = None,
) -> Job:
    """Poll the journal until the job finishes, restarting the worker if it went away."""
    journal = JobJournal.for_state(settings.paths.state)
    restarts, last_check = 0, time.monotonic()
    deadline = None if timeout is None else last_check + timeout
    while True:
        job = journal.get(job_id)
        if on_update is not None:
            on_update(job)
        if job.finished:
            return job
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError(f"job {job_id} is still {job.state} after {timeout:g} s")
        if time.monotonic() - last_check > 2.0:
            last_check = time.monotonic()
            if not worker_running(settings.paths.state):
                if restarts >= CLIENT_RESTARTS:
                    raise UserError(
                        "the worker keeps stopping before the job is done",
                        f"see {log_path(settings.paths.state)}",
                    )
                start_background(settings)
                restarts += 1
        time.sleep(poll)


def job_records(job: Job) -> list[OutputRecord]:
    from tools.generation.specs import OutputRecord

    return [OutputRecord.model_validate(image.record) for image in job.images if image.record]


def raise_unless_done(job: Job, state: Path) -> None:
    if job.state == DONE:
        return
    if job.state == CANCELLED:
        raise UserError(f"job {job.id} was cancelled", f"anime-gen jobs retry {job.id}")
    # A user error keeps its own hint (`UserError.__str__` is "message\nhint: ...").
    reason, _, fix = (job.error or "").partition("\nhint: ")
    retry = f"anime-gen jobs retry {job.id}"
    raise UserError(
        f"job {job.id} failed: {reason}",
        f"{fix}; then {retry}" if fix else f"{retry} (the worker's log: {log_path(state)})",
    )


def run_in_worker(
    settings: Settings,
    specs: list[ImageSpec],
    on_image: Callable[[OutputRecord], None] | None = None,
    label: str | None = None,
    cancel_on_interrupt: bool = False,
) -> list[OutputRecord]:
    """Submit the specs as one job, make sure a worker runs, wait; the records in spec order.

    Ctrl-C stops waiting; with `cancel_on_interrupt` it also cancels the job (the chat's
    "cancel the current request"), otherwise the job keeps running in the worker.
    """
    from tools.generation.specs import OutputRecord

    _, job_id = submit_job(settings, specs, label)
    ensure_worker(settings)
    reported: set[int] = set()

    def report(job: Job) -> None:
        for image in job.images:
            if image.record and image.index not in reported:
                reported.add(image.index)
                if on_image is not None:
                    on_image(OutputRecord.model_validate(image.record))

    try:
        job = wait_for_job(settings, job_id, report)
    except KeyboardInterrupt:
        if cancel_on_interrupt:
            JobJournal.for_state(settings.paths.state).cancel(job_id)
        raise
    raise_unless_done(job, settings.paths.state)
    return job_records(job)


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
