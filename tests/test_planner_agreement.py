"""The Ollama path and the rule planner agree (issue 27): the real `ollama` client against the
fake Ollama, with a model that answers the right tool calls for each class of request the
issue names, plans the same calls, resolved the same way, as the rule planner reading the same
request alone."""

from __future__ import annotations

import ollama
import pytest

from assistant.planners.base import Plan, PlannerContext, PoseRef
from assistant.planners.ollama_planner import OllamaPlanner
from assistant.planners.rules import RulePlanner
from tests.fake_ollama import FakeOllama

MODEL = "qwen2.5:7b"
LIBRARY = ["yuki", "sakura", "rin", "mei"]


def context() -> PlannerContext:
    return PlannerContext(characters=LIBRARY, find_pose=lambda q: PoseRef(id=None, tags=q.split()))


def draw(character: str, pose: str | None, prompt: str = "", count: int = 1) -> tuple[str, dict]:
    return "generate", {"character": character, "pose": pose, "prompt": prompt, "count": count}


# (class, request, the tool calls a model that reads it right answers)
CASES = [
    ("action_word", "draw yuki snoozing under a tree",
     [draw("yuki", "lying sleeping", "under a tree")]),
    ("posture_register", "sakura sprawled on the grass", [draw("sakura", "lying", "on the grass")]),
    ("scene_noun", "rin lounging on a bench", [draw("rin", "sitting", "on a bench")]),
    ("unknown_name", "tsubasa sitting on the roof", [draw("tsubasa", "sitting", "on the roof")]),
    ("library_question", "whats in my character collection", [("list_characters", {})]),
    ("colon_name", "new character: Tomoe, a shrine maiden",
     [("create_character", {"name": "tomoe", "description": "a shrine maiden"})]),
    ("each_counts", "yuki and rin 2 each, and mei 3",
     [("batch", {"characters": ["yuki", "rin"], "pose": None, "prompt": "", "count": 2}),
      draw("mei", None, count=3)]),
]  # fmt: skip


def shape(plan: Plan) -> list[tuple[str, dict, dict | None]]:
    return [(call.tool, call.args, call.resolved) for call in plan.calls]


@pytest.fixture(scope="module")
def fake():
    with FakeOllama(models=(MODEL,)) as server:
        yield server


@pytest.mark.slow
@pytest.mark.parametrize(("kind", "text", "calls"), CASES, ids=[case[0] for case in CASES])
def test_the_ollama_path_and_the_rules_plan_the_same_calls(fake, kind, text, calls):
    fake.reply_tool_calls(*calls)
    by_ollama = OllamaPlanner(ollama.Client(host=fake.host), MODEL, fake.host).plan(text, context())
    by_rules = RulePlanner().plan(text, context())
    assert shape(by_ollama) == shape(by_rules)
    if kind == "unknown_name":
        assert by_rules.calls == []
        for plan in (by_ollama, by_rules):
            assert "'tsubasa'" in plan.reply and "closest" in plan.reply
