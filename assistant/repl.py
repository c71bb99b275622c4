"""The interactive loop: line editing and history (prompt_toolkit) on a terminal, plain lines
from a pipe. Ctrl-C cancels the request in flight and keeps the session; Ctrl-D exits.

It drives a `StudioChat` (the conversation and its memory live in the studio server) or a
`LocalChat` (`ANIME_IN_PROCESS=1`); both answer alike (`assistant/chat_clients.py`).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console

from tools.errors import UserError
from tools.private_dir import private_dir

HELP = """Ask in plain words, e.g. "draw yuki sitting reading, 5 variations",
"every character at the beach", "3 more of that", "the second one again but smiling".
Commands: /help  /characters  /jobs  /quit   (Ctrl-C cancels a request, Ctrl-D exits)"""
HISTORY_FILE = "chat_history"


def _line_reader(state: Path) -> Callable[[], str]:
    """A prompt with history in the state dir on a terminal; plain stdin lines otherwise."""
    if not sys.stdin.isatty():

        def read_plain() -> str:
            line = sys.stdin.readline()
            if not line:
                raise EOFError
            return line.rstrip("\n")

        return read_plain
    from prompt_toolkit import PromptSession
    from prompt_toolkit.history import FileHistory

    private_dir(state)
    session: PromptSession[str] = PromptSession(history=FileHistory(str(state / HISTORY_FILE)))
    return lambda: session.prompt("anime> ")


def handle_command(line: str, chat: Any) -> str | None:
    """The answer to a slash command; None means quit."""
    name = line.split()[0].lower()
    if name in ("/quit", "/exit", "/q"):
        return None
    if name in ("/help", "/?"):
        return HELP
    if name in ("/characters", "/jobs"):
        return chat.command(name)
    return f"unknown command {name}; try /help"


def run_repl(chat: Any, console: Console | None = None) -> None:
    from assistant import reply

    console = console or Console()
    read = _line_reader(chat.state)
    console.print(f"anime-chat ({chat.planner_name} planner). /help for help.")
    while True:
        try:
            line = read().strip()
        except KeyboardInterrupt:
            continue
        except EOFError:
            break
        if not line:
            continue
        if line.startswith("/"):
            answer = handle_command(line, chat)
            if answer is None:
                break
            console.print(answer, markup=False, highlight=False, soft_wrap=True)
            continue
        try:
            turn = chat.run(line, console)
        except KeyboardInterrupt:
            console.print("cancelled")
            continue
        except UserError as error:
            console.print(
                f"error: {error.message}" + (f"\nhint: {error.hint}" if error.hint else ""),
                markup=False,
            )
            continue
        console.print(turn.text, markup=False, highlight=False, soft_wrap=True)
        protocol = reply.terminal_protocol(sys.stdout)
        sys.stdout.write(reply.inline_thumbnails(turn.paths, protocol))
