"""The processes a home runs in the background, and the locks that keep them one per home.

A lock is a flock on a file under the state dir: the kernel drops it when its holder dies, so a
crash never leaves a stale lock behind. The worker's is `<state>/worker.lock` (held by the
supervisor or the Ray head); the studio server keeps its own through `lock_held`. Both start
in the background through `start_detached`. Standard library only: thin clients import this.
"""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tools.errors import UserError
from tools.private_dir import private_dir

LOCK_NAME = "worker.lock"
PID_NAME = "worker.pid"
PROJECT_ROOT = Path(__file__).resolve().parents[2]


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
    private_dir(state)
    handle = open(state / LOCK_NAME, "a+")  # noqa: SIM115  (held for the block's lifetime)
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise WorkerAlreadyRunning(read_worker_pid(state)) from None
        (state / PID_NAME).write_text(f"{os.getpid()}\n")
        yield
    finally:
        handle.close()


def read_worker_pid(state: Path) -> str:
    pid_file = state / PID_NAME
    return pid_file.read_text().strip() if pid_file.exists() else ""


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


def checkout_path(python_path: str | None) -> str:
    """A PYTHONPATH with this checkout first, so a child runs the code that started it."""
    return os.pathsep.join(filter(None, [str(PROJECT_ROOT), python_path]))


def child_env(env: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ if env is None else env)
    env["PYTHONPATH"] = checkout_path(env.get("PYTHONPATH"))
    return env


def start_detached(module: str, home: Path, log_file: Path, *args: str) -> subprocess.Popen[bytes]:
    """Start `python -m module args` for `home` in a session of its own (it outlives this
    terminal), logging to `log_file`."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    env = child_env()
    env["ANIME_HOME"] = str(home)
    with open(log_file, "ab") as output:
        return subprocess.Popen(
            [sys.executable, "-m", module, *args],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
