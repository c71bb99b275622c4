"""What a front end needs to talk to the studio server, starting it when none runs.

Standard library only (`http.client`, not httpx: importing httpx alone costs 0.2-0.4 s here,
most of a warm call's budget); nothing heavy, so `anime-gen` stays a thin client. Every request
carries the caller's overrides: its flags and its `ANIME_*`, `OLLAMA_HOST` and `HF_*`
environment.
"""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tools.errors import UserError
from tools.jobs.processes import start_detached
from tools.server import files

START_TIMEOUT = 90.0
MAX_STARTS = 3
ENTRY_MODULE = "assistant.studio"


def home_from_env() -> Path:
    """`$ANIME_HOME`, else `~` (the rule of `tools.settings.resolve_home`, without pydantic)."""
    home = os.environ.get("ANIME_HOME")
    return Path(home).expanduser() if home else Path.home()


def environment_overrides(env: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ if env is None else env)
    return {
        name: value
        for name, value in env.items()
        if (name.startswith("ANIME_") and name != "ANIME_HOME")
        or name == "OLLAMA_HOST"
        or name.startswith("HF_")
    }


def process_environment(env: dict[str, str] | None = None) -> dict[str, str]:
    """The overrides a warm process reads once, when it starts (`HF_*`: huggingface_hub keeps
    them as module constants), so the server and its workers must have been started with the
    client's own; `ANIME_*` and `OLLAMA_HOST` apply per request instead. Secrets (`HF_TOKEN`)
    appear as a digest, which compares just as well."""
    import hashlib

    return {
        name: f"sha256:{hashlib.sha256(value.encode()).hexdigest()[:16]}"
        if "TOKEN" in name
        else value
        for name, value in environment_overrides(env).items()
        if name.startswith("HF_")
    }


def server_log(state: Path) -> Path:
    return state / "logs" / "server.log"


class ServerError(UserError):
    """The server answered with an error; `status` is its HTTP status."""

    def __init__(self, status: int, message: str, hint: str | None = None) -> None:
        super().__init__(message, hint)
        self.status = status


class ServerStopped(UserError):
    """The connection broke before the whole answer came: the server stopped (a crash, a kill)
    while it worked on the request."""


_NOT_JSON = object()


class StudioClient:
    def __init__(self, home: Path, discovery: files.Discovery, token: str) -> None:
        self.home = home
        self.discovery = discovery
        self.token = token

    def _connection(self, timeout: float | None) -> http.client.HTTPConnection:
        return http.client.HTTPConnection(self.discovery.host, self.discovery.port, timeout=timeout)

    def _headers(self, flags: dict[str, Any] | None) -> dict[str, str]:
        overrides = {"flags": flags or {}, "env": environment_overrides()}
        return {
            "Authorization": f"Bearer {self.token}",
            "Content-Type": "application/json",
            "X-Anime-Overrides": json.dumps(overrides),
        }

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        flags: dict[str, Any] | None = None,
        timeout: float | None = 600.0,
    ) -> Any:
        connection = self._connection(timeout)
        try:
            payload = None if body is None else json.dumps(body)
            connection.request(method, path, body=payload, headers=self._headers(flags))
            response = connection.getresponse()
            data = response.read()
        except (http.client.HTTPException, ConnectionError):
            # The server went away before its answer (it crashed, or was killed): what it did
            # meanwhile is in its log.
            raise self.stopped(method, path) from None
        except TimeoutError:
            raise UserError(
                f"the studio server did not answer {method} {path} within {timeout:g} s",
                f"see {server_log(self.home / '.anime-chat')}",
            ) from None
        finally:
            connection.close()
        return self._answer(response.status, data)

    def _answer(self, status: int, data: bytes) -> Any:
        """The JSON answer; an error status raised as a `ServerError`. A 5xx or a body that
        is not JSON (uvicorn's plain-text 500) is a bug in the server: one line naming its log.
        """
        try:
            answer = json.loads(data) if data else None
        except ValueError:
            answer = _NOT_JSON
        if status >= 500 or answer is _NOT_JSON:
            raise ServerError(
                status,
                f"the studio server failed on this request (HTTP {status})",
                f"its log says why: {server_log(self.home / '.anime-chat')}",
            )
        if status >= 400:
            raise _error(status, answer)
        return answer

    def stopped(self, method: str, path: str) -> ServerStopped:
        """The server stopped before answering; a queued job goes on without it."""
        return ServerStopped(
            f"the studio server stopped before answering {method} {path}",
            f"see {server_log(self.home / '.anime-chat')}; a job queued before it stopped goes"
            " on: `anime-gen jobs` lists it, `anime-gen jobs wait ID` follows it",
        )

    def events(self, job_id: str, flags: dict[str, Any] | None = None) -> Iterator[tuple[str, Any]]:
        """The job's server-sent events as (kind, data) until its `end` event."""
        return self.stream("GET", f"/api/jobs/{job_id}/events", flags=flags)

    def stream(
        self, method: str, path: str, body: Any = None, flags: dict[str, Any] | None = None
    ) -> Iterator[tuple[str, Any]]:
        """A streaming route's server-sent events as (kind, data), up to `end`; an `error`
        event (a long call's user error) is raised as a `UserError`, a stream that breaks off
        as `ServerStopped`."""
        connection = self._connection(None)
        try:
            yield from self._events(connection, method, path, body, flags)
        except (http.client.HTTPException, ConnectionError):
            raise self.stopped(method, path) from None
        finally:
            connection.close()

    def _events(
        self,
        connection: http.client.HTTPConnection,
        method: str,
        path: str,
        body: Any,
        flags: dict[str, Any] | None,
    ) -> Iterator[tuple[str, Any]]:
        payload = None if body is None else json.dumps(body)
        connection.request(method, path, body=payload, headers=self._headers(flags))
        response = connection.getresponse()
        if response.status >= 400:
            self._answer(response.status, response.read())
        kind, data = "message", []
        for raw in response:
            line = raw.decode("utf-8").rstrip("\r\n")
            if not line:
                if data:
                    value = json.loads("\n".join(data))
                    if kind == "error":
                        raise UserError(value["error"], value.get("hint"))
                    yield kind, value
                    if kind == "end":
                        return
                kind, data = "message", []
            elif line.startswith("event:"):
                kind = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].strip())
        # It ended without `end`: the server closed it on its way out.
        raise self.stopped(method, path)


