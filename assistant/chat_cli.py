"""`anime-chat`: the REPL, or one request with `-c TEXT` (`--plan-only --json` executes nothing).

Kept light at import time: `--help` must not load torch, diffusers, chromadb or
sentence-transformers, so everything heavy is imported inside the functions that need it.
"""

from __future__ import annotations

import json
import sys
from enum import StrEnum

import typer

from assistant.cli_common import log_bug, print_user_error
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
    try:
        if (
            command is not None
            and plan_only
            and _plan_in_server(command, planner.value, model, as_json)
        ):
            return
        conversation = _conversation(planner.value, model)
        if command is None:
            from assistant.repl import run_repl

            run_repl(conversation)
            return
        _one_shot(conversation, command, plan_only, as_json)
    except UserError as error:
        print_user_error(error)
        raise typer.Exit(1) from None
    except typer.Exit:
        raise
    except Exception as error:
        log_bug(error)
        raise


def _plan_in_server(text: str, kind: str, model: str | None, as_json: bool) -> bool:
    """Plan through the studio server; False (plan here instead) when it cannot start."""
    from assistant.cli_common import echo_notices, studio_client

    try:
        client = studio_client()
    except UserError as error:
        typer.echo(f"notice: {error.message}; planning in this process", err=True)
        return False
    if client is None:
        return False
    answer = client.call("POST", "/api/plan", {"text": text, "planner": kind, "model": model})
    echo_notices(answer)
    plan = answer["plan"]
    typer.echo(json.dumps(plan, indent=2) if as_json else plan["reply"])
    return True


def _conversation(kind: str, model: str | None):
    from assistant.conversation import Conversation
    from assistant.planners import choose_planner
    from tools.settings import load_settings

    settings = load_settings(overrides={"llm": {"model": model}} if model else None)
    notice = lambda line: typer.echo(line, err=True)  # noqa: E731
    chosen = choose_planner(
        kind, settings.ollama_host(), settings.llm.model, notice, timeout=settings.llm.timeout
    )
    return Conversation(settings, chosen)


def _one_shot(conversation, text: str, plan_only: bool, as_json: bool) -> None:
    if plan_only:
        plan = conversation.plan(text)
        typer.echo(json.dumps(plan.contract(), indent=2) if as_json else plan.reply)
        return
    from rich.console import Console

    from assistant import reply

    turn = conversation.run(text, Console(stderr=True))
    if as_json:
        outputs = [record.model_dump(mode="json") for record in turn.images]
        typer.echo(json.dumps({**turn.plan.contract(), "outputs": outputs}, indent=2))
    else:
        typer.echo(turn.text)
        protocol = reply.terminal_protocol(sys.stdout)
        sys.stdout.write(reply.inline_thumbnails(reply.image_paths(turn.outcomes), protocol))
    if any(outcome.error for outcome in turn.outcomes) and not turn.images:
        raise typer.Exit(1)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
