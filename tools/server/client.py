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
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from tools.errors import UserError
from tools.jobs.processes import start_detached
from tools.server import files

START_TIMEOUT = 90.0
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
        finally:
            connection.close()
        answer = json.loads(data) if data else None
        if response.status >= 400:
            raise _error(response.status, answer)
        return answer

    def events(self, job_id: str, flags: dict[str, Any] | None = None) -> Iterator[tuple[str, Any]]:
        """The job's server-sent events as (kind, data) until its `end` event."""
        return self.stream("GET", f"/api/jobs/{job_id}/events", flags=flags)

    def stream(
        self, method: str, path: str, body: Any = None, flags: dict[str, Any] | None = None
    ) -> Iterator[tuple[str, Any]]:
        """A streaming route's server-sent events as (kind, data), up to `end`; an `error`
        event (a long call's user error) is raised as a `UserError`."""
        connection = self._connection(None)
        try:
            payload = None if body is None else json.dumps(body)
            connection.request(method, path, body=payload, headers=self._headers(flags))
            response = connection.getresponse()
            if response.status >= 400:
                raise _error(response.status, json.loads(response.read() or b"null"))
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
        finally:
            connection.close()


def follow_job(
    client: StudioClient,
    job_id: str,
    on_progress: Callable[[dict[str, Any]], None] | None = None,
    restarts: int = 3,
) -> list[dict[str, Any]]:
    """Follow the job's events until it ends; the server going away (crash, kill -9) is
    survived by starting it again (the job is in the journal and goes on). Returns the image
    records in order, or raises the job's error as a `UserError` with the retry command."""
    while True:
        try:
            for kind, data in client.events(job_id):
                if kind == "progress" and on_progress is not None:
                    on_progress(data)
                elif kind == "end":
                    return _records_or_error(data)
        except (OSError, http.client.HTTPException):
            if restarts <= 0:
                raise UserError(
                    "the studio server keeps stopping before the job is done",
                    f"see {server_log(client.home / '.anime-chat')}",
                ) from None
            restarts -= 1
            time.sleep(0.5)
            client = connect(client.home)


def _records_or_error(job: dict[str, Any]) -> list[dict[str, Any]]:
    if job["state"] == "done":
        return job["records"]
    retry = f"anime-gen jobs retry {job['id']}"
    if job["state"] == "cancelled":
        raise UserError(f"job {job['id']} was cancelled", retry)
    reason, _, fix = (job.get("error") or "").partition("\nhint: ")
    raise UserError(f"job {job['id']} failed: {reason}", f"{fix}; then {retry}" if fix else retry)


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
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        client = running_client(home)
        if client is not None:
            try:
                client.call("GET", "/api/status", timeout=5)
                return client
            except OSError:
                pass
        if process.poll() is not None and running_client(home) is None:
            raise _start_failure(log_file, offset)
        time.sleep(0.05)
    raise UserError(
        f"the studio server did not answer within {START_TIMEOUT:g} s",
        f"see {server_log(state)}, or run `anime-gen serve`",
    )