def _error(status: int, answer: Any) -> ServerError:
    detail = answer.get("detail") if isinstance(answer, dict) else None
    hint = answer.get("hint") if isinstance(answer, dict) else None
    if isinstance(detail, list):  # a request validation error: name the first field
        first = detail[0] if detail else {}
        where = ".".join(str(part) for part in first.get("loc", [])[1:])
        detail = f"{where}: {first.get('msg', 'invalid')}"
    return ServerError(status, str(detail or f"the studio server answered {status}"), hint)


def status_of(state: Path) -> dict[str, Any] | None:
    """The running server's `/api/status`, or None when none answers."""
    discovery = files.live_discovery(state)
    token = files.read_token(state)
    if discovery is None or token is None:
        return None
    try:
        return StudioClient(state.parent, discovery, token).call("GET", "/api/status", timeout=5)
    except (OSError, UserError):
        return None


def running_client(home: Path) -> StudioClient | None:
    state = home / ".anime-chat"
    discovery = files.live_discovery(state)
    token = files.read_token(state)
    if discovery is None or token is None:
        return None
    return StudioClient(home, discovery, token)


def start_server(home: Path) -> subprocess.Popen[bytes]:
    """Start the server in the background, detached from this terminal; it logs to
    `<state>/logs/server.log` and exits after `server.keep_alive` idle."""
    return start_detached(ENTRY_MODULE, home, server_log(home / ".anime-chat"), "--background")


def with_my_environment(client: StudioClient) -> StudioClient:
    """The client, once its server (and so the worker it starts) runs with this process's
    `HF_*`: an idle server started with others is replaced (with its idle worker); a busy one
    is left alone, and the server itself refuses the job in one line (`EnvironmentMismatch`)."""
    from tools.jobs.processes import stop_worker

    status = client.call("GET", "/api/status", timeout=10)
    if status.get("env") == process_environment() or status.get("busy"):
        return client
    state = client.home / ".anime-chat"
    files.stop_server(state)
    stop_worker(state)
    return connect(client.home)


def _start_failure(path: Path, offset: int) -> UserError:
    """Why the server that was just started exited, from what it added to its log: its own
    `error:`/`hint:` lines when it printed them, else the last line (a traceback's)."""
    try:
        with open(path, "rb") as handle:
            handle.seek(offset)
            text = handle.read().decode("utf-8", errors="replace")
    except OSError:
        text = ""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    errors = [i for i, line in enumerate(lines) if line.startswith("error: ")]
    fix = (
        f"run `anime-gen serve` to see the whole error (log: {path}); ANIME_IN_PROCESS=1 runs"
        " commands without the server"
    )
    if errors:
        i = errors[-1]
        hint = lines[i + 1][6:] if i + 1 < len(lines) and lines[i + 1].startswith("hint: ") else fix
        return UserError(f"the studio server could not start: {lines[i][7:]}", hint)
    return UserError(f"the studio server could not start: {lines[-1] if lines else 'no log'}", fix)


def connect(home: Path | None = None, start: bool = True) -> StudioClient:
    """A client of the home's server; starts one in the background when none runs.

    Raises a one-line `UserError` with the fix when it cannot start.
    """
    home = home or home_from_env()
    client = running_client(home)
    if client is not None or not start:
        if client is None:
            raise UserError("no studio server is running", "anime-gen serve")
        return client
    state = home / ".anime-chat"
    log_file = server_log(state)
    offset = log_file.stat().st_size if log_file.exists() else 0
    process = start_server(home)
    starts = 1
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        client = running_client(home)
        if client is not None:
            try:
                client.call("GET", "/api/status", timeout=5)
                return client
            except (OSError, ServerStopped):
                pass
        # Ours exits at once when another client's server holds the home's lock: wait for that
        # one to listen. Only when no server holds it did ours fail (or made way for one that
        # has gone since: an idle one exiting just then, so start once more).
        exited = process.poll() is not None
        if exited and not files.server_running(state) and running_client(home) is None:
            if process.returncode != 0 or starts == MAX_STARTS:
                raise _start_failure(log_file, offset)
            process, starts = start_server(home), starts + 1
        time.sleep(0.05)
    raise UserError(
        f"the studio server did not answer within {START_TIMEOUT:g} s",
        f"see {server_log(state)}, or run `anime-gen serve`",
    )
