"""`anime-gen generate` (also the default command): its flags and modes.

Drawing library characters (plain, `--variations`, `--all-characters`) is in
`assistant/generate_render.py`; `--from-png` and `--character-sheet` are here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from assistant.cli_common import print_json, studio_client
from assistant.generate_render import (
    GenerateRun,
    generate_images,
    print_planned,
)


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
    run = GenerateRun(output_flags, as_json, dry_run, detach)
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
        generate_images(run, body)


def _collection(collection: str | None) -> str | None:
    if collection is None:
        return None
    from tools.characters.library import normalize_name

    return normalize_name(collection)


def _variations_mode(run: GenerateRun, body: Any, variations: tuple[str, int]) -> None:
    """`--variations NAME N`: N images in distinct poses, linked under NAME/variations/."""
    body = body.model_copy(update={"variations": variations})
    generate_images(run, body, link_variations=True)


def _all_characters_mode(run: GenerateRun, body: Any) -> None:
    """`--all-characters`: BATCH images of every character."""
    generate_images(run, body.model_copy(update={"all_characters": True}))


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
    from tools.engine.comfyui_folders import setting_dirs
    from tools.generation.runtime import Runtime
    from tools.generation.specs import GenerationRequest
    from tools.server.generation import planned_outputs
    from tools.settings import load_settings
    from tools.store.png_info import read_png_info
    from tools.store.png_replay import model_warning, not_restored, replay_plan, replay_vae

    recorded = read_png_info(path)
    plan, unmapped = replay_plan(recorded, character)
    if unmapped:
        typer.echo(f"not mapped (our settings used instead): {'; '.join(unmapped)}", err=True)
    output = {key: value for key, value in plan["output"].items() if value is not None}
    overrides = {"output": {**output, **output_flags}, "models": plan["models"]}
    configured = load_settings(overrides=overrides)
    # The recorded VAE, null included (the checkpoint's own), so not through the flags' filter.
    vae_dirs = setting_dirs(configured.comfyui.root, "vae")
    vae = replay_vae(recorded, configured.models.vae, configured.paths.models, vae_dirs)
    runtime = Runtime(load_settings(overrides={**overrides, "models": {**plan["models"], **vae}}))
    if warning := model_warning(recorded, runtime.engine.checkpoint.label):
        typer.echo(warning, err=True)
    request = plan["request"]
    request["character"] = _resolve_character(runtime, request["character"])
    if seed is not None:
        request["seed"] = seed
    specs = runtime.planner.plan(GenerationRequest(**request))
    if specs and (differ := not_restored(recorded, runtime.producer.metadata(specs[0], 0))):
        typer.echo(f"not restored (yours used instead): {'; '.join(differ)}", err=True)
    if dry_run:
        print_planned(planned_outputs(specs)["outputs"], as_json)
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


def _streamed(client: Any, path: str, body: dict[str, Any], flags: dict[str, Any]) -> Any:
    """A streaming route's result; its notices go to stderr as they come."""
    for kind, data in client.stream("POST", path, body, flags=flags):
        if kind == "notice":
            typer.echo(data, err=True)
        elif kind == "end":
            return data
    raise RuntimeError(f"the studio server ended {path} without a result")


def _character_sheet_mode(
    run: GenerateRun, description: str, name: str | None, seed: int | None
) -> None:
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
