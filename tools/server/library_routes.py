"""The character library's routes: add, edit, remove, the character sheet (streamed), and
linking a `--variations` run; each calls its function in `tools/server/library.py`."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse

from tools.server.app import request_settings, require_my_environment, studio_of
from tools.server.library import (
    AddBody,
    EditBody,
    LinkBody,
    SheetBody,
    add_character,
    character_sheet,
    edit_character,
    link_variations,
    remove_character,
)
from tools.settings import Settings

library_router = APIRouter(prefix="/api")


@library_router.post("/characters")
def characters_add(body: AddBody, settings: Settings = Depends(request_settings)) -> Any:
    return add_character(settings, body)


@library_router.patch("/characters/{name}")
def characters_edit(
    name: str, body: EditBody, settings: Settings = Depends(request_settings)
) -> Any:
    return edit_character(settings, name, body)


@library_router.delete("/characters/{name}")
def characters_remove(name: str, settings: Settings = Depends(request_settings)) -> Any:
    return remove_character(settings, name)


@library_router.post("/characters/sheet")
def characters_sheet(
    body: SheetBody, request: Request, settings: Settings = Depends(request_settings)
) -> StreamingResponse:
    """`anime-gen --character-sheet TEXT`: `notice` events while it draws, then `end`."""
    from tools.server.streaming import stream_call

    if not body.dry_run:
        require_my_environment(request)
    runtime = studio_of(request).runtime(settings)

    def make(emit: Callable[[str, Any], None], _cancelled: threading.Event) -> Any:
        return character_sheet(runtime, body, lambda line: emit("notice", line))

    return stream_call(request, make)


@library_router.post("/variations/link")
def variations_link(
    body: LinkBody, request: Request, settings: Settings = Depends(request_settings)
) -> dict[str, Any]:
    """Link a `--variations` run's accepted images into `<character>/variations/`."""
    return {"links": link_variations(studio_of(request).runtime(settings), body.records)}
