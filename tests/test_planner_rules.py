"""The rule planner: the eval set as a gate, and the behaviours the contract names."""

from __future__ import annotations

import pytest

from assistant.planners.base import (
    PlannedCall,
    PlannerContext,
    PoseRef,
    PreviousImage,
    PreviousTurn,
)
from assistant.planners.resolve import edit_distance, match_character
from assistant.planners.rules import RulePlanner
from evals.chat_cases import load_cases, score

LIBRARY = ["yuki", "sakura", "rin", "rin_tohsaka"]


def context(previous: PreviousTurn | None = None) -> PlannerContext:
    def find_pose(query: str) -> PoseRef:
        return PoseRef(id="pose-" + query.replace(" ", "-"), tags=query.split())

    return PlannerContext(characters=LIBRARY, find_pose=find_pose, previous=previous)


def plan(text: str, previous: PreviousTurn | None = None):
    return RulePlanner().plan(text, context(previous))


def test_eval_cases_pass_rate_is_at_least_95_percent(capsys):  # the gate: test_eval_gates.py
    cases = load_cases()
    assert len(cases) >= 80
    assert score(RulePlanner(), cases) >= 0.95
    assert capsys.readouterr().out.splitlines()[-1].startswith("pass rate: ")


def test_contract_example_plan_shape():
    shape = plan("draw yuki sitting reading, 5 variations").contract()
    assert shape["planner"] == "rules"
    assert shape["calls"] == [
        {
            "tool": "generate",
            "args": {
                "character": "yuki",
                "pose": "sitting reading",
                "prompt": "",
                "count": 5,
                "seed": None,
            },  # fmt: skip
            "resolved": {
                "characters": ["yuki"],
                "pose": {"id": "pose-sitting-reading", "tags": ["sitting", "reading"]},
            },
        }
    ]


@pytest.mark.parametrize(
    ("text", "count"),
    [("yuki, 5 variations", 5), ("three of yuki", 3), ("a dozen yuki", 12), ("yuki", 1),
     ("twenty one yuki", 21), ("half a dozen yuki", 6), ("yuki x7", 7), ("yuki, a couple", 2)],
)  # fmt: skip
def test_counts_in_digits_and_words(text, count):
    assert plan(text).calls[0].args["count"] == count


def test_scene_words_go_to_the_prompt_and_posture_to_the_pose():
    [call] = plan("draw sakura standing in the rain, 2 variations").calls
    assert call.args["pose"] == "standing" and call.args["prompt"] == "in the rain"


def test_a_scene_word_close_to_a_short_name_is_not_a_typo():
    [call] = plan("yuki standing in the rain").calls
    assert call.args["character"] == "yuki" and "rain" in call.args["prompt"]


def test_multiword_names_and_fuzzy_names_are_reported():
    assert plan("rin tohsaka sitting").calls[0].args["character"] == "rin_tohsaka"
    result = plan("draw sakrua waving")
    assert result.calls[0].args["character"] == "sakura"
    assert "sakrua" in result.reply


def test_unknown_character_plans_nothing_and_names_the_closest():
    result = plan("draw yukiko-chan sitting")
    assert result.calls == []
    assert "yukiko-chan" in result.reply and "yuki" in result.reply


def test_every_character_is_a_batch_resolved_to_the_library():
    [call] = plan("every character waving, 2 each").calls
    assert call.tool == "batch" and call.args["characters"] == "all"
    assert call.resolved["characters"] == LIBRARY and call.args["count"] == 2


def test_follow_up_reuses_seed_and_pose_of_the_chosen_image():
    previous = PreviousTurn(
        PlannedCall(
            tool="generate",
            args={"character": "yuki", "pose": "sitting", "prompt": "", "count": 3, "seed": None},
        ),  # fmt: skip
        [
            PreviousImage(11, "a", ["sitting"], "yuki"),
            PreviousImage(12, "b", ["sitting", "reading"], "yuki"),
        ],
    )
    [call] = plan("the second one again but smiling", previous).calls
    assert call.args == {"character": "yuki", "pose": "sitting reading", "prompt": "smiling",
                         "count": 1, "seed": 12}  # fmt: skip
    assert "no image 5" in plan("the fifth one again", previous).reply.lower()


