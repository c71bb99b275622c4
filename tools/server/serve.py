"""Run the studio server: one per home, loopback by default, gone after `server.keep_alive` idle
(the GPU worker beside it frees the GPU after `worker.keep_alive`, on its own).

Start-up order matters: lock, clean stale files, write the token (0600), bind, write
`server.json`/`server.pid`, then listen. Stopping (SIGTERM, Ctrl-C, idle) removes the
discovery and pid files; a crash leaves them behind, and the free lock marks them stale.
"""

from __future__ import annotations

import errno
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO, Any

from tools.errors import UserError
from tools.server import files
from tools.settings import load_settings

log = logging.getLogger("anime.server")
WATCH_SECONDS = 1.0
REPLACE_TIMEOUT = 15.0


class ServerAlreadyRunning(UserError):
    def __init__(self, where: str, pid: int | str) -> None:
        super().__init__(
            f"a studio server is already running for this home at {where} (pid {pid})",
            "it serves every anime-gen and anime-chat (busy or started in the foreground, so it"
            " is not replaced); stop it with `anime-gen serve --stop` once its jobs are done",
        )


def _take_over(state: Path, foreground: bool, say: Callable[[str], None]) -> IO[str] | None:
    """The home's server lock. A foreground serve replaces an idle background server and is
    refused by a busy one; a background start simply leaves the running one alone (None)."""
    handle = files.try_lock(state)
    if handle is not None or not foreground:
        return handle
    from tools.server.client import status_of

    discovery = files.read_discovery(state)
    where = discovery.url if discovery else "an unknown address"
    pid = discovery.pid if discovery else (state / files.PID_NAME).read_text().strip()
    current = status_of(state)
    if current is None or current.get("busy") or not current.get("background"):
        raise ServerAlreadyRunning(where, pid)
    say(f"replacing the idle background server at {where} (pid {pid})")
    os.kill(int(pid), signal.SIGTERM)
    deadline = time.monotonic() + REPLACE_TIMEOUT
    while (handle := files.try_lock(state)) is None:
        if time.monotonic() > deadline:
            raise ServerAlreadyRunning(where, pid)
        time.sleep(0.1)
    return handle


def bind(host: str, port: int, say: Callable[[str], None]) -> socket.socket:
    """A listening socket on (host, port), or on a free port when that one is taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as error:
        if error.errno != errno.EADDRINUSE:
            sock.close()
            raise UserError(
                f"cannot listen on {host}:{port} ({error.strerror})",
                "set server.host to an address of this machine (default 127.0.0.1), or give --host",
            ) from None
        sock.bind((host, 0))
        say(f"port {port} is taken; using port {sock.getsockname()[1]} instead")
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def serve(
    home: Path,
    routers: Iterable[Any] = (),
    host: str | None = None,
    port: int | None = None,
    background: bool = False,
    say: Callable[[str], None] = lambda line: print(line, file=sys.stderr, flush=True),
    new_token: bool = False,
) -> int:
    import uvicorn

    from tools.server.app import create_app
    from tools.server.studio import Studio

    settings = load_settings(home=home)
    state = settings.paths.state
    explicit_host = host is not None
    host = host or settings.server.host
    port = settings.server.port if port is None else port
    lock = _take_over(state, foreground=not background, say=say)
    if lock is None:
        log.info("a server already runs for %s", home)
        return 0
    try:
        files.remove_discovery(state)
        if explicit_host and host not in ("127.0.0.1", "localhost", "::1"):
            say(f"warning: listening on {host}: other machines can reach this server")
        token = files.write_token(state, new=new_token)
        sock = bind(host, port, say)
        studio = Studio(
            home,
            token,
            host,
            background=background,
            allowed_hosts=frozenset(settings.server.allowed_hosts),
        )
        studio.port = sock.getsockname()[1]
        app = create_app(studio, routers)
        config = uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False)
        server = uvicorn.Server(config)
        files.write_discovery(state, host, studio.port)
        say(f"studio server for {home} at http://{host}:{studio.port} (pid {os.getpid()})")
        watcher = threading.Thread(target=_watch, args=(studio, server), daemon=True)
        watcher.start()
        if threading.current_thread() is threading.main_thread():
            # uvicorn re-raises the SIGTERM it caught after shutting down; this handler turns
            # that into a normal return, so the cleanup below runs.
            signal.signal(signal.SIGTERM, lambda _signum, _frame: None)
        server.run(sockets=[sock])
        return 0
    finally:
        files.remove_discovery(state)
        lock.close()


def _watch(studio: Any, server: Any) -> None:
    """Exit after `server.keep_alive` without requests or work; keep a worker on queued jobs."""
    from tools.errors import ConfigError
    from tools.jobs.client import ensure_worker
    from tools.jobs.journal import JobJournal

    while not server.should_exit:
        time.sleep(WATCH_SECONDS)
        try:
            # The server's own environment (not a client's) sets its keep-alive.
            settings = load_settings(home=studio.home)
        except ConfigError as error:
            log.warning("config: %s", error.message)
            continue
        if studio.busy():
            if JobJournal.for_state(studio.state).pending_count():
                ensure_worker(settings)
            studio.last_activity = time.monotonic()
        elif time.monotonic() - studio.last_activity > settings.server.keep_alive:
            log.info("idle for %.0f s; server exits", settings.server.keep_alive)
            server.should_exit = True
