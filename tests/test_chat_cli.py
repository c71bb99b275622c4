"""anime-chat as a command: --help stays light, --plan-only --json keeps the contract shape,
planner selection and its fallbacks, and the end-to-end run with the tiny models."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from assistant.chat_cli import app
from assistant.planners.base import PoseRef
from tests.fake_ollama import FakeOllama
from tests.test_ollama_planner import closed_port_host


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A home with yuki and sakura; poses resolve to their own words (the bank is a boundary)."""
    from tools.characters.library import CharacterLibrary
    from tools.settings import load_settings

    monkeypatch.setenv("ANIME_HOME", str(tmp_path))
    monkeypatch.setenv("OLLAMA_HOST", closed_port_host())
    library = CharacterLibrary(load_settings().paths)
    for name in ("yuki", "sakura"):
        library.add(name, Image.new("RGB", (64, 64), "pink"))
    monkeypatch.setattr(
        "assistant.context.pose_lookup",
        lambda runtime: (
            lambda query: PoseRef(id="p-" + query.replace(" ", "-"), tags=query.split())
        ),
    )
    return tmp_path


def invoke(*args: str):
    return CliRunner().invoke(app, list(args))


def test_plan_only_json_executes_nothing(home):
    result = invoke("-c", "draw yuki sitting reading, 5 variations", "--plan-only", "--json")
    assert result.exit_code == 0, result.output
    shape = json.loads(result.stdout)
    assert shape["planner"] == "rules"
    [call] = shape["calls"]
    assert call["args"] == {"character": "yuki", "pose": "sitting reading", "prompt": "",
                            "count": 5, "seed": None}  # fmt: skip
    assert call["resolved"]["pose"]["tags"] == ["sitting", "reading"]
    assert not (home / "anime-output").exists()


def test_auto_falls_back_to_rules_with_one_notice_line(home):
    result = invoke("-c", "who do I have", "--plan-only", "--json")
    assert result.exit_code == 0
    notices = [line for line in result.stderr.splitlines() if line]
    assert len(notices) == 1 and "ollama serve" in notices[0] and "rule planner" in notices[0]


def test_planner_ollama_never_falls_back(home):
    result = invoke("-c", "draw yuki", "--plan-only", "--planner", "ollama")
    assert result.exit_code == 1
    assert "error: Ollama is not reachable" in result.stderr and "ollama serve" in result.stderr


def test_planner_ollama_with_a_missing_model_says_how_to_pull(home, monkeypatch):
    with FakeOllama(models=("qwen2.5:7b",)) as fake:
        monkeypatch.setenv("OLLAMA_HOST", fake.host)
        result = invoke(
            "-c", "draw yuki", "--plan-only", "--planner", "ollama", "--model", "tiny:1b"
        )
    assert result.exit_code == 1
    assert "ollama pull tiny:1b" in result.stderr


def test_planner_ollama_that_hangs_is_one_line_within_llm_timeout(home, monkeypatch):
    with FakeOllama(models=("qwen2.5:7b",)) as fake:
        fake.misbehave_on_chat("hang")
        monkeypatch.setenv("OLLAMA_HOST", fake.host)
        monkeypatch.setenv("ANIME_LLM_TIMEOUT", "1s")
        result = invoke("-c", "draw yuki", "--plan-only", "--planner", "ollama")
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert lines[0].startswith("error: Ollama at ") and "did not answer within 1 s" in lines[0]
    assert lines[1].startswith("hint: ") and len(lines) == 2


def test_auto_with_a_dropping_ollama_plans_with_rules(home, monkeypatch):
    with FakeOllama(models=("qwen2.5:7b",)) as fake:
        fake.misbehave_on_chat("drop")
        monkeypatch.setenv("OLLAMA_HOST", fake.host)
        result = invoke("-c", "draw yuki sitting", "--plan-only", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["planner"] == "rules"
    [notice] = [line for line in result.stderr.splitlines() if line]
    assert "dropped the connection" in notice and "rule planner" in notice


def test_ollama_plans_through_the_cli(home, monkeypatch):
    with FakeOllama(models=("qwen2.5:7b",)) as fake:
        fake.reply_tool_calls(("generate", {"character": "Sakura", "pose": "standing", "count": 2}))
        monkeypatch.setenv("OLLAMA_HOST", fake.host)
        result = invoke("-c", "two of sakura standing", "--plan-only", "--json")
    shape = json.loads(result.stdout)
    assert shape["planner"] == "ollama"
    assert shape["calls"][0]["args"]["character"] == "sakura"
    assert shape["calls"][0]["args"]["count"] == 2


def test_unknown_character_plans_nothing_and_says_so(home):
    result = invoke("-c", "draw momo sitting", "--plan-only", "--json", "--planner", "rules")
    shape = json.loads(result.stdout)
    assert shape["calls"] == [] and "'momo'" in shape["reply"] and "yuki" in shape["reply"]


@pytest.mark.slow
def test_contract_example_with_the_real_pose_bank(tmp_path):
    from tools.characters.library import CharacterLibrary
    from tools.settings import load_settings

    env = {**os.environ, "ANIME_HOME": str(tmp_path), "OLLAMA_HOST": closed_port_host()}
    CharacterLibrary(load_settings(env=env).paths).add("yuki", Image.new("RGB", (64, 64)))
    command = [sys.executable, "-m", "assistant.chat_cli", "-c",
               "draw yuki sitting reading, 5 variations", "--plan-only", "--json"]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=True)
    [call] = json.loads(done.stdout)["calls"]
    assert call["args"]["count"] == 5 and call["resolved"]["characters"] == ["yuki"]
    assert call["resolved"]["pose"]["tags"][0] == "sitting"
    assert "reading" in call["resolved"]["pose"]["tags"]
