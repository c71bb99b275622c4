"""Long calls (a chat turn, a character sheet) answered as server-sent events.

The call runs in a thread and reports through `emit(kind, data)`; the stream forwards each event,
then `end` with the call's result, or `error` with `{"error", "hint"}` (a user error keeps its
hint; a bug is logged in the server's log and named in one line). A client that goes away sets
`cancelled`, which the call checks where it can stop (the chat turn: before its next image).
"""

from __future__ import annotations

import asyncio
import json
import logging
import queue
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import Request
from fastapi.responses import StreamingResponse

log = logging.getLogger("anime.server")
Emit = Callable[[str, Any], None]
POLL_SECONDS = 0.05
# An idle stream sends a comment line this often, so a client that left is noticed.
HEARTBEAT_SECONDS = 2.0


def sse(kind: str, data: Any) -> str:
    return f"event: {kind}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


def stream_call(
    request: Request, call: Callable[[Emit, threading.Event], Any]
) -> StreamingResponse:
    from tools.errors import UserError
    from tools.server.app import studio_of

    studio = studio_of(request)
    events: queue.Queue[tuple[str, Any]] = queue.Queue()
    cancelled = threading.Event()

    def run() -> None:
        try:
            events.put(("end", call(lambda kind, data: events.put((kind, data)), cancelled)))
        except UserError as error:  # PoseBankError too
            events.put(("error", {"error": error.message, "hint": error.hint}))
        except BaseException as error:  # noqa: BLE001  (a bug: logged, reported in one line)
            if cancelled.is_set() and isinstance(error, KeyboardInterrupt):
                events.put(("error", {"error": "cancelled", "hint": None}))
                return
            log.exception("%s %s failed", request.method, request.url.path)
            events.put(
                (
                    "error",
                    {
                        "error": f"the studio server failed: {type(error).__name__}: {error}",
                        "hint": f"the traceback is in {studio.state / 'logs' / 'server.log'}",
                    },
                )
            )

    async def stream() -> AsyncIterator[str]:
        studio.open_streams += 1
        threading.Thread(target=run, daemon=True, name="stream-call").start()
        loop = asyncio.get_running_loop()
        quiet_since = loop.time()
        finished = False
        try:
            while True:
                try:
                    kind, data = events.get_nowait()
                except queue.Empty:
                    if await request.is_disconnected():
                        return
                    if loop.time() - quiet_since > HEARTBEAT_SECONDS:
                        quiet_since = loop.time()
                        yield ":\n\n"
                    await asyncio.sleep(POLL_SECONDS)
                    continue
                quiet_since = loop.time()
                yield sse(kind, data)
                if kind in ("end", "error"):
                    finished = True
                    return
        finally:
            # Left before the end (disconnect, Ctrl-C in the client): ask the call to stop.
            if not finished:
                cancelled.set()
            studio.open_streams -= 1

    return StreamingResponse(stream(), media_type="text/event-stream")
