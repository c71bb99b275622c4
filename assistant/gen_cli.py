"""`anime-gen`: generate images of library characters, manage the library, check the setup.

A thin typer layer: every command parses flags, builds `Settings` once and calls into `tools/`.
The bigger commands live beside it: `generate` in generate_cli.py (drawing in generate_render.py),
the `characters`, `poses` and `jobs` sub-apps in characters_cli.py, poses_cli.py and jobs_cli.py.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import click
import typer

from assistant.characters_cli import characters_app
from assistant.cli_common import GuardedGroup, print_json, settings_from_flags
from assistant.generate_cli import generate
from assistant.jobs_cli import jobs_app, worker_command
from assistant.poses_cli import poses_app
from tools.text import plural


class DefaultToGenerate(GuardedGroup):
    """`anime-gen sakura "sitting"` and `anime-gen --character sakura` mean `generate`."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = ["generate", *args]
        return super().parse_args(ctx, args)


app = typer.Typer(
    cls=DefaultToGenerate,
    help="Generate consistent anime images of your characters. "
    "Without a command, the arguments go to `generate`.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(characters_app, name="characters")
app.add_typer(poses_app, name="poses", help="Search, show and add poses.")
app.add_typer(jobs_app, name="jobs")
index_app = typer.Typer(cls=GuardedGroup, help="The generation index (history of images).")
app.add_typer(index_app, name="index")
app.command("worker")(worker_command)
app.command()(generate)


# -- info ----------------------------------------------------------------------------------------
@app.command()
def info(
    file: Annotated[Path, typer.Argument(help="A PNG from anime-chat, A1111/Forge or ComfyUI.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the contract JSON.")] = False,
) -> None:
    """Print the generation parameters recorded in a PNG."""
    from tools.store.png_info import format_info, read_png_info

    parameters = read_png_info(file)
    if as_json:
        print_json(parameters)
    else:
        typer.echo(format_info(parameters))


# -- index ---------------------------------------------------------------------------------------
@index_app.command("rebuild")
def index_rebuild() -> None:
    """Rebuild the generation index from the image files under anime-output/."""
    from tools.store.index_rebuild import rebuild_index

    settings = settings_from_flags()
    report = rebuild_index(settings)
    typer.echo(
        f"rebuilt {settings.paths.state / 'generations.sqlite'}: {plural(report.images, 'image')} "
        f"({report.rejected} rejected, {report.trashed} in the trash)"
    )
    for path in report.skipped:
        typer.echo(
            f"skipped {path}: no complete anime-chat record (foreign, damaged or crafted)", err=True
        )


# -- serve --------------------------------------------------------------------------------------
@app.command()
def serve(
    host: Annotated[
        str | None, typer.Option("--host", help="Listen here (default server.host, loopback).")
    ] = None,
    port: Annotated[int | None, typer.Option("--port", help="Default server.port.")] = None,
    stop: Annotated[
        bool, typer.Option("--stop", help="Stop this home's studio server and its workers.")
    ] = False,
    new_token: Annotated[
        bool,
        typer.Option(
            "--new-token",
            help="Start with a fresh token (the token otherwise stays across restarts).",
        ),
    ] = False,
) -> None:
    """Run the studio server in the foreground (the front ends otherwise start it on demand)."""
    if stop:
        from tools.server.stop import stop_home
        from tools.settings import resolve_home

        state = resolve_home() / ".anime-chat"
        for line in stop_home(state) or [f"no studio server or worker runs for {state.parent}"]:
            typer.echo(line)
        return
    from assistant.studio import routers
    from tools.server.serve import serve as run_server
    from tools.settings import resolve_home

    raise typer.Exit(run_server(resolve_home(), routers(), host, port, new_token=new_token))


# -- gallery -------------------------------------------------------------------------------------
@app.command()
def gallery(
    no_browser: Annotated[
        bool, typer.Option("--no-browser", help="Only print the URL; open nothing.")
    ] = False,
) -> None:
    """Open the web gallery (starting the studio server if needed); the URL is the last line."""
    from tools.gallery.auth import login_url
    from tools.server.client import connect

    client = connect()
    url = login_url(client.discovery.url, client.token)
    if not no_browser:
        import webbrowser

        if not webbrowser.open(url):
            typer.echo("no browser found here: open the URL below yourself", err=True)
    typer.echo(url)


# -- mcp ----------------------------------------------------------------------------------------
@app.command()
def mcp() -> None:
    """Serve the studio's tools to an MCP client over stdio (Claude Desktop, Cursor, ...)."""
    from tools.mcp.stdio import run_stdio
    from tools.server.client import home_from_env

    raise typer.Exit(run_stdio(home_from_env()))


# -- doctor --------------------------------------------------------------------------------------
@app.command()
def doctor() -> None:
    """Check Python, torch/CUDA, models, Ollama and disk; each line says what to do."""
    from assistant.doctor import run_checks

    checks = run_checks(settings_from_flags())
    for check in checks:
        typer.echo(check.line())
    if any(check.status == "fail" for check in checks):
        raise typer.Exit(1)


def main() -> None:
    app(prog_name="anime-gen")


if __name__ == "__main__":
    sys.exit(main())
