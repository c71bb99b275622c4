"""The FastAPI app factory: security middleware, the core routes, and the place routers plug in.

`create_app(studio, routers)` takes every extra `APIRouter` (the chat planner's, the gallery's)
and mounts it behind the same token dependency, so a new router needs no auth code of its own.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, PlainTextResponse

from tools.errors import UserError
from tools.gallery import gallery_routers, login_router
from tools.gallery.auth import LOGIN_PATH
from tools.mcp.http import PATH as MCP_PATH
from tools.mcp.http import McpEndpoint
from tools.server.a1111_routes import a1111_router
from tools.server.body_limit import BodyLimit
from tools.server.library_routes import library_router
from tools.server.routes import core_router
from tools.server.security import (
    allowed_host,
    allowed_origin,
    require_token,
    with_security_headers,
)
from tools.server.studio import Studio

BACKGROUND_HEADER = "X-Anime-Background"
A1111_PREFIX = "/sdapi/"


def _challenge(path: str) -> str:
    """A1111's API challenges HTTP Basic as A1111's `--api-auth` does (clients that answer a
    challenge send their credentials only then); elsewhere Bearer alone, so a browser tab never
    pops a login dialog."""
    return 'Basic realm="anime-chat", Bearer' if path.startswith(A1111_PREFIX) else "Bearer"


def create_app(studio: Studio, routers: Iterable[APIRouter] = ()) -> FastAPI:
    app = FastAPI(title="anime-chat studio", version="1")
    app.state.studio = studio
    app.state.token = studio.token

    # Registered first, so it runs inside `loopback_only`: Host, Origin and token come first.
    app.add_middleware(BodyLimit)

    @app.middleware("http")
    async def loopback_only(request: Request, call_next: Any) -> Any:
        host = request.headers.get("host")
        if not allowed_host(host, studio.host, studio.allowed_hosts) or not allowed_origin(
            request.headers.get("origin"), request.url.scheme, host
        ):
            refused = JSONResponse({"detail": "Host or Origin is not this server"}, 403)
            return with_security_headers(refused)
        if request.url.path != LOGIN_PATH:
            # Before any route reads a body: an anonymous 300 MB POST costs nothing.
            try:
                require_token(request)
            except HTTPException as error:
                refused = JSONResponse(
                    {"detail": error.detail},
                    401,
                    headers={"WWW-Authenticate": _challenge(request.url.path)},
                )
                return with_security_headers(refused)
        if request.headers.get(BACKGROUND_HEADER) == "1":
            # An open gallery tab's idle check: it must not keep the server from its idle exit.
            return with_security_headers(await call_next(request))
        studio.last_activity = time.monotonic()
        studio.in_flight += 1
        try:
            return with_security_headers(await call_next(request))
        finally:
            studio.in_flight -= 1
            studio.last_activity = time.monotonic()

    @app.exception_handler(UserError)  # PoseBankError too: handlers match subclasses
    async def user_error(_request: Request, error: UserError) -> JSONResponse:
        message = error.message
        return JSONResponse(
            {"detail": message, "error": message, "hint": error.hint},
            status_code=422,
        )

    @app.exception_handler(Exception)
    async def server_error(_request: Request, _error: Exception) -> PlainTextResponse:
        # Starlette's ServerErrorMiddleware (outside every middleware) answers a bug and then
        # re-raises it to be logged; this handler only gives that 500 the security headers.
        return with_security_headers(PlainTextResponse("Internal Server Error", 500))

    # The gallery's login link carries its own code (exchanged for the token cookie).
    app.include_router(login_router())
    # Every router, the core ones, the gallery's and those plugged in (planner), needs the token.
    for router in (core_router, library_router, *gallery_routers(), *routers):
        app.include_router(router, dependencies=[Depends(require_token)])
    app.include_router(a1111_router, dependencies=[Depends(require_token)])  # /sdapi/v1 (A1111)
    # The MCP door (streamable HTTP): an ASGI app that checks the same token itself (and the
    # middleware above checked it first).
    app.add_route(MCP_PATH, McpEndpoint(studio.home), include_in_schema=False)
    return app
