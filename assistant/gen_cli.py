"""`anime-gen`: generate images of library characters, manage the library, check the setup.

A thin typer layer: every command parses flags, builds `Settings` once and calls into `tools/`.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import click
import typer

from assistant.cli_common import (
    GuardedGroup,
    echo_notices,
    print_json,
    settings_from_flags,
    studio_client,
)
from assistant.jobs_cli import jobs_app, worker_command
from assistant.poses_cli import poses_app


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
characters_app = typer.Typer(cls=GuardedGroup, help="Manage the character library.")
app.add_typer(characters_app, name="characters")
app.add_typer(poses_app, name="poses", help="Search, show and add poses.")
app.add_typer(jobs_app, name="jobs")
index_app = typer.Typer(cls=GuardedGroup, help="The generation index (history of images).")
app.add_typer(index_app, name="index")
app.command("worker")(worker_command)


def _runtime(**overrides: dict[str, Any]) -> Any:
    from tools.generation.runtime import Runtime

    return Runtime(settings_from_flags(**overrides))


# -- generate ------------------------------------------------------------------------------------
@app.command()
def generate(
    name: Annotated[str | None, typer.Argument(help="Character (same as --character).")] = None,
    pose_text: Annotated[
        str | None, typer.Argument(metavar="POSE", help="Pose in words (same as --pose).")
    ] = None,
    character: Annotated[str | None, typer.Option("--character", "-c")] = None,
    pose: Annotated[str | None, typer.Option("--pose", "-p", help="Pose in words.")] = None,
    random_pose: Annotated[bool, typer.Option("--random-pose", help="A random pose.")] = False,
    prompt: Annotated[str, typer.Option("--prompt", help="Scene, outfit, mood...")] = "",
    batch: Annotated[int, typer.Option("--batch", "-n", help="How many images.")] = 1,
    seed: Annotated[int | None, typer.Option("--seed", help="Image i uses seed+i.")] = None,
    collection: Annotated[
        str | None, typer.Option("--collection", help="Also file under collections/NAME.")
    ] = None,
    resolution: Annotated[
        str | None, typer.Option("--resolution", help="WIDTHxHEIGHT, e.g. 512x768.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the contract JSON.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Plan only; draw nothing.")] = False,
    detach: Annotated[
        bool, typer.Option("--detach", help="Queue the job, print its id and return.")
    ] = False,
    variations: Annotated[
        tuple[str, int] | None,
        typer.Option("--variations", metavar="NAME N", help="N images of NAME in varied poses."),
    ] = None,
    all_characters: Annotated[
        bool, typer.Option("--all-characters", help="BATCH images of every character.")
    ] = False,
    character_sheet: Annotated[
        str | None,
        typer.Option("--character-sheet", metavar="TEXT", help="New character from a sentence."),
    ] = None,
    new_name: Annotated[
        str | None, typer.Option("--name", help="Name for --character-sheet.")
    ] = None,
    from_png: Annotated[
        Path | None,
        typer.Option("--from-png", help="Draw again what a PNG (ours, A1111, ComfyUI) records."),
    ] = None,
    hires: Annotated[
        float | None,
        typer.Option("--hires", metavar="SCALE", help="Hires fix: upscale by SCALE and refine."),
    ] = None,
    face_detail: Annotated[
        bool, typer.Option("--face-detail", help="Redraw the face at a higher resolution.")
    ] = False,
) -> None:
    """Draw BATCH images of a character in a pose."""
    from tools.errors import UserError
    from tools.server.generation import GenerateBody

    if pose and pose_text:
        raise UserError("the pose is given twice", "use either POSE or --pose")
    pose = pose or pose_text
    who = character or name
    output_flags = _output_flags(resolution, hires, face_detail)
    if from_png is not None:
        _from_png(from_png, who, seed, as_json, dry_run, output_flags)
        return
    run = _Run(output_flags, as_json, dry_run, detach)
    if character_sheet is not None:
        _character_sheet_mode(run, character_sheet, new_name, seed)
        return
    body = GenerateBody(
        character=who,
        pose=pose,
        random_pose=random_pose,
        prompt=prompt,
        count=batch,
        seed=seed,
        collection=_collection(collection),
    )
    if variations is not None:
        _variations_mode(run, body, variations)
    elif all_characters:
        _all_characters_mode(run, body)
    else:
        _generate_images(run, body)


class _Run:
    """The flags every mode of `generate` shares: output settings, JSON, dry run, detach."""

    def __init__(
        self, output_flags: dict[str, Any], as_json: bool, dry_run: bool, detach: bool
    ) -> None:
        self.output_flags = output_flags
        self.as_json = as_json
        self.dry_run = dry_run
        self.detach = detach

    @property
    def flags(self) -> dict[str, Any]:
        return {"output": self.output_flags} if self.output_flags else {}

    def runtime(self) -> Any:
        return _runtime(output=self.output_flags)


def _collection(collection: str | None) -> str | None:
    if collection is None:
        return None
    from tools.characters.library import normalize_name

    return normalize_name(collection)


def _variations_mode(run: _Run, body: Any, variations: tuple[str, int]) -> None:
    """`--variations NAME N`: N images in distinct poses, linked under NAME/variations/."""
    body = body.model_copy(update={"variations": variations})
    _generate_images(run, body, link_variations=True)


def _all_characters_mode(run: _Run, body: Any) -> None:
    """`--all-characters`: BATCH images of every character."""
    _generate_images(run, body.model_copy(update={"all_characters": True}))


def _generate_images(run: _Run, body: Any, link_variations: bool = False) -> None:
    """Plan, then draw (or only print the plan) in the studio server, or here in process."""
    client = studio_client()
    if run.dry_run:
        if client is not None:
            answer = client.call("POST", "/api/generate/plan", body.model_dump(), flags=run.flags)
            echo_notices(answer)
            outputs = answer["outputs"]
        else:
            outputs = _plan_here(run, body)
        _print_planned(outputs, run.as_json)
        return
    if client is not None:
        records = _render_in_server(client, run, body, link_variations)
    else:
        records = _render_here(run, body, link_variations)
    if records is not None:
        _print_records(records, run.as_json)


def _plan_here(run: _Run, body: Any) -> list[dict[str, Any]]:
    from tools.server.generation import plan_generation, planned_outputs

    specs = plan_generation(run.runtime(), body, lambda line: typer.echo(line, err=True))
    return planned_outputs(specs)["outputs"]


def _print_detached(job_id: str, as_json: bool) -> None:
    if as_json:
        print_json({"job": job_id})
    else:
        typer.echo(f"queued job {job_id} (anime-gen jobs wait {job_id})")


def _render_here(run: _Run, body: Any, link_variations: bool) -> list[dict[str, Any]] | None:
    """In this process (`ANIME_IN_PROCESS=1`): the records, or None once a detached job is
    queued."""
    from assistant.progress import render_with_progress, submit_detached
    from tools.server.generation import plan_generation

    runtime = run.runtime()
    specs = plan_generation(runtime, body, lambda line: typer.echo(line, err=True))
    if run.detach:
        _print_detached(submit_detached(runtime, specs), run.as_json)
        return None
    records = render_with_progress(runtime, specs, quiet=run.as_json)
    if link_variations:
        from tools.generation.library_runs import link_variations as link

        link(runtime, records)
    return [record.model_dump(mode="json") for record in records]


def _render_in_server(
    client: Any, run: _Run, body: Any, link_variations: bool
) -> list[dict[str, Any]] | None:
    """Queue the job in the server and follow its events; the records as the in-process run."""
    from tools.server.client import follow_job, with_my_environment

    client = with_my_environment(client)
    answer = client.call("POST", "/api/jobs", body.model_dump(), flags=run.flags)
    echo_notices(answer)
    job_id = answer["job"]
    if run.detach:
        _print_detached(job_id, run.as_json)
        return None
    show = not run.as_json and sys.stderr.isatty()
    records = follow_job(client, job_id, on_progress=_progress_line if show else None)
    if link_variations:
        client.call("POST", "/api/variations/link", {"records": records}, flags=run.flags)
    return records


def _print_records(records: list[dict[str, Any]], as_json: bool) -> None:
    """The run's `{"outputs": [...]}`, or a line per image; exit 1 when none was accepted."""
    if as_json:
        print_json({"outputs": records})
    else:
        for record in records:
            typer.echo(f"{'saved' if record['accepted'] else 'REJECTED'} {record['path']}")
    if not any(record["accepted"] for record in records):
        raise typer.Exit(1)


