"""The interactive loop: line editing and history (prompt_toolkit) on a terminal, plain lines
from a pipe. Ctrl-C cancels the request in flight and keeps the session; Ctrl-D exits."""

from __future__ import annotations

import sys
from collections.abc import Callable

from rich.console import Console

from assistant.conversation import Conversation
from tools.errors import UserError

HELP = """Ask in plain words, e.g. "draw yuki sitting reading, 5 variations",
"every character at the beach", "3 more of that", "the second one again but smiling".
Commands: /help  /characters  /jobs  /quit   (Ctrl-C cancels a request, Ctrl-D exits)"""
HISTORY_FILE = "chat_history"


def _line_reader(conversation: Conversation) -> Callable[[], str]:
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

    state = conversation.settings.paths.state
    state.mkdir(parents=True, exist_ok=True)
    session: PromptSession[str] = PromptSession(history=FileHistory(str(state / HISTORY_FILE)))
    return lambda: session.prompt("anime> ")


def _characters(conversation: Conversation) -> str:
    characters = conversation.runtime.characters.list()
    if not characters:
        return "no characters yet: `anime-gen characters add NAME --image PATH`"
    return "\n".join(c.name + (f": {c.description}" if c.description else "") for c in characters)


def _jobs(conversation: Conversation) -> str:
    from tools.jobs.journal import JobJournal

    jobs = JobJournal.for_state(conversation.settings.paths.state).list(10)
    if not jobs:
        return "no jobs yet"
    return "\n".join(job.describe() for job in jobs)


def handle_command(line: str, conversation: Conversation) -> str | None:
    """The answer to a slash command; None means quit."""
    name = line.split()[0].lower()
    if name in ("/quit", "/exit", "/q"):
        return None
    if name in ("/help", "/?"):
        return HELP
    if name == "/characters":
        return _characters(conversation)
    if name == "/jobs":
        return _jobs(conversation)
    return f"unknown command {name}; try /help"


def run_repl(conversation: Conversation, console: Console | None = None) -> None:
    from assistant import reply

    console = console or Console()
    read = _line_reader(conversation)
    console.print(f"anime-chat ({conversation.planner.name} planner). /help for help.")
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
            answer = handle_command(line, conversation)
            if answer is None:
                break
            console.print(answer, markup=False, highlight=False, soft_wrap=True)
            continue
        try:
            turn = conversation.run(line, console)
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
        sys.stdout.write(reply.inline_thumbnails(reply.image_paths(turn.outcomes), protocol))
