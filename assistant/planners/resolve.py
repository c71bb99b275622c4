"""Turn raw tool calls into validated, resolved `PlannedCall`s; shared by both planners.

Characters are matched exactly (case-insensitive), then fuzzily; a correction is reported and an
unknown name drops its call with the closest names in the reply. Poses go through the pose bank.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from assistant.planners.base import PlannedCall, PlannerContext
from tools.generation.toolbox import BatchArgs, GenerateArgs
from tools.text import plural

FUZZY_CUTOFF = 0.75


@dataclass(frozen=True)
class NameMatch:
    name: str | None
    corrected: bool = False
    suggestions: list[str] = field(default_factory=list)


def edit_distance(a: str, b: str) -> int:
    """Optimal string alignment distance: a swapped pair of letters is one typo."""
    rows = [[i + j if i * j == 0 else 0 for j in range(len(b) + 1)] for i in range(len(a) + 1)]
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            cost = a[i - 1] != b[j - 1]
            rows[i][j] = min(rows[i - 1][j] + 1, rows[i][j - 1] + 1, rows[i - 1][j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                rows[i][j] = min(rows[i][j], rows[i - 2][j - 2] + 1)
    return rows[-1][-1]


def match_character(word: str, characters: list[str], cutoff: float = FUZZY_CUTOFF) -> NameMatch:
    folded = word.strip().lower()
    by_fold = {name.lower(): name for name in characters}
    if folded in by_fold:
        return NameMatch(by_fold[folded])
    close = [
        name
        for name in difflib.get_close_matches(folded, list(by_fold), n=3, cutoff=cutoff)
        if edit_distance(folded, name) <= (1 if len(name) <= 5 else 2)
    ]
    if close:
        return NameMatch(by_fold[close[0]], corrected=True)
    suggestions = difflib.get_close_matches(folded, list(by_fold), n=3, cutoff=0.4)
    return NameMatch(None, suggestions=[by_fold[s] for s in suggestions])


def unknown_note(word: str, match: NameMatch, characters: list[str]) -> str:
    closest = match.suggestions or characters[:3]
    if closest:
        return f"I don't know a character called '{word}' (closest: {', '.join(closest)})."
    return (
        f"I don't know a character called '{word}', and the library is empty: add one with "
        "`anime-gen characters add NAME --image PATH`."
    )


@dataclass
class Resolved:
    calls: list[PlannedCall] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    # Characters a create_character call of this plan makes: known to the calls after it.
    created: list[str] = field(default_factory=list)


def _resolve_name(word: str, context: PlannerContext, out: Resolved) -> str | None:
    notes = out.notes
    match = match_character(word, [*context.characters, *out.created])
    if match.name is None:
        notes.append(unknown_note(word, match, context.characters))
    elif match.corrected:
        notes.append(f"Taking '{word}' as {match.name}.")
    return match.name


def _pose(pose: str | None, context: PlannerContext) -> dict[str, Any] | None:
    if pose is None:
        return None
    ref = context.find_pose(pose)
    return ref.model_dump() if ref else None


def resolve_call(tool: str, args: BaseModel, context: PlannerContext, out: Resolved) -> None:
    """Append the resolved call (or nothing, for an unknown character) and any notes to `out`."""
    if isinstance(args, GenerateArgs):
        name = _resolve_name(args.character, context, out)
        if name is None:
            return
        args = args.model_copy(update={"character": name})
        resolved = {"characters": [name], "pose": _pose(args.pose, context)}
        out.calls.append(PlannedCall(tool=tool, args=args.model_dump(), resolved=resolved))
    elif isinstance(args, BatchArgs):
        if args.characters == "all":
            names = list(context.characters)
        else:
            found = [_resolve_name(word, context, out) for word in args.characters]
            names = list(dict.fromkeys(name for name in found if name))
            if not names:
                return
            args = args.model_copy(update={"characters": names})
        resolved = {"characters": names, "pose": _pose(args.pose, context)}
        out.calls.append(PlannedCall(tool=tool, args=args.model_dump(), resolved=resolved))
    else:
        if tool == "create_character" and getattr(args, "name", None):
            out.created.append(args.name)
        out.calls.append(PlannedCall(tool=tool, args=args.model_dump()))


def _images(count: int) -> str:
    return plural(count, "image")


def _drawing(call: PlannedCall) -> tuple[int, str, str]:
    """(images, who, what) of a generate or batch call."""
    args = call.args
    if call.tool == "generate":
        who, total = args["character"], args["count"]
    else:
        names = (call.resolved or {}).get("characters") or []
        who = ", ".join(names) if args["characters"] != "all" else f"all ({', '.join(names)})"
        total = args["count"] * max(len(names), 1)
    pose = (call.resolved or {}).get("pose")
    pose_text = ", ".join(pose["tags"]) if pose else (args["pose"] or "a random pose")
    scene = f", {args['prompt']}" if args.get("prompt") else ""
    seed = f", seed {args['seed']}" if args.get("seed") is not None else ""
    return total, who, f"{pose_text}{scene}{seed}"


def describe_parts(calls: list[PlannedCall]) -> str:
    """'2 of sakura sitting, on a bench; 1 of yuki standing': what each part will draw."""
    parts = []
    for call in calls:
        total, who, what = _drawing(call)
        each = (
            f"{call.args['count']} each of {who}" if call.tool == "batch" else f"{total} of {who}"
        )
        parts.append(f"{each} {what}")
    return "; ".join(parts)


def describe_call(call: PlannedCall) -> str:
    args = call.args
    if call.tool in ("generate", "batch"):
        total, who, what = _drawing(call)
        return f"Drawing {_images(total)} of {who}: {what}."
    if call.tool == "list_characters":
        return "Listing your characters."
    if call.tool == "create_character":
        named = f" named {args['name']}" if args.get("name") else ""
        return f"Creating a new character{named}: {args['description']}."
    if call.tool == "find_pose":
        return f"Searching the pose bank for '{args['query']}'."
    if call.tool == "show_results":
        return "Showing recent results."
    return f"Calling {call.tool}."


def compose_reply(resolved: Resolved, fallback: str = "") -> str:
    drawing = [call for call in resolved.calls if call.tool in ("generate", "batch")]
    if len(drawing) > 1:
        total = sum(_drawing(call)[0] for call in drawing)
        lines = [describe_call(c) for c in resolved.calls if c not in drawing]
        lines.append(f"Drawing {_images(total)}: {describe_parts(drawing)}.")
    else:
        lines = [describe_call(call) for call in resolved.calls]
    lines += resolved.notes
    if not lines and fallback:
        lines.append(fallback)
    return " ".join(lines)
