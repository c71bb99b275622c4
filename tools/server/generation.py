"""What `anime-gen [generate]` asks for, planned into image specs: shared by the server's routes
and the in-process fallback, so both plan exactly alike."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import BaseModel

from tools.errors import UserError


class GenerateBody(BaseModel):
    character: str | None = None
    pose: str | None = None
    random_pose: bool = False
    prompt: str = ""
    count: int = 1
    seed: int | None = None
    collection: str | None = None
    variations: tuple[str, int] | None = None
    all_characters: bool = False
    label: str | None = None


def plan_generation(runtime: Any, body: GenerateBody, notice: Callable[[str], None]) -> list[Any]:
    """The `ImageSpec`s for the request; `notice` gets "using 'sakura' for 'sakra'" lines."""
    collection = body.collection
    if collection is not None:
        from tools.characters.library import normalize_name

        collection = normalize_name(collection)
    if body.variations is not None:
        from tools.generation.library_runs import plan_variations

        who = resolve_character(runtime, body.variations[0], notice)
        return plan_variations(
            runtime,
            who,
            body.variations[1],
            posture=_posture_word(body.pose),
            prompt=body.prompt,
            seed=body.seed,
        )
    if body.all_characters:
        from tools.generation.library_runs import plan_all_characters

        return plan_all_characters(
            runtime,
            pose=body.pose,
            prompt=body.prompt,
            count=body.count,
            seed=body.seed,
            collection=collection,
        )
    from tools.generation.specs import GenerationRequest

    if not body.character:
        raise UserError("no character named", "anime-gen --character NAME, or anime-gen NAME")
    request = GenerationRequest(
        character=resolve_character(runtime, body.character, notice),
        pose=body.pose,
        random_pose=body.random_pose,
        prompt=body.prompt,
        count=body.count,
        seed=body.seed,
        collection=collection,
    )
    return runtime.planner.plan(request)


def resolve_character(runtime: Any, who: str, notice: Callable[[str], None]) -> str:
    resolved, corrected = runtime.characters.resolve(who)
    if corrected:
        notice(f"note: using '{resolved.name}' for '{who}'")
    return resolved.name


def _posture_word(pose: str | None) -> str | None:
    """`--variations sakura 5 --pose sitting` keeps the posture and varies the rest."""
    from posebank.pose import POSTURES

    return pose.strip().lower() if pose and pose.strip().lower() in POSTURES else None


def planned_outputs(specs: list[Any]) -> dict[str, Any]:
    """The `--dry-run --json` shape: the run's shape with `path: null`, nothing drawn."""
    return {
        "outputs": [
            {
                "path": None,
                "character": spec.character,
                "pose": spec.pose.model_dump(),
                "seed": spec.seed,
                "scores": {"consistency": None, "face": None, "aesthetic": None, "palette": None},
                "accepted": False,
                "attempts": 0,
            }
            for spec in specs
        ]
    }
