"""Runs over the library: `--variations NAME N` and `--all-characters`.

Both only plan `ImageSpec`s through the planner, so every image goes through the same
render → quality gate → re-roll → save path as a single generation.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

from tools.errors import UserError
from tools.generation.planner import new_seed
from tools.generation.specs import SEED_LIMIT, GenerationRequest

if TYPE_CHECKING:
    from tools.generation.runtime import Runtime
    from tools.generation.specs import ImageSpec, OutputRecord

VARIATIONS_FOLDER = "variations"


def plan_variations(
    runtime: Runtime,
    character: str,
    count: int,
    *,
    posture: str | None = None,
    prompt: str = "",
    seed: int | None = None,
) -> list[ImageSpec]:
    """`count` images with distinct poses from the bank (spread over postures unless one is
    given) and seeds S+i."""
    request = GenerationRequest(
        character=character, posture=posture, prompt=prompt, count=count, seed=seed
    )
    return runtime.planner.plan(request)


def link_variations(runtime: Runtime, records: list[OutputRecord]) -> list[Path]:
    """Link each accepted image into `<character>/variations/`; returns the links."""
    links = []
    for record in records:
        if not record.accepted or not record.path:
            continue
        target = Path(record.path)
        folder = runtime.characters.get(record.character).folder / VARIATIONS_FOLDER
        folder.mkdir(parents=True, exist_ok=True)
        # Output names restart every day; the link carries the day so names never collide.
        link = folder / f"{target.parent.name}_{target.name}"
        if not (link.is_symlink() or link.exists()):
            try:
                link.symlink_to(os.path.relpath(target, folder))
            except OSError:
                os.link(target, link)
        links.append(link)
    return links


def plan_all_characters(
    runtime: Runtime,
    *,
    pose: str | None = None,
    posture: str | None = None,
    prompt: str = "",
    count: int = 1,
    seed: int | None = None,
    collection: str | None = None,
    names: list[str] | None = None,
) -> list[ImageSpec]:
    """`count` images of every character in the library (or of `names`, in that order; the
    A1111 door's prompt that names several); image i of the run uses seed S+i."""
    names = runtime.characters.names() if names is None else names
    if not names:
        raise UserError(
            "the character library is empty",
            "add one: anime-gen characters add NAME --image PATH",
        )
    limit = runtime.settings.output.max_batch
    if count * len(names) > limit:  # the batch limit holds for the whole run, not each character
        raise UserError(
            f"{count} × {len(names)} characters = {count * len(names)} images is more than"
            f" output.max_batch ({limit})",
            "lower the count, draw fewer characters, or raise output.max_batch in the config",
        )
    base_seed = seed if seed is not None else new_seed()
    run_id = uuid.uuid4().hex[:12]
    specs: list[ImageSpec] = []
    for number, name in enumerate(names):
        request = GenerationRequest(
            character=name,
            pose=pose,
            posture=posture,
            prompt=prompt,
            count=count,
            seed=(base_seed + len(specs)) % SEED_LIMIT,
            collection=collection,
            request_id=f"{run_id}-{number}",
        )
        specs.extend(runtime.planner.plan(request))
    return specs
