"""A cap on request bodies, enforced while they are read (an ASGI middleware).

A declared `Content-Length` over the cap is refused before a byte is read; a chunked body is
counted as it arrives and refused when it passes the cap, so no request can make the server
hold more than the cap in memory.
"""

from __future__ import annotations

from typing import Any

from fastapi import HTTPException
from fastapi.responses import JSONResponse

# The largest body a client sends is a reference or init image as base64 (A1111 img2img): a
# 4096² PNG is under 48 MiB as base64.
MAX_BODY_BYTES = 64 * 1024 * 1024

Scope = dict[str, Any]


def _too_large(limit: int) -> str:
    return f"request body over {limit // (1024 * 1024)} MiB"


class BodyLimit:
    def __init__(self, app: Any, limit: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length", b"0")
        # A number too long for the cap is over it (int() refuses more than 4300 digits).
        if not declared.isdigit() or len(declared) > 20 or int(declared) > self.limit:
            status = 413 if declared.isdigit() else 400
            detail = _too_large(self.limit) if status == 413 else "bad Content-Length"
            await JSONResponse({"detail": detail}, status)(scope, receive, send)
            return
        received = 0

        async def counted() -> dict[str, Any]:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.limit:
                raise HTTPException(413, _too_large(self.limit))
            return message

        await self.app(scope, counted, send)
