"""The real `ollama` client against a fake Ollama server on 127.0.0.1."""

from __future__ import annotations

import json
import socket
import time

import ollama
import pytest

from assistant.planners import PlannerContext, PoseRef, RulePlanner, choose_planner
from assistant.planners.ollama_planner import (
    FallbackPlanner,
    OllamaPlanner,
    OllamaUnavailable,
    unload,
)
from tests.fake_ollama import HANG_SECONDS, FakeOllama

MODEL = "qwen2.5:7b"


def find_pose(query: str) -> PoseRef:
    return PoseRef(id=f"bank-{query.split()[0]}", tags=query.split())


@pytest.fixture
def context() -> PlannerContext:
    return PlannerContext(characters=["yuki", "sakura"], find_pose=find_pose)


@pytest.fixture
def fake():
    with FakeOllama(models=(MODEL,)) as server:
        yield server


def planner_for(fake: FakeOllama) -> OllamaPlanner:
    return OllamaPlanner(ollama.Client(host=fake.host), MODEL, fake.host)


GENERATE = {"character": "yuki", "pose": "sitting reading", "prompt": "", "count": 5, "seed": None}


def test_native_tool_call_is_validated_and_resolved(fake, context):
    fake.reply_tool_calls(("generate", GENERATE))
    plan = planner_for(fake).plan("draw yuki sitting reading, 5 variations", context)
    assert plan.planner == "ollama"
    [call] = plan.calls
    assert call.args == GENERATE
    assert call.resolved == {
        "characters": ["yuki"],
        "pose": {"id": "bank-sitting", "tags": ["sitting", "reading"]},
    }
    [sent] = fake.bodies("/api/chat")
    assert {tool["function"]["name"] for tool in sent["tools"]} >= {"generate", "batch"}
    assert "yuki, sakura" in sent["messages"][0]["content"]


def test_tool_call_written_as_json_text_is_accepted(fake, context):
    text = '```json\n{"name": "generate", "arguments": {"character": "sakura", "count": 2}}\n```'
    fake.reply_text(text)
    plan = planner_for(fake).plan("two of sakura", context)
    assert [(c.tool, c.args["character"], c.args["count"]) for c in plan.calls] == [
        ("generate", "sakura", 2)
    ]


def test_invalid_arguments_are_reasked_with_the_error(fake, context):
    fake.reply_tool_calls(("generate", {"character": "yuki", "count": 0}))
    fake.reply_tool_calls(("generate", {"character": "yuki", "count": 3}))
    plan = planner_for(fake).plan("yuki three times", context)
    assert plan.calls[0].args["count"] == 3
    first, second = fake.bodies("/api/chat")
    reask = second["messages"][-1]["content"]
    assert "count" in reask and "greater than or equal to 1" in reask
    assert len(second["messages"]) == len(first["messages"]) + 2


def test_reasks_are_bounded(fake, context):
    for _ in range(3):
        fake.reply_tool_calls(("generate", {"count": 2}))
    fake.reply_tool_calls(("generate", GENERATE))
    plan = planner_for(fake).plan("draw", context)
    assert plan.calls == []
    assert len(fake.bodies("/api/chat")) == 3
    assert "invalid" in plan.reply


def test_unknown_character_plans_nothing_and_names_the_closest(fake, context):
    fake.reply_tool_calls(("generate", {**GENERATE, "character": "zelda"}))
    plan = planner_for(fake).plan("draw zelda", context)
    assert plan.calls == []
    assert "zelda" in plan.reply and "yuki" in plan.reply


def test_model_not_pulled_says_how_to_pull(fake):
    with pytest.raises(OllamaUnavailable) as error:
        choose_planner("ollama", fake.host, "llama3.2:1b", notice=print)
    assert error.value.hint == "run `ollama pull llama3.2:1b`"
    notices: list[str] = []
    planner = choose_planner("auto", fake.host, "llama3.2:1b", notice=notices.append)
    assert isinstance(planner, RulePlanner)
    assert len(notices) == 1 and "ollama pull llama3.2:1b" in notices[0]


def test_model_removed_after_check_is_reported_on_chat(fake, context):
    planner = OllamaPlanner(ollama.Client(host=fake.host), "gone:1b", fake.host)
    with pytest.raises(OllamaUnavailable, match="not pulled"):
        planner.plan("draw yuki", context)


def closed_port_host() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def test_connection_refused_falls_back_to_rules_in_auto_only():
    host = closed_port_host()
    notices: list[str] = []
    assert isinstance(choose_planner("auto", host, MODEL, notices.append), RulePlanner)
    assert len(notices) == 1 and "ollama serve" in notices[0]
    with pytest.raises(OllamaUnavailable, match="not reachable"):
        choose_planner("ollama", host, MODEL, notices.append)


def test_available_model_gives_the_ollama_planner(fake):
    assert isinstance(choose_planner("ollama", fake.host, MODEL, print), OllamaPlanner)
    auto = choose_planner("auto", fake.host, MODEL, print)
    assert isinstance(auto, FallbackPlanner) and isinstance(auto.primary, OllamaPlanner)


