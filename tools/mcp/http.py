"""The MCP server over streamable HTTP at `/mcp` on the studio server: the same tools as
`anime-gen mcp`, behind the server's token (`require_token`; the app's loopback Host/Origin
check wraps it like every route).

The SDK's session manager needs a running task group for its sessions. The studio server runs
uvicorn without a lifespan, so the manager is started on the first `/mcp` request, in a task
of the server's event loop that lives as long as the server (the SDK imports only then too).
The tools call the server's own API over loopback with its token, exactly as the stdio process
does, so both transports share one definition.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from fastapi import HTTPException, Request
from fastapi.responses import JSONResponse

from tools.server.security import require_token, with_security_headers

PATH = "/mcp"


class McpEndpoint:
    """An ASGI app for `PATH`: token check, then the SDK's streamable HTTP transport."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self._handler: Any = None
        self._starting: asyncio.Lock | None = None
        self._task: asyncio.Task[None] | None = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            require_token(Request(scope, receive))
        except HTTPException as error:
            refused = JSONResponse(
                {"detail": error.detail}, error.status_code, headers={"WWW-Authenticate": "Bearer"}
            )
            await with_security_headers(refused)(scope, receive, send)
            return
        handler = await self._started()
        await handler(scope, receive, send)

    async def _started(self) -> Any:
        if self._handler is not None:
            return self._handler
        self._starting = self._starting or asyncio.Lock()
        async with self._starting:
            if self._handler is None:
                from mcp.server.streamable_http_manager import StreamableHTTPSessionManager

                # Host/Origin are checked by the app's middleware (ours: the bound host too).
                manager = StreamableHTTPSessionManager(app=self._server(), security_settings=None)
                ready = asyncio.Event()
                self._task = asyncio.get_running_loop().create_task(self._run(manager, ready))
                waiting = asyncio.ensure_future(ready.wait())
                await asyncio.wait({self._task, waiting}, return_when=asyncio.FIRST_COMPLETED)
                if not ready.is_set():
                    waiting.cancel()
                    self._task.result()  # raises why the manager could not start
                self._handler = manager.handle_request
        return self._handler

    def _server(self) -> Any:
        from tools.mcp.calls import Toolset
        from tools.mcp.server import build_server
        from tools.server.client import connect

        return build_server(Toolset(lambda: connect(self.home, start=False)))

    @staticmethod
    async def _run(manager: Any, ready: asyncio.Event) -> None:
        async with manager.run():
            ready.set()
            await asyncio.Event().wait()  # until the server's loop ends