def _output_flags(resolution: str | None, hires: float | None, face_detail: bool) -> dict[str, Any]:
    """The `output` settings the flags override; `--hires` sets only the scale (the config's
    hires options stay)."""
    flags: dict[str, Any] = {"resolution": resolution}
    if hires is not None:
        flags["hires"] = {"scale": hires}
    if face_detail:
        # A mapping, so that face_detail options of the config file are kept.
        flags["face_detail"] = {}
    return {key: value for key, value in flags.items() if value is not None}


def _from_png(
    path: Path,
    character: str | None,
    seed: int | None,
    as_json: bool,
    dry_run: bool,
    output_flags: dict[str, Any],
) -> None:
    from assistant.progress import render_with_progress
    from tools.generation.specs import GenerationRequest
    from tools.server.generation import planned_outputs
    from tools.store.png_info import read_png_info
    from tools.store.png_replay import model_warning, replay_plan

    recorded = read_png_info(path)
    plan, unmapped = replay_plan(recorded, character)
    if unmapped:
        typer.echo(f"not mapped (our settings used instead): {'; '.join(unmapped)}", err=True)
    runtime = _runtime(output={**plan["output"], **output_flags})
    if warning := model_warning(recorded, runtime.engine.checkpoint.label):
        typer.echo(warning, err=True)
    request = plan["request"]
    request["character"] = _resolve_character(runtime, request["character"])
    if seed is not None:
        request["seed"] = seed
    specs = runtime.planner.plan(GenerationRequest(**request))
    if dry_run:
        _print_planned(planned_outputs(specs)["outputs"], as_json)
        return
    records = render_with_progress(runtime, specs, quiet=as_json)
    if as_json:
        print_json({"outputs": [record.model_dump(mode="json") for record in records]})
    else:
        for record in records:
            typer.echo(f"{'saved' if record.accepted else 'REJECTED'} {record.path}")