@pytest.mark.parametrize("fault", ["hang", "drop"])
def test_auto_falls_back_to_rules_when_ollama_hangs_or_drops(fake, context, fault):
    notices: list[str] = []
    planner = choose_planner("auto", fake.host, MODEL, notices.append, timeout=1.0)
    fake.misbehave_on_chat(fault)
    started = time.monotonic()
    plan = planner.plan("draw yuki sitting reading", context)
    # llm.timeout (1 s) bounds the attempt, not the hang: a generous bound, for a loaded machine.
    assert time.monotonic() - started < HANG_SECONDS - 0.5
    assert plan.planner == "rules" and plan.calls[0].args["character"] == "yuki"
    expected = "did not answer within 1 s" if fault == "hang" else "dropped the connection"
    assert len(notices) == 1 and expected in notices[0] and "rule planner" in notices[0]


@pytest.mark.parametrize(
    ("fault", "message"),
    [("hang", "did not answer within 1 s"), ("drop", "dropped the connection")],
)
def test_planner_ollama_turns_hangs_and_drops_into_one_user_error(fake, context, fault, message):
    planner = choose_planner("ollama", fake.host, MODEL, print, timeout=1.0)
    fake.misbehave_on_chat(fault)
    with pytest.raises(OllamaUnavailable, match=message) as error:
        planner.plan("draw yuki", context)
    assert error.value.hint


def test_timeout_bounds_the_whole_attempt_across_reasks(fake, context):
    """Each re-ask gets only the time left: two slow-but-valid answers cannot add up."""
    timeout = HANG_SECONDS - 1.0  # a whole timeout would end before the fake's hang does
    planner = OllamaPlanner(ollama.Client(host=fake.host), MODEL, fake.host, timeout=timeout)
    planner._first_start = time.monotonic() - (timeout - 0.1)  # the probe used all but 0.1 s
    fake.misbehave_on_chat("hang")
    started = time.monotonic()
    with pytest.raises(OllamaUnavailable, match="did not answer"):
        planner.plan("draw yuki", context)
    # 0.1 s left, against a whole timeout if the re-ask got one: a margin for a loaded machine.
    assert time.monotonic() - started < timeout / 2


def test_tool_schemas_reach_ollama_typed_and_bounded(fake, context):
    """ollama-python's Tool model drops `anyOf` and bounds: what arrives must still say them."""
    fake.reply_tool_calls(("generate", GENERATE))
    planner_for(fake).plan("draw yuki", context)
    [sent] = fake.bodies("/api/chat")
    tools = {tool["function"]["name"]: tool["function"]["parameters"] for tool in sent["tools"]}
    generate = tools["generate"]["properties"]
    assert generate["pose"]["type"] == ["string", "null"]
    assert generate["seed"]["type"] == ["integer", "null"]
    assert (
        generate["count"]["type"] == "integer" and "(1 to 100)" in generate["count"]["description"]
    )
    characters = tools["batch"]["properties"]["characters"]
    assert characters["type"] == ["array", "string"] and characters["items"] == {"type": "string"}
    assert '"all"' in characters["description"]
    assert tools["create_character"]["properties"]["name"]["type"] == ["string", "null"]
    for parameters in tools.values():
        for prop in parameters.get("properties", {}).values():
            assert "type" in prop and "anyOf" not in prop


def test_unload_asks_for_keep_alive_zero(fake):
    unload(ollama.Client(host=fake.host), MODEL)
    [body] = fake.bodies("/api/generate")
    assert body["model"] == MODEL and body["keep_alive"] == 0


def test_follow_up_context_reaches_the_model(fake, context):
    from assistant.planners.base import PlannedCall, PreviousImage, PreviousTurn

    call = PlannedCall(tool="generate", args=GENERATE)
    context.previous = PreviousTurn(call, [PreviousImage(7, "p1", ["sitting"], "yuki")])
    fake.reply_tool_calls(("generate", {**GENERATE, "count": 3}))
    planner_for(fake).plan("3 more of that", context)
    system = fake.bodies("/api/chat")[0]["messages"][0]["content"]
    assert json.dumps(GENERATE) in system and "seed 7" in system


def test_a_compound_reply_with_several_calls_is_validated_and_resolved_per_call(fake, context):
    sitting = {"character": "sakura", "pose": "sitting", "prompt": "on a bench", "count": 2}
    standing = {"character": "yuki", "pose": "standing", "prompt": "", "count": 1}
    fake.reply_tool_calls(
        ("create_character", {"name": "aya", "description": "blue twin tails"}),
        ("generate", {"character": "aya", "pose": "waving", "prompt": "", "count": 1}),
        ("generate", sitting),
        ("generate", standing),
    )
    plan = planner_for(fake).plan(
        "make aya ..., then draw her; sakura x2 on a bench, yuki", context
    )
    assert [call.tool for call in plan.calls] == ["create_character", *["generate"] * 3]
    drawn = [(c.args["character"], c.args["count"], c.args["pose"]) for c in plan.calls[1:]]
    assert drawn == [("aya", 1, "waving"), ("sakura", 2, "sitting"), ("yuki", 1, "standing")]
    assert plan.calls[2].resolved["pose"]["tags"] == ["sitting"]
    assert "2 of sakura sitting, on a bench; 1 of yuki standing" in plan.reply


def test_an_unknown_name_in_one_call_drops_only_that_call(fake, context):
    fake.reply_tool_calls(
        ("generate", {"character": "bob", "count": 1}),
        ("generate", {"character": "yuki", "pose": "sitting", "count": 1}),
    )
    plan = planner_for(fake).plan("bob and yuki", context)
    assert [call.args["character"] for call in plan.calls] == ["yuki"]
    assert "'bob'" in plan.reply
