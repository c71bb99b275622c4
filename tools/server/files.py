"""The server's files in `<state>/`: token (0600), discovery JSON, pid, and the one-per-home lock.

The lock is an flock the kernel drops when the holder dies, so a pid or discovery file left by a
crash is recognised as stale (the lock is free) and removed, never trusted.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import secrets
import signal
import stat
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from tools.private_dir import private_dir

TOKEN_NAME = "server.token"
DISCOVERY_NAME = "server.json"
PID_NAME = "server.pid"
LOCK_NAME = "server.lock"


@dataclass(frozen=True)
class Discovery:
    pid: int
    host: str
    port: int

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"


# What `secrets.token_urlsafe(32)` writes (43 characters); a longer one of the same alphabet too.
TOKEN_SHAPE = re.compile(r"[A-Za-z0-9_-]{32,256}")


def _write_private(path: Path, text: str) -> None:
    """Write `text` readable by the owner only, atomically (temp file, then rename).

    `mkstemp` creates a fresh name with O_EXCL and mode 0600: a file or symlink planted at a
    predictable temp name is never opened, let alone truncated."""
    descriptor, temporary = tempfile.mkstemp(
        dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"
    )
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def write_token(state: Path, new: bool = False) -> str:
    """The server's token: the one of the last start when it is still private to this user (so
    SillyTavern, Open WebUI or an MCP client configured with it keeps working after a restart),
    else (or with `new`) a fresh one."""
    private_dir(state)
    kept = None if new else _private_token(state / TOKEN_NAME)
    if kept is not None:
        return kept
    token = secrets.token_urlsafe(32)
    _write_private(state / TOKEN_NAME, token)
    return token


def _private_token(path: Path) -> str | None:
    """The token in `path` if only this user could have written or read it: a regular file (no
    link), ours, mode 0600 at most, holding one well-formed token."""
    try:
        info = os.lstat(path)
        if not stat.S_ISREG(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o077:
            return None
        text = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return text if TOKEN_SHAPE.fullmatch(text) else None


def read_token(state: Path) -> str | None:
    try:
        return (state / TOKEN_NAME).read_text(encoding="utf-8").strip() or None
    except OSError:
        return None


def write_discovery(state: Path, host: str, port: int) -> None:
    pid = os.getpid()
    _write_private(state / PID_NAME, f"{pid}\n")
    _write_private(
        state / DISCOVERY_NAME, json.dumps({"pid": pid, "host": host, "port": port}) + "\n"
    )


def read_discovery(state: Path) -> Discovery | None:
    try:
        data = json.loads((state / DISCOVERY_NAME).read_text(encoding="utf-8"))
        return Discovery(int(data["pid"]), str(data["host"]), int(data["port"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def remove_discovery(state: Path) -> None:
    for name in (DISCOVERY_NAME, PID_NAME):
        (state / name).unlink(missing_ok=True)


def try_lock(state: Path, patience: float = 0.5) -> IO[str] | None:
    """Take the one-server-per-home lock; the open handle holds it, None if another holds it.

    A client asking `server_running` holds the lock for an instant too: one that looks just as
    this server starts must not make it give up, so a held lock is tried again for `patience`
    seconds (a server holds it for its whole life).
    """
    private_dir(state)
    handle = open(state / LOCK_NAME, "a+")  # noqa: SIM115  (held for the server's lifetime)
    deadline = time.monotonic() + patience
    while True:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return handle
        except BlockingIOError:
            if time.monotonic() >= deadline:
                handle.close()
                return None
            time.sleep(0.02)


def server_running(state: Path) -> bool:
    from tools.jobs.processes import lock_held

    return lock_held(state / LOCK_NAME)


def live_discovery(state: Path) -> Discovery | None:
    """Where the running server listens; stale files (lock free: it crashed) are removed."""
    discovery = read_discovery(state)
    if discovery is None:
        return None
    if not server_running(state):
        remove_discovery(state)
        return None
    return discovery


def stop_server(state: Path, timeout: float = 10.0) -> bool:
    """SIGTERM the home's running server and wait for it to let go of its lock."""
    discovery = read_discovery(state)
    if discovery is None or not server_running(state):
        return False
    os.kill(discovery.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while server_running(state):
        if time.monotonic() > deadline:
            os.kill(discovery.pid, signal.SIGKILL)
            break
        time.sleep(0.05)
    return True
