"""The studio server as the front ends run it: the core app plus the routers that need
`assistant` (the chat planner), and the background entry point the clients start.

Routers are plugged in here, in `routers()`; the gallery adds its own beside the planner's.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from tools.server.studio import request_settings, require_my_environment, studio_of
from tools.settings import Settings

planner_router = APIRouter(prefix="/api")
# Conversations the server remembers ("3 more of that"); the oldest go first beyond this.
MAX_SESSIONS = 200


class PlanBody(BaseModel):
    text: str
    planner: str = "auto"
    model: str | None = None
    # A session id keeps the conversation's memory ("3 more of that") in the server.
    session: str | None = None


def _session(studio: Any, session_id: str | None) -> tuple[str, Any]:
    from assistant.session import Session

    session_id = session_id or uuid.uuid4().hex[:12]
    sessions = studio.sessions
    with studio.sessions_lock:
        session = sessions.pop(session_id, None) or Session()
        sessions[session_id] = session  # most recently used last
        while len(sessions) > MAX_SESSIONS:
            sessions.pop(next(iter(sessions)))
    return session_id, session


def _conversation(
    request: Request, settings: Settings, body: PlanBody, notice: Callable[[str], None]
) -> tuple[str, Any]:
    """The session's conversation with this request's planner, settings and warm runtime."""
    from assistant.conversation import Conversation
    from assistant.planners import choose_planner

    studio = studio_of(request)
    chosen = choose_planner(
        body.planner,
        settings.ollama_host(),
        body.model or settings.llm.model,
        notice,
        timeout=settings.llm.timeout,
    )
    session_id, session = _session(studio, body.session)
    conversation = Conversation(settings, chosen)
    conversation.session = session
    conversation.__dict__["runtime"] = studio.runtime(settings)
    return session_id, conversation


@planner_router.post("/plan")
def plan(
    body: PlanBody, request: Request, settings: Settings = Depends(request_settings)
) -> dict[str, Any]:
    """`anime-chat -c TEXT --plan-only --json`, planned in the server (Ollama or rules)."""
    notices: list[str] = []
    session_id, conversation = _conversation(request, settings, body, notices.append)
    planned = conversation.plan(body.text)
    return {"plan": planned.contract(), "notices": notices, "session": session_id}


@planner_router.post("/chat/planner")
def chat_planner(body: PlanBody, settings: Settings = Depends(request_settings)) -> dict[str, Any]:
    """Which planner a conversation gets (the REPL's banner), with the fallback notice."""
    from assistant.planners import choose_planner

    notices: list[str] = []
    chosen = choose_planner(
        body.planner,
        settings.ollama_host(),
        body.model or settings.llm.model,
        notices.append,
        timeout=settings.llm.timeout,
    )
    return {"planner": chosen.name, "notices": notices}


@planner_router.post("/chat")
def chat(
    body: PlanBody, request: Request, settings: Settings = Depends(request_settings)
) -> StreamingResponse:
    """`anime-chat -c TEXT` (and each REPL line): plan and execute in the server, as
    server-sent events: `notice`, `plan` (with the images it will make), `image` per finished
    image, then `end` with the answer the CLI prints."""
    from tools.server.streaming import stream_call

    def run_turn(emit: Callable[[str, Any], None], cancelled: threading.Event) -> Any:
        from assistant.chat_clients import ChatAnswer

        session_id, conversation = _conversation(
            request, settings, body, lambda line: emit("notice", line)
        )

        def on_plan(planned: Any, total: int) -> None:
            if total:
                require_my_environment(request)
            emit("plan", {"session": session_id, "plan": planned.contract(), "images": total})

        conversation.on_plan = on_plan

        def on_image(record: Any) -> None:
            emit("image", record.model_dump(mode="json"))
            if cancelled.is_set():
                raise KeyboardInterrupt  # the worker call cancels the job on it

        conversation.on_image = on_image
        turn = conversation.run(body.text, None)
        return {"session": session_id, "answer": ChatAnswer.of_turn(turn).as_json()}

    return stream_call(request, run_turn)


@planner_router.post("/chat/command")
def chat_command(body: PlanBody, request: Request) -> dict[str, Any]:
    """The REPL's `/characters` and `/jobs`."""
    from assistant.chat_clients import characters_text, jobs_text

    studio = studio_of(request)
    if body.text == "/characters":
        return {"text": characters_text(studio.runtime(studio.settings()).characters.list())}
    return {"text": jobs_text(studio.state)}


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
    from tools.settings import resolve_home, unknown_environment

    # Started by a client with its environment: the client has warned already; the log says it once.
    for line in unknown_environment():
        logging.getLogger("anime.server").warning("%s", line)
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
