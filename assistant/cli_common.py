"""What both CLIs share: user-error handling, bug logging, JSON printing, settings from flags."""

from __future__ import annotations

import json
import logging
import os
import sys
import traceback
from datetime import UTC, datetime
from typing import Any

import click
import typer
from typer.core import TyperGroup

from tools.env_names import resolve_home, unlisted_names
from tools.errors import UserError
from tools.private_dir import private_dir

log = logging.getLogger("anime")


def print_user_error(error: UserError) -> None:
    typer.echo(f"error: {error.message}", err=True)
    if error.hint:
        typer.echo(f"hint: {error.hint}", err=True)


def log_bug(error: BaseException) -> None:
    """Append the traceback to `<state>/logs/errors.log` so a bug report has it."""
    try:
        folder = private_dir(resolve_home() / ".anime-chat") / "logs"
        folder.mkdir(exist_ok=True)
        with open(folder / "errors.log", "a", encoding="utf-8") as handle:
            handle.write(f"--- {datetime.now(UTC).isoformat()} {' '.join(sys.argv)}\n")
            handle.write("".join(traceback.format_exception(error)))
    except OSError:
        pass


def warn_unknown_environment() -> None:
    """Once per command: `ANIME_` variables that name no setting are ignored, so say so. The
    settings (pydantic, ~115 ms) are loaded only to word the warning for such a name."""
    if not unlisted_names():
        return
    from tools.settings import unknown_environment

    for line in unknown_environment():
        typer.echo(f"warning: {line}", err=True)


class GuardedGroup(TyperGroup):
    """User errors become one line + hint and exit 1; bugs keep their traceback and are logged."""

    def invoke(self, ctx: click.Context) -> Any:
        if ctx.parent is None:
            warn_unknown_environment()
        try:
            return super().invoke(ctx)
        except UserError as error:
            print_user_error(error)
            raise typer.Exit(1) from None
        except (click.exceptions.Exit, click.ClickException, click.Abort, KeyboardInterrupt):
            raise
        except Exception as error:
            log_bug(error)
            raise


def print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, ensure_ascii=False))


def settings_from_flags(**sections: dict[str, Any]) -> Any:
    from tools.settings import load_settings

    overrides = {
        name: {k: v for k, v in values.items() if v is not None}
        for name, values in sections.items()
    }
    return load_settings(overrides={k: v for k, v in overrides.items() if v})


IN_PROCESS_ENV = "ANIME_IN_PROCESS"


def studio_client() -> Any:
    """A client of the studio server (started in the background when none runs), or None when
    `ANIME_IN_PROCESS=1` asks to do the work in this process (tests, debugging)."""
    if os.environ.get(IN_PROCESS_ENV) == "1":
        return None
    from tools.server.client import connect

    return connect()


def echo_notices(answer: dict[str, Any]) -> None:
    for line in answer.get("notices") or ():
        typer.echo(line, err=True)
