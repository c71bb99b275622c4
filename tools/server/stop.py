"""`anime-gen serve --stop`: stop this home's studio server, then its workers.

The server goes first, so it cannot start a worker again for a queued job; the supervisor then
stops its render workers (they also die with it: PR_SET_PDEATHSIG). Only a process that holds
its lock is signalled, so a stale pid file never names a process to kill. Standard library only.
"""

from __future__ import annotations

import time
from pathlib import Path

from tools.jobs.processes import PID_NAME as WORKER_PID_NAME
from tools.jobs.processes import stop_worker, worker_running
from tools.server import files

# Bounds, not speeds: SIGKILL follows a process that has not let go of its lock by then.
STOP_TIMEOUT = 60.0
# A server between taking its lock and writing its pid is starting; wait for the pid.
STARTING_TIMEOUT = 30.0


def _pid(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8").strip()
    except OSError:
        return "?"


def stop_home(state: Path) -> list[str]:
    """Stop what runs for the home of `state`; one line per process stopped, [] if none ran."""
    lines = []
    deadline = time.monotonic() + STARTING_TIMEOUT
    while files.server_running(state) and files.read_discovery(state) is None:
        if time.monotonic() > deadline:
            break
        time.sleep(0.1)
    discovery = files.read_discovery(state)
    if files.stop_server(state, timeout=STOP_TIMEOUT) and discovery is not None:
        lines.append(f"stopped the studio server (pid {discovery.pid})")
    if worker_running(state):
        pid = _pid(state / WORKER_PID_NAME)
        if stop_worker(state, timeout=STOP_TIMEOUT):
            lines.append(f"stopped the worker (pid {pid})")
    return lines
