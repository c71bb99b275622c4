"""Every everyday command on a fresh home with no config file, offline: it works or says one
line (and hints), never a traceback. The tiny-model config of the other tests hides the defaults."""

import pytest
from typer.testing import CliRunner

COMMANDS = [
    ["doctor"],
    ["characters", "list"],
    ["characters", "remove", "nobody"],
    ["jobs"],
    ["index", "rebuild"],
    ["poses", "list"],
    ["poses", "search", "sitting reading"],
    ["sakura", "standing", "--dry-run"],
    ["--character", "sakura", "--pose", "standing", "--dry-run"],
    ["--all-characters", "--pose", "standing", "--dry-run"],
    ["--variations", "sakura", "2", "--dry-run"],
]


@pytest.fixture
def fresh_home(tmp_path, monkeypatch):
    monkeypatch.setenv("ANIME_HOME", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("ANIME_LLM_HOST", "http://127.0.0.1:9")
    return tmp_path


@pytest.mark.parametrize("args", COMMANDS, ids=" ".join)
def test_a_command_on_a_fresh_home_is_an_answer_or_one_line(fresh_home, args):
    from assistant.gen_cli import app

    result = CliRunner().invoke(app, args)
    assert result.exit_code in (0, 1), result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    if result.exit_code == 1:
        assert result.stderr.startswith("error: "), result.stderr


def test_chat_plan_only_on_a_fresh_home_answers(fresh_home):
    from assistant.chat_cli import app

    result = CliRunner().invoke(app, ["-c", "draw sakura standing", "--plan-only", "--json"])
    assert result.exit_code == 0, result.output
    assert "library is empty" in result.stdout