def _resolve_character(runtime: Any, who: str) -> str:
    resolved, corrected = runtime.characters.resolve(who)
    if corrected:
        typer.echo(f"note: using '{resolved.name}' for '{who}'", err=True)
    return resolved.name


def _progress_line(data: dict[str, Any]) -> None:
    step = f" step {data['step']}/{data['steps']}" if data.get("step") else ""
    line = f"job {data['job']}: {data['state']} {data['done']}/{data['images']} images{step}"
    sys.stderr.write(f"\r{line:<70}")
    sys.stderr.flush()


def _print_planned(outputs: list[dict[str, Any]], as_json: bool) -> None:
    if as_json:
        print_json({"outputs": outputs})
        return
    for output in outputs:
        typer.echo(
            f"would draw {output['character']} / {output['pose']['id']} / seed {output['seed']}"
        )


def _streamed(client: Any, path: str, body: dict[str, Any], flags: dict[str, Any]) -> Any:
    """A streaming route's result; its notices go to stderr as they come."""
    for kind, data in client.stream("POST", path, body, flags=flags):
        if kind == "notice":
            typer.echo(data, err=True)
        elif kind == "end":
            return data
    raise RuntimeError(f"the studio server ended {path} without a result")


def _character_sheet_mode(run: _Run, description: str, name: str | None, seed: int | None) -> None:
    """`--character-sheet TEXT [--name NAME]`: a new character drawn from a sentence."""
    from tools.server.library import SheetBody, character_sheet

    body = SheetBody(description=description, name=name, seed=seed, dry_run=run.dry_run)
    client = studio_client()
    if client is None:
        made = character_sheet(run.runtime(), body, lambda line: typer.echo(line, err=True))
    else:
        from tools.server.client import with_my_environment

        if not run.dry_run:
            client = with_my_environment(client)
        made = _streamed(client, "/api/characters/sheet", body.model_dump(), run.flags)
    if run.dry_run:
        typer.echo(f"would create character '{made['planned']}' from: {description}")
    elif run.as_json:
        print_json({key: made[key] for key in ("name", "description", "reference")})
    else:
        typer.echo(f"created {made['name']}: {made['folder']}")


# -- characters ----------------------------------------------------------------------------------
_LORA_HELP = "A LoRA for this character: NAME[:WEIGHT] (in <home>/models/lora/); repeatable."
_TRIGGER_HELP = "Words the character's LoRA was trained on, added to its prompt."


