"""`anime-chat`: the REPL, or one request with `-c TEXT` (`--plan-only --json` executes nothing).

Kept light at import time: `--help` must not load torch, diffusers, chromadb or
sentence-transformers, so everything heavy is imported inside the functions that need it.
"""

from __future__ import annotations

import json
import sys
from enum import StrEnum
from typing import Any

import typer

from assistant.cli_common import log_bug, print_user_error, warn_unknown_environment
from tools.errors import UserError


class PlannerChoice(StrEnum):
    auto = "auto"
    ollama = "ollama"
    rules = "rules"


app = typer.Typer(add_completion=False, help=__doc__.splitlines()[0])


@app.command()
def chat(
    command: str | None = typer.Option(None, "-c", "--command", help="Run one request and exit."),
    plan_only: bool = typer.Option(False, "--plan-only", help="Print the plan; execute nothing."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
    planner: PlannerChoice = typer.Option(PlannerChoice.auto, "--planner", help="Who plans."),
    model: str | None = typer.Option(None, "--model", help="Ollama model (default: llm.model)."),
) -> None:
    """Talk to your anime studio: `anime-chat`, or `anime-chat -c "draw yuki sitting"`."""
    warn_unknown_environment()
    try:
        session = _chat(planner.value, model, plan_only=command is not None and plan_only)
        if command is None:
            from assistant.repl import run_repl

            run_repl(session)
        elif plan_only:
            plan = session.plan(command)
            typer.echo(json.dumps(plan, indent=2) if as_json else plan["reply"])
        else:
            _one_shot(session, command, as_json)
    except UserError as error:
        print_user_error(error)
        raise typer.Exit(1) from None
    except typer.Exit:
        raise
    except Exception as error:
        log_bug(error)
        raise


def _chat(kind: str, model: str | None, plan_only: bool) -> Any:
    """The conversation in the studio server (started when none runs), or in this process
    under `ANIME_IN_PROCESS=1`. A server that cannot start is one line with the fix, except
    for `--plan-only`, which then plans here."""
    from assistant.chat_clients import LocalChat, StudioChat
    from assistant.cli_common import studio_client

    try:
        client = studio_client()
    except UserError as error:
        if not plan_only:
            raise
        typer.echo(f"notice: {error.message}; planning in this process", err=True)
        client = None
    if client is not None:
        return StudioChat(client, kind, model)
    return LocalChat(_conversation(kind, model))


def _conversation(kind: str, model: str | None) -> Any:
    from assistant.conversation import Conversation
    from assistant.planners import choose_planner
    from tools.settings import load_settings

    settings = load_settings(overrides={"llm": {"model": model}} if model else None)
    notice = lambda line: typer.echo(line, err=True)  # noqa: E731
    chosen = choose_planner(
        kind, settings.ollama_host(), settings.llm.model, notice, timeout=settings.llm.timeout
    )
    return Conversation(settings, chosen)


def _one_shot(session: Any, text: str, as_json: bool) -> None:
    from rich.console import Console

    from assistant import reply

    answer = session.run(text, Console(stderr=True))
    if as_json:
        typer.echo(json.dumps(answer.contract(), indent=2))
    else:
        typer.echo(answer.text)
        protocol = reply.terminal_protocol(sys.stdout)
        sys.stdout.write(reply.inline_thumbnails(answer.paths, protocol))
    if answer.failed and not answer.outputs:
        raise typer.Exit(1)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
