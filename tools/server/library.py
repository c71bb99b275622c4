"""What `anime-gen characters add/edit/remove`, the character sheet and `--variations` ask of
the library: one function each, called by the server's routes (`library_routes`) and by the CLI
in process (`ANIME_IN_PROCESS=1`), so both answer alike. No FastAPI here: the CLI imports it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from tools.errors import UserError
from tools.settings import Settings

NO_FACE_WARNING = "warning: no face found in the reference; kept anyway (fine for back views/chibi)"


def character_entry(character: Any) -> dict[str, str]:
    """The `characters list --json` shape of one character."""
    return {
        "name": character.name,
        "description": character.description,
        "reference": str(character.reference_path),
    }


class AddBody(BaseModel):
    name: str
    image: str  # a path on this machine (the client resolves it)
    description: str = ""
    tags: str = ""
    lora: list[str] = []
    trigger: str = ""


class EditBody(BaseModel):
    lora: list[str] = []
    no_lora: bool = False
    trigger: str | None = None
    description: str | None = None
    tags: str | None = None


class SheetBody(BaseModel):
    description: str
    name: str | None = None
    seed: int | None = None
    dry_run: bool = False


class LinkBody(BaseModel):
    records: list[dict[str, Any]]


def _loras(settings: Settings, options: list[str]) -> list[Any]:
    """`--lora` values, each checked now (a missing file is one line naming the folder)."""
    from tools.characters.library import parse_lora_option
    from tools.engine.extra_networks import check_lora

    loras = [parse_lora_option(option) for option in options]
    for item in loras:
        check_lora(item.name, settings.paths)
    return loras


def add_character(settings: Settings, body: AddBody) -> dict[str, Any]:
    """`{"character": entry, "warnings": [line]}`."""
    from tools.characters.library import CharacterLibrary, load_reference_image, normalize_name
    from tools.quality.faces import detect_faces

    normalize_name(body.name)
    loras = _loras(settings, body.lora)
    picture = load_reference_image(Path(body.image))
    added = CharacterLibrary(settings.paths).add(
        body.name,
        picture,
        description=body.description,
        prompt_tags=body.tags,
        loras=loras,
        trigger=body.trigger,
    )
    warnings = [] if detect_faces(picture) else [NO_FACE_WARNING]
    return {"character": character_entry(added), "warnings": warnings}


def edit_character(settings: Settings, name: str, body: EditBody) -> dict[str, Any]:
    """`{"name", "loras": [{"name", "weight"}], "trigger"}` after the change."""
    from tools.characters.library import CharacterLibrary

    changes: dict[str, Any] = {}
    if body.lora or body.no_lora:
        changes["loras"] = _loras(settings, body.lora)
    for key, value in (
        ("trigger", body.trigger),
        ("description", body.description),
        ("prompt_tags", body.tags),
    ):
        if value is not None:
            changes[key] = value.strip()
    edited = CharacterLibrary(settings.paths).edit(name, **changes)
    return {
        "name": edited.name,
        "loras": [{"name": item.name, "weight": item.weight} for item in edited.loras],
        "trigger": edited.trigger,
    }


def remove_character(settings: Settings, name: str) -> dict[str, Any]:
    from tools.characters.library import CharacterLibrary

    return {"name": CharacterLibrary(settings.paths).remove(name).name}


def character_sheet(runtime: Any, body: SheetBody, say: Callable[[str], None]) -> dict[str, Any]:
    """`{"planned": name}` for a dry run, else the new character's entry plus its `folder`."""
    from tools.generation.character_sheet import create_character_sheet, derive_name

    if body.dry_run:
        taken = set(runtime.characters.names())
        return {"planned": body.name or derive_name(body.description, taken)}
    created = create_character_sheet(
        runtime, body.description, body.name, seed=body.seed, on_event=say
    )
    return {**character_entry(created), "folder": str(created.folder)}


def link_variations(runtime: Any, records: list[dict[str, Any]]) -> list[str]:
    """Link the accepted images of a `--variations` run. Records come from the client, so
    each must be a complete record of a PNG inside the output folder (the hard-link fallback
    must never make another file servable)."""
    from pydantic import ValidationError

    from tools.generation.library_runs import link_variations as link
    from tools.generation.specs import OutputRecord

    try:
        checked = [OutputRecord.model_validate(record) for record in records]
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise UserError(
            f"a record to link is not an output record ({where}: {first['msg']})",
            hint="send the records of the run's `outputs` unchanged",
        ) from None
    output = runtime.settings.paths.output.resolve()
    for record in checked:
        if record.accepted and record.path:
            path = Path(record.path)
            inside = path.resolve().is_relative_to(output) and not path.is_symlink()
            if not (inside and path.suffix.lower() == ".png" and path.is_file()):
                raise UserError(
                    f"{record.path} is not an image in the output folder {output}",
                    hint="only the run's own images can be linked as variations",
                )
    return [str(path) for path in link(runtime, checked)]
