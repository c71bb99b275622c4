"""The studio server as the front ends run it: the core app plus the routers that need
`assistant` (the chat planner), and the background entry point the clients start.

Routers are plugged in here, in `routers()`; the gallery adds its own beside the planner's.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import uuid
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel

from tools.server.app import request_settings, studio_of
from tools.settings import Settings

planner_router = APIRouter(prefix="/api")


class PlanBody(BaseModel):
    text: str
    planner: str = "auto"
    model: str | None = None
    # A session id keeps the conversation's memory ("3 more of that") in the server.
    session: str | None = None


@planner_router.post("/plan")
def plan(
    body: PlanBody, request: Request, settings: Settings = Depends(request_settings)
) -> dict[str, Any]:
    """`anime-chat -c TEXT --plan-only --json`, planned in the server (Ollama or rules)."""
    from assistant.context import planner_context
    from assistant.planners import choose_planner
    from assistant.session import Session

    studio = studio_of(request)
    notices: list[str] = []
    chosen = choose_planner(
        body.planner,
        settings.ollama_host(),
        body.model or settings.llm.model,
        notices.append,
        timeout=settings.llm.timeout,
    )
    session_id = body.session or uuid.uuid4().hex[:12]
    session = studio.sessions.setdefault(session_id, Session())
    runtime = studio.runtime(settings)
    planned = chosen.plan(body.text, planner_context(runtime, session.previous))
    return {"plan": planned.contract(), "notices": notices, "session": session_id}


def routers() -> list[APIRouter]:
    """Every router the studio serves besides the core one (each gets the token check)."""
    return [planner_router]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m assistant.studio")
    parser.add_argument("--host")
    parser.add_argument("--port", type=int)
    parser.add_argument("--background", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s server[{os.getpid()}] %(message)s")
    from tools.errors import UserError
    from tools.server.serve import serve
    from tools.settings import resolve_home

    try:
        return serve(
            Path(resolve_home()), routers(), args.host, args.port, background=args.background
        )
    except UserError as error:
        print(f"error: {error.message}", file=sys.stderr)
        if error.hint:
            print(f"hint: {error.hint}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