def test_edit_distance_counts_a_swap_as_one_typo():
    assert edit_distance("sakrua", "sakura") == 1
    assert match_character("rain", ["rin"]).name == "rin"  # alone it is a plausible typo
    assert match_character("zzz", ["rin"]).name is None


def test_an_unknown_name_beside_a_known_one_is_reported_not_drawn():
    result = plan("draw yuki and bob at the beach")
    [call] = result.calls
    assert call.args["character"] == "yuki" and call.args["prompt"] == "at the beach"
    assert "'bob'" in result.reply and "closest" in result.reply
    result = plan("draw luffy, sakura and rin sitting")
    assert result.calls[0].args["characters"] == ["sakura", "rin"] and "luffy" in result.reply


def test_honorifics_and_mistyped_posture_words():
    [call] = plan("Sakura-chan standin in the snow").calls
    assert call.args["character"] == "sakura" and call.args["pose"] == "standing"
    assert call.args["prompt"] == "in the snow"


def test_every_single_character_is_everyone_not_a_count_of_one():
    [call] = plan("every single character in a school uniform, 3 each").calls
    assert call.args["characters"] == "all" and call.args["count"] == 3


def test_listing_all_characters_is_not_drawing_them():
    assert plan("list all characters").calls[0].tool == "list_characters"
    assert plan("show all characters waving").calls[0].tool == "batch"


def test_a_follow_up_place_replaces_the_old_one_and_a_time_adds_to_it():
    previous = PreviousTurn(
        PlannedCall(
            tool="generate",
            args={"character": "yuki", "pose": "sitting", "prompt": "in a cafe", "count": 2},
        ),
        [],
    )
    assert plan("same but at the beach", previous).calls[0].args["prompt"] == "at the beach"
    assert plan("same but at night", previous).calls[0].args["prompt"] == "in a cafe, at night"
    [call] = plan("now do sakura", previous).calls
    assert call.args["character"] == "sakura" and call.args["pose"] == "sitting"


def test_each_character_of_a_compound_request_gets_its_own_pose_and_scene():
    result = plan("sakura sitting on a bench and yuki standing next to her")
    calls = {c.args["character"]: c.args for c in result.calls}
    assert calls["sakura"]["pose"] == "sitting" and calls["sakura"]["prompt"] == "on a bench"
    assert calls["yuki"]["pose"] == "standing" and calls["yuki"]["prompt"] == ""
    assert "1 of sakura sitting, on a bench; 1 of yuki standing" in result.reply


def test_then_starts_a_part_with_its_own_count_and_pose():
    calls = plan("draw rin, 3 images, then sakura lying down, 2 images").calls
    assert [(c.args["character"], c.args["count"], c.args["pose"]) for c in calls] == [
        ("rin", 3, None), ("sakura", 2, "lying")
    ]  # fmt: skip
    assert all(c.args["prompt"] == "" for c in calls)


def test_a_character_created_in_the_plan_is_drawn_by_the_calls_after_it():
    create, draw = plan(
        "make a new girl called aya with blue twin tails, then draw her waving"
    ).calls
    assert create.tool == "create_character" and create.args["name"] == "aya"
    assert create.args["description"] == "blue twin tails"
    assert draw.tool == "generate" and draw.args["character"] == "aya"
    assert draw.args["pose"] == "waving" and draw.resolved["characters"] == ["aya"]


def test_session_memory_follows_a_turn_its_edit_and_the_undo():
    from assistant.session import Session
    from evals.conversations import made_images

    session = Session()
    first = plan("yuki sitting in the rain, 2 images")
    session.remember_turn(made_images(first, 1))
    edited = RulePlanner().plan("make her hair shorter", context(session.previous)).calls
    assert edited[0].args["prompt"] == "in the rain, short hair"
    session.remember_turn(
        made_images(RulePlanner().plan("make her hair shorter", context(session.previous)), 2)
    )
    [undone] = RulePlanner().plan("undo that", context(session.previous)).calls
    assert undone.args == first.calls[0].args
    answer = RulePlanner().plan("what did I just make?", context(session.previous))
    assert answer.calls[0].tool == "show_results" and "2 of yuki" in answer.reply
