"""The embedder reader (issue 27): unlisted words read by similarity, with a threshold and a
margin; the rule planner acts on its readings and plans alone without it."""

from __future__ import annotations

import numpy as np
import pytest

from assistant.planners.base import PlannerContext, PoseRef
from assistant.planners.reader import Reader
from assistant.planners.rules import RulePlanner

LIBRARY = ["yuki", "sakura", "momo"]

# A stand-in for MiniLM (the boundary): each text's vector is fixed, unknown texts are far from all.
AXES = ["sleeping", "eating", "standing", "list", "draw", "between"]
NEAR = {
    "sleeping": "sleeping", "dozing": "sleeping", "nodding off": "sleeping",
    "eating": "eating", "munching": "eating",
    "standing": "standing",
    "who are my characters": "list", "what's in here?": "list",
    "draw her": "draw",
}  # fmt: skip


def encode(texts: list[str]) -> np.ndarray:
    rows = np.zeros((len(texts), len(AXES) + 1), dtype="float32")
    for row, text in zip(rows, texts, strict=True):
        if text == "half asleep half eating":
            row[[AXES.index("sleeping"), AXES.index("eating")]] = 1.0
        else:
            row[AXES.index(NEAR[text]) if text in NEAR else len(AXES)] = 1.0
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


LABELS = {
    "action": {"sleeping": ["sleeping", "dozing"], "eating": ["eating"]},
    "posture": {"standing": ["standing"]},
    "intent": {"list": ["who are my characters"], "draw": ["draw her"]},
}


def fake_reader() -> Reader:
    return Reader(encode=encode, labels=LABELS)


def plan(text: str, reader: Reader | None):
    context = PlannerContext(characters=LIBRARY, find_pose=lambda q: PoseRef(id=None, tags=[q]))
    return RulePlanner(reader=reader).plan(text, context)


def test_a_phrase_reads_as_its_nearest_label_above_the_threshold_and_the_margin():
    reader = fake_reader()
    assert reader.read("action", "munching") == "eating"
    assert reader.read("action", "teapot") is None  # unrelated: below the threshold
    assert reader.read("action", "half asleep half eating") is None  # a tie: no margin


def test_an_unlisted_action_word_gives_the_pose_its_action_tag():
    (call,) = plan("draw yuki nodding off", fake_reader()).calls
    assert call.args["character"] == "yuki" and "sleeping" in call.args["pose"]
    (call,) = plan("draw yuki nodding off", None).calls
    assert "sleeping" not in (call.args["pose"] or "")


def test_a_library_question_the_patterns_miss_lists_the_characters():
    assert [c.tool for c in plan("what's in here?", fake_reader()).calls] == ["list_characters"]
    assert plan("what's in here?", None).calls == []


def test_an_embedder_that_cannot_load_leaves_the_rules_planning_alone():
    def missing():
        raise ImportError("no sentence-transformers")

    reader = Reader(load=missing)
    (call,) = plan("draw momo munching", reader).calls
    assert call.args["character"] == "momo" and reader.failed


@pytest.mark.parametrize(
    ("text", "word"),
    [
        ("tsubasa sitting on the roof", "tsubasa"),
        ("kiyomi, standing, 2 images", "kiyomi"),
        ("mei sitting and Oluwaseun running", "oluwaseun"),
    ],
)
def test_an_unknown_name_opening_a_pose_clause_is_named_with_the_closest(text, word):
    reply = plan(text, None).reply
    assert f"'{word}'" in reply and "closest" in reply


@pytest.mark.slow
def test_minilm_reads_unlisted_action_words_and_leaves_unrelated_words_unread():
    from assistant.planners.reader import shared_reader

    reader = shared_reader()
    assert reader.read("action", "snoozing") == "sleeping"
    assert reader.read("action", "sipping tea") == "drinking"
    assert reader.read("action", "carburetor") is None


def test_a_bare_drawing_verb_is_not_a_library_question():
    reader = Reader(encode=encode, labels={**LABELS, "intent": {"list": ["draw her"]}})
    assert reader.read("intent", "draw her") == "list"
    assert [c.tool for c in plan("draw her", reader).calls] != ["list_characters"]