def _library_call(method: str, path: str, body: Any, here: Any) -> Any:
    """A library change in the studio server, or `here(settings)` in process."""
    client = studio_client()
    if client is not None:
        return client.call(method, path, body)
    return here(settings_from_flags())


@characters_app.command("add")
def characters_add(
    name: str,
    image: Annotated[Path, typer.Option("--image", "-i", help="Reference image file.")],
    description: Annotated[str, typer.Option("--description", "-d")] = "",
    tags: Annotated[str, typer.Option("--tags", help="Prompt tags, e.g. 'pink hair'.")] = "",
    lora: Annotated[list[str] | None, typer.Option("--lora", help=_LORA_HELP)] = None,
    trigger: Annotated[str, typer.Option("--trigger", help=_TRIGGER_HELP)] = "",
) -> None:
    """Add a character from one reference image."""
    from tools.server.library import AddBody, add_character

    body = AddBody(
        name=name,
        image=str(image.expanduser().absolute()),
        description=description,
        tags=tags,
        lora=lora or [],
        trigger=trigger,
    )
    added = _library_call(
        "POST", "/api/characters", body.model_dump(), lambda s: add_character(s, body)
    )
    for line in added["warnings"]:
        typer.echo(line, err=True)
    typer.echo(f"added {added['character']['name']}: {added['character']['reference']}")


@characters_app.command("edit")
def characters_edit(
    name: str,
    lora: Annotated[list[str] | None, typer.Option("--lora", help=_LORA_HELP)] = None,
    no_lora: Annotated[bool, typer.Option("--no-lora", help="Drop the character's LoRAs.")] = False,
    trigger: Annotated[str | None, typer.Option("--trigger", help=_TRIGGER_HELP)] = None,
    description: Annotated[str | None, typer.Option("--description", "-d")] = None,
    tags: Annotated[str | None, typer.Option("--tags", help="Prompt tags.")] = None,
) -> None:
    """Change a character's LoRAs, trigger words, description or tags."""
    from urllib.parse import quote

    from tools.server.library import EditBody, edit_character

    body = EditBody(
        lora=lora or [], no_lora=no_lora, trigger=trigger, description=description, tags=tags
    )
    edited = _library_call(
        "PATCH",
        f"/api/characters/{quote(name, safe='')}",
        body.model_dump(),
        lambda s: edit_character(s, name, body),
    )
    loras = ", ".join(f"{item['name']}:{item['weight']:g}" for item in edited["loras"]) or "none"
    typer.echo(f"{edited['name']}: loras {loras}; trigger '{edited['trigger']}'")


@characters_app.command("list")
def characters_list(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """List the characters in the library."""
    client = studio_client()
    if client is not None:
        entries = client.call("GET", "/api/characters")
    else:
        from tools.server.library import character_entry

        entries = [character_entry(c) for c in _runtime().characters.list()]
    if as_json:
        print_json(entries)
        return
    if not entries:
        typer.echo("no characters yet: anime-gen characters add NAME --image PATH")
    for entry in entries:
        typer.echo(f"{entry['name']:<20} {entry['description']}")


@characters_app.command("remove")
def characters_remove(name: str) -> None:
    """Remove a character (its folder moves to the library's .trash)."""
    from urllib.parse import quote

    from tools.server.library import remove_character

    removed = _library_call(
        "DELETE",
        f"/api/characters/{quote(name, safe='')}",
        None,
        lambda s: remove_character(s, name),
    )
    typer.echo(f"removed {removed['name']} (folder kept in .anime-characters/.trash)")


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
        f"rebuilt {settings.paths.state / 'generations.sqlite'}: {report.images} images "
        f"({report.rejected} rejected, {report.trashed} in the trash)"
    )
    for path in report.skipped:
        typer.echo(f"skipped {path}: no anime-chat metadata", err=True)


# -- serve --------------------------------------------------------------------------------------
@app.command()
def serve(
    host: Annotated[
        str | None, typer.Option("--host", help="Listen here (default server.host, loopback).")
    ] = None,
    port: Annotated[int | None, typer.Option("--port", help="Default server.port.")] = None,
) -> None:
    """Run the studio server in the foreground (the front ends otherwise start it on demand)."""
    from assistant.studio import routers
    from tools.server.serve import serve as run_server
    from tools.settings import resolve_home

    raise typer.Exit(run_server(resolve_home(), routers(), host, port))


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
