"""Keep one warm worker per GPU alive, and let front ends hand it work and wait for it.

The supervisor (`anime-gen worker`, or `python -m tools.supervisor` started in the background by
the CLIs) holds `<state>/worker.lock`, runs the GPU worker as a child process and watches it:
a child that dies (kill -9, segfault, CUDA error) or stops beating for `worker.hang_timeout` is
killed and replaced, and its job goes back to the queue with a backoff, or fails after
`worker.max_attempts`. When the child exits idle and nothing is queued, the supervisor exits too.
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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tools.errors import UserError
from tools.jobs import CANCELLED, DONE, Job, JobJournal
from tools.settings import Settings, load_settings

if TYPE_CHECKING:
    from tools.generate import ImageSpec, OutputRecord

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


def worker_running(state: Path) -> bool:
    lock = state / LOCK_NAME
    if not lock.exists():
        return False
    with open(lock, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
    return False


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


class Supervisor:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.state = settings.paths.state
        self.journal = JobJournal.for_state(self.state)
        self.child: subprocess.Popen[bytes] | None = None
        self.stopping = False

    def run(self) -> int:
        with worker_lock(self.state):
            self._install_signal_handlers()
            # The lock was free, so whatever claimed a job before us has died with its supervisor.
            for job in self.journal.running():
                self._fail_run(job, "worker lost (its supervisor stopped)")
            start_failures = 0
            while not self.stopping:
                self.child = self._start_child()
                returncode, recovered = self._watch(self.child)
                self.child = None
                if self.stopping:
                    break
                if returncode == 0 and not self.journal.pending_count():
                    log.info("worker idle; supervisor exits")
                    return 0
                start_failures = 0 if recovered or returncode == 0 else start_failures + 1
                if start_failures >= MAX_START_FAILURES:
                    log.error("the worker cannot start (%s); giving up", exit_reason(returncode))
                    return 1
                time.sleep(min(0.5 * 2**start_failures, 30.0))
        return 0

    def _install_signal_handlers(self) -> None:
        def stop(signum: int, _frame: Any) -> None:
            self.stopping = True
            if self.child is not None and self.child.poll() is None:
                self.child.terminate()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)

    def _start_child(self) -> subprocess.Popen[bytes]:
        command = [sys.executable, "-m", "tools.worker", "--parent", str(os.getpid())]
        child = subprocess.Popen(command, env=_child_env(), stdin=subprocess.DEVNULL)
        log.info("started worker pid %d", child.pid)
        return child

    def _watch(self, child: subprocess.Popen[bytes]) -> tuple[int, int]:
        """Wait for the child to end (or kill it when hung); returns (returncode, jobs it held)."""
        hang_timeout = self.settings.worker.hang_timeout
        while True:
            returncode = child.poll()
            if returncode is not None:
                held = [job for job in self.journal.running() if job.worker_pid == child.pid]
                reason = "worker stopped" if self.stopping else exit_reason(returncode)
                for job in held:
                    self._fail_run(job, reason)
                return returncode, len(held)
            now = time.time()
            for job in self.journal.running():
                silent = now - (job.heartbeat or job.updated)
                if job.worker_pid == child.pid and silent > hang_timeout:
                    log.warning("job %s: no heartbeat for %.1f s; killing worker", job.id, silent)
                    child.kill()
                    child.wait()
                    self._fail_run(job, f"worker hung (no heartbeat for {hang_timeout:g} s)")
                    return child.returncode, 1
            time.sleep(WATCH_SECONDS)

    def _fail_run(self, job: Job, reason: str) -> None:
        if self.stopping:
            self.journal.release(job.id, job.run_token)
            return
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
            [sys.executable, "-m", "tools.supervisor"],
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
    from tools.aesthetic import AestheticScorer
    from tools.engine import Engine

    Engine(settings).prefetch()
    if settings.quality.enabled and settings.quality.aesthetic_model:
        try:
            AestheticScorer(settings).folder()
        except UserError as error:
            print(f"note: {error.message}; images are not scored for looks", file=sys.stderr)


def submit_job(
    settings: Settings, specs: list[ImageSpec], label: str | None = None
) -> tuple[JobJournal, str]:
    prefetch_models(settings)
    journal = JobJournal.for_state(settings.paths.state)
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
    from tools.generate import OutputRecord

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
    from tools.generate import OutputRecord

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
