"""`anime-gen characters ...`: add, edit, list and remove characters (the `characters` sub-app).

Each change goes to the studio server when one runs, else it is made here in process.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from assistant.cli_common import GuardedGroup, print_json, settings_from_flags, studio_client

characters_app = typer.Typer(cls=GuardedGroup, help="Manage the character library.")
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
        from assistant.generate_render import runtime_from_flags
        from tools.server.library import character_entry

        entries = [character_entry(c) for c in runtime_from_flags().characters.list()]
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
