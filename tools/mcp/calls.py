"""What an MCP tool call has to work with: the studio server, a channel back to its client
(progress, cancellation), and the reply it builds.

Tool functions are plain blocking code (the studio client is `http.client`); the MCP layer runs
each in a thread and carries `Call.report` back to the event loop.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tools.errors import UserError
from tools.server.client import ServerError, StudioClient

Report = Callable[[float, float | None, str | None], None]
MAX_PREVIEWS = 4


@dataclass
class Reply:
    """A tool's answer: text for the model, images to show (previews of these paths), and the
    same facts as data (`structuredContent`)."""

    text: str
    images: list[str] = field(default_factory=list)
    data: dict[str, Any] | None = None
    error: bool = False


class CallCancelled(Exception):
    """The client cancelled the call (`notifications/cancelled`) before it was done."""


@dataclass
class Call:
    """One tool call's channel back to its client."""

    send: Report = lambda progress, total, message: None
    cancelled: threading.Event = field(default_factory=threading.Event)
    jobs: list[str] = field(default_factory=list)
    _last: float = -1.0

    def report(self, progress: float, total: float | None, message: str | None = None) -> None:
        """Forward progress; MCP requires each value to exceed the one before, so a sample
        that would go back (or stand still) is not sent."""
        if self.cancelled.is_set() or progress <= self._last:
            return
        self._last = progress
        self.send(progress, total, message)

    def check(self) -> None:
        if self.cancelled.is_set():
            raise CallCancelled


class Toolset:
    """The tools' access to the studio server. `connect` gives a client of it (starting it on
    demand over stdio, the server itself over HTTP); `remember_chat` keeps one conversation per
    toolset (stdio: one process per client) for `chat` calls that name no session."""

    def __init__(self, connect: Callable[[], StudioClient], remember_chat: bool = False) -> None:
        self._connect = connect
        self.remember_chat = remember_chat
        self.chat_session: str | None = None

    def client(self) -> StudioClient:
        return self._connect()

    def cancel_jobs(self, jobs: list[str]) -> None:
        """Cancel what a cancelled call queued (each once; a job already done stays done)."""
        client = self.client()
        for job in jobs:
            try:
                client.call("POST", f"/api/jobs/{job}/cancel", {}, timeout=30)
            except (OSError, UserError):
                continue


def error_reply(error: UserError) -> Reply:
    """Our one line plus hint, as an `isError` result."""
    text = f"error: {error.message}" + (f"\nhint: {error.hint}" if error.hint else "")
    return Reply(text, error=True)


def with_library_names(client: StudioClient, error: ServerError) -> UserError:
    """An unknown character's error, naming the library's characters when the server's
    suggestions came up empty (an agent can pick one without another call)."""
    if not error.message.startswith("unknown character") or "did you mean" in (error.hint or ""):
        return error
    try:
        names = [entry["name"] for entry in client.call("GET", "/api/characters", timeout=30)]
    except (OSError, UserError):
        return error
    hint = f"the library has: {', '.join(names[:20])}" if names else error.hint
    return UserError(error.message, hint)


def image_lines(records: list[dict[str, Any]]) -> list[str]:
    lines = []
    for record in records:
        scores = record.get("scores") or {}
        consistency = scores.get("consistency")
        score = f", consistency {consistency:.2f}" if isinstance(consistency, float) else ""
        verdict = "" if record.get("accepted", True) else " (REJECTED by the quality gate)"
        lines.append(
            f"- {record['path']}  {record.get('character')}, pose "
            f"{(record.get('pose') or {}).get('id')}, seed {record.get('seed')}{score}{verdict}"
        )
    return lines


def preview_paths(records: list[dict[str, Any]]) -> list[str]:
    """The images to show: accepted ones first, at most `MAX_PREVIEWS`."""
    ranked = sorted(records, key=lambda record: not record.get("accepted", True))
    return [str(Path(record["path"])) for record in ranked if record.get("path")][:MAX_PREVIEWS]
