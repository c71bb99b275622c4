"""What the server keeps warm (`Studio`) and what a request resolves to: its settings and
overrides (flags and environment sent by the client), and the environment check for jobs.

Routers (core, library, gallery, planner) import these; `tools.server.app` imports the routers.
"""

from __future__ import annotations

import json
import os
import secrets
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from fastapi import Request

from tools.errors import UserError
from tools.gallery.auth import LoginCodes
from tools.once import built_once, once_property
from tools.server.client import process_environment
from tools.settings import Settings, load_settings

OVERRIDES_HEADER = "X-Anime-Overrides"
T = TypeVar("T")


class Studio:
    """What the server keeps warm for every request: the home, the pose bank, the sessions."""

    def __init__(
        self,
        home: Path,
        token: str,
        host: str,
        background: bool = False,
        allowed_hosts: frozenset[str] = frozenset(),
    ) -> None:
        self.home = home
        self.token = token
        self.host = host
        self.allowed_hosts = allowed_hosts
        self.port = 0
        self.background = background
        self.last_activity = time.monotonic()
        self.open_streams = 0
        # Requests being answered: a slow one (the embedder's first load) is not idle time.
        self.in_flight = 0
        self.sessions: dict[str, Any] = {}
        # The gallery's cookie value: its own secret, so a cookie leaked to another local
        # port is not the bearer token (tools/server/security.py).
        self.gallery_session = secrets.token_urlsafe(32)
        self.login_codes = LoginCodes()
        # Requests run in a thread pool: the sessions change under this lock only.
        self.sessions_lock = threading.Lock()

    @property
    def state(self) -> Path:
        return self.home / ".anime-chat"

    def settings(self, overrides: dict[str, Any] | None = None) -> Settings:
        """The settings a request asks for: its flags and environment over the config file,
        read again on every request (so an edited config applies without a restart)."""
        overrides = overrides or {}
        return load_settings(
            overrides=overrides.get("flags") or None, env=overrides.get("env") or {}, home=self.home
        )

    def warm(self, name: str, build: Callable[[], T]) -> T:
        """A warm resource of another module (the gallery's catalog): built by `build` on the
        first request that needs it, once, however many ask at once."""
        return built_once(self, f"warm_{name}", build)

    @once_property
    def poses(self) -> Any:
        from posebank import PoseBank

        settings = self.settings()
        return PoseBank(settings.paths.state, settings.paths.user_poses)

    def runtime(self, settings: Settings) -> Any:
        """A `Runtime` for these settings that shares the warm pose bank (and its embedder)."""
        from tools.generation.runtime import Runtime

        runtime = Runtime(settings)
        runtime.poses = self.poses
        return runtime

    def roots(self) -> list[Path]:
        paths = self.settings().paths
        return [paths.output, paths.characters, paths.state]

    def busy(self, own_requests: int = 0) -> bool:
        """Requests (beyond the caller's own), event streams or queued jobs keep it busy."""
        from tools.jobs.journal import JobJournal

        if self.in_flight > own_requests or self.open_streams:
            return True
        return JobJournal.for_state(self.state).pending_count() > 0


def request_overrides(request: Request) -> dict[str, Any]:
    """`X-Anime-Overrides: {"flags": {section: {key: value}}, "env": {NAME: value}}`."""
    raw = request.headers.get(OVERRIDES_HEADER)
    if not raw:
        return {}
    try:
        data = json.loads(raw)
    except ValueError:
        data = None
    flags, env = (data.get("flags", {}), data.get("env", {})) if isinstance(data, dict) else (0, 0)
    well_formed = (
        isinstance(flags, dict)
        and all(isinstance(section, dict) for section in flags.values())
        and isinstance(env, dict)
        and all(isinstance(value, str) for value in env.values())
    )
    if not well_formed:
        raise UserError(
            f"malformed {OVERRIDES_HEADER} header",
            'send {"flags": {section: {key: value}}, "env": {NAME: "value"}} as JSON',
        )
    return data


class EnvironmentMismatch(UserError):
    def __init__(self, differences: list[str]) -> None:
        super().__init__(
            "this command's Hugging Face environment differs from the running studio server's"
            f" ({'; '.join(differences)})",
            "HF_* apply when the server and its worker start: stop them (`anime-gen serve"
            " --stop`) once its jobs are done; the next command starts one with yours",
        )


def require_my_environment(request: Request) -> None:
    """Refuse a job whose `HF_*` the worker could not honour (it read its own at start)."""
    wanted = process_environment(request_overrides(request).get("env") or {})
    mine = process_environment(dict(os.environ))
    differences = [
        f"{name}={wanted.get(name)!r} here, {mine.get(name)!r} in the server"
        for name in sorted(set(wanted) | set(mine))
        if wanted.get(name) != mine.get(name)
    ]
    if differences:
        raise EnvironmentMismatch(differences)


def studio_of(request: Request) -> Studio:
    return request.app.state.studio


def request_settings(request: Request) -> Settings:
    """FastAPI dependency: the settings this request resolves to."""
    return studio_of(request).settings(request_overrides(request))
