"""Turns that build on the last one: "3 more of that", "the second one again but smiling",
"now the same with mei", "make her hair shorter", "undo that", "what did I just make?"."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from assistant.planners import vocabulary as v
from assistant.planners.base import PlannedCall, PlannerContext, PreviousImage
from assistant.planners.resolve import Resolved, describe_parts

if TYPE_CHECKING:
    from assistant.planners.rule_types import Request, RulePlanner


def _is_place(scene: str) -> bool:
    """'at the beach' is a place; 'at night' and 'in a kimono' are not."""
    words = scene.split()
    return (
        bool(words)
        and words[0] in v.PLACE_PREPOSITIONS
        and not any(w in v.ATMOSPHERE or w in v.CLOTHING for w in words)
    )


def merge_prompt(old: str, new: str, remove: list[str] = ()) -> str:  # type: ignore[assignment]
    """A follow-up's scene adds to the last one, except that a new place replaces the old;
    removed words take their parts out ("without the glasses")."""
    kept = [part for part in old.split(", ") if part]
    if new and _is_place(new.split(", ")[0]):
        kept = [part for part in kept if not _is_place(part)]
    parts = [*kept, *([new] if new else [])]
    return ", ".join(dict.fromkeys(p for p in parts if not set(p.split()) & set(remove)))


def _pick_image(images: list[PreviousImage], ref: int | None) -> PreviousImage | None:
    if ref is None or not images:
        return None
    index = len(images) - 1 if ref == -1 else ref - 1
    return images[index] if 0 <= index < len(images) else None


def _drawn(call: PlannedCall) -> list[str]:
    if call.tool == "generate":
        return [call.args["character"]]
    return list((call.resolved or {}).get("characters") or [])


def _redo(planner: RulePlanner, call: PlannedCall, args: dict[str, Any], context, resolved):
    """Plan the call again with `args`, as a batch or a single generate as its targets say."""
    names = args.pop("targets", None)
    if names is not None:
        args.pop("character", None)
        args.pop("characters", None)
        if names == "all" or len(names) > 1:
            args.pop("seed", None)
            args["characters"] = names
        else:
            args["character"] = names[0]
            args.setdefault("seed", None)
    tool = "generate" if "character" in args else "batch"
    if tool == "batch":
        args.pop("seed", None)
    planner.add(resolved, tool, args, context)


def follow_up(
    planner: RulePlanner, request: Request, norm: str, context: PlannerContext, resolved: Resolved
) -> None:
    previous = context.previous
    assert previous is not None
    resolved.notes.extend(request.notes)
    attrs = request.whole()
    image = _pick_image(previous.images, request.image_ref)
    if request.image_ref is not None and image is None:
        resolved.notes.append(f"There is no image {request.image_ref} in the last result.")
        return
    calls = previous.all_calls
    names: list[str] | str | None = "all" if request.everyone else (request.characters or None)
    if image is not None:
        calls = [next((c for c in calls if image.character in _drawn(c)), calls[-1])]
        names = names or [image.character]
    elif names is not None:
        calls = calls[-1:]
    single = image is not None or re.search(r"\banother\b", norm) is not None
    prompt = ", ".join(attrs.scenes)
    for call in calls:
        args = dict(call.args)
        if attrs.pose:
            args["pose"] = attrs.pose
        elif attrs.random:
            args["pose"] = None
        elif image is not None:
            args["pose"] = " ".join(image.pose_tags) or None
        args["prompt"] = merge_prompt(args.get("prompt") or "", prompt, attrs.remove)
        args["count"] = attrs.count or (1 if single else args.get("count", 1))
        if names is not None:
            args["targets"] = names
        if "character" in args or names is not None:
            seed = request.seed if request.seed is not None else (image.seed if image else None)
            args["seed"] = seed
        _redo(planner, call, args, context, resolved)


def edit(
    planner: RulePlanner, edit: tuple[str, str], context: PlannerContext, resolved: Resolved
) -> None:
    """'make her hair shorter': the last calls again, 'short hair' replacing any other hair."""
    term, noun = edit
    assert context.previous is not None
    for call in context.previous.all_calls:
        args = dict(call.args)
        old = [p for p in (args.get("prompt") or "").split(", ") if p]
        if noun:
            old = [p for p in old if not set(noun.split()) & set(p.split())]
        args["prompt"] = ", ".join([*old, term])
        _redo(planner, call, args, context, resolved)


def undo(planner: RulePlanner, context: PlannerContext, resolved: Resolved) -> None:
    """'undo that': the turn before the last one, drawn again as it was."""
    assert context.previous is not None
    before = context.previous.before
    if before is None:
        resolved.notes.append("There is nothing before the last result to go back to.")
        return
    for call in before.all_calls:
        _redo(planner, call, dict(call.args), context, resolved)


def show(
    planner: RulePlanner, count: int | None, context: PlannerContext, resolved: Resolved
) -> None:
    """Recent results; "what did I just make?" is answered from the session."""
    previous = context.previous
    made = len(previous.images) if previous and previous.images else None
    planner.add(resolved, "show_results", {"limit": count or made or 8}, context)
    if previous is not None:
        resolved.notes.append(f"Last time: {describe_parts(previous.all_calls)}.")
