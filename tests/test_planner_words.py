"""The rule planner on words nobody listed (issue 27): per-group "each" counts, names after a
colon or dash, library questions, unknown names in a name slot."""

from __future__ import annotations

import pytest

from assistant.planners.base import PlannerContext, PoseRef
from assistant.planners.rules import RulePlanner

LIBRARY = ["yuki", "sakura", "momo", "rin", "mei"]


def plan(text: str):
    context = PlannerContext(characters=LIBRARY, find_pose=lambda q: PoseRef(id=None, tags=[q]))
    return RulePlanner().plan(text, context)


def counts(text: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for call in plan(text).calls:
        names = [call.args["character"]] if call.tool == "generate" else call.args["characters"]
        for name in names:
            out[name] = out.get(name, 0) + call.args["count"]
    return out


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("yuki and rin 2 each, and mei 3", {"yuki": 2, "rin": 2, "mei": 3}),
        ("3 each of momo and sakura plus one of rin", {"momo": 3, "sakura": 3, "rin": 1}),
        ("mei 5 pictures, and rin and yuki 2 each", {"mei": 5, "rin": 2, "yuki": 2}),
        ("momo 2, and sakura and rin each 3", {"momo": 2, "sakura": 3, "rin": 3}),
        # Said of single characters, "each" is everyone's count, as before.
        ("sakura sitting, yuki standing, 2 each", {"sakura": 2, "yuki": 2}),
    ],
)
def test_an_each_count_is_the_count_of_the_group_it_is_said_of(text, expected):
    assert counts(text) == expected


@pytest.mark.parametrize(
    ("text", "name", "description"),
    [
        ("new character: Tomoe, a shrine maiden", "tomoe", "a shrine maiden"),
        ("new oc - Lulu, a pink-haired idol", "lulu", "a pink-haired idol"),
        ("new character - Ivy: green hair, botanist", "ivy", "green hair, botanist"),
        ("make a new oc: Pippa – a tiny witch", "pippa", "a tiny witch"),
        ("new oc — Saoirse — a red-haired fiddler", "saoirse", "a red-haired fiddler"),
    ],
)
def test_a_name_after_a_colon_or_a_dash_names_the_new_character(text, name, description):
    (call,) = plan(text).calls
    assert (call.tool, call.args) == (
        "create_character",
        {"name": name, "description": description},
    )


def test_a_description_after_a_colon_is_not_a_name():
    (call,) = plan("new character: a tall elf with silver hair").calls
    assert call.args["name"] is None
