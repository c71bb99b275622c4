"""Every command of `anime-gen` and `anime-chat`, found in their typer apps, on a fresh home with
no config file, offline: it works or says one line (and hints), never a traceback, and never
hangs. The tiny-model config of the other tests hides the defaults, so none is written here.

A command that is not in `CASES` fails `test_every_command_has_a_case`: add its arguments there.
Each case runs as its own process (a real hang guard; the supervisor's signal handlers stay out
of pytest). `ANIME_IN_PROCESS=1` (tests/conftest.py) keeps the work in that process, so no server
starts except for the commands that always use one (`gallery`), stopped after the test.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

# Seconds: only a bound for a hung command, never a speed requirement.
HANG_GUARD = 240
ROOT = Path(__file__).resolve().parent.parent

# Command path -> argument lists to run it with; {png}, {image} and {pose} are files the
# fixture writes (a PNG with A1111 parameters, a drawing, an OpenPose-style keypoints JSON).
CASES: dict[str, list[list[str]]] = {
    "anime-gen generate": [
        ["generate", "sakura", "standing", "--dry-run"],
        ["sakura", "standing", "--dry-run"],
        ["--character", "sakura", "--pose", "standing", "--dry-run"],
        ["--all-characters", "--pose", "standing", "--dry-run"],
        ["--variations", "sakura", "2", "--dry-run"],
        ["--character", "sakura", "--random-pose", "--dry-run", "--json"],
        ["--from-png", "{png}", "--dry-run"],
    ],
    "anime-gen worker": [["worker"]],
    "anime-gen info": [["info", "{png}"], ["info", "{png}", "--json"]],
    "anime-gen serve": [["serve", "--stop"]],
    "anime-gen gallery": [["gallery", "--no-browser"]],
    "anime-gen doctor": [["doctor"]],
    "anime-gen mcp": [["mcp"]],  # an MCP client that closes stdin at once
    "anime-gen characters add": [["characters", "add", "momo", "--image", "{image}"]],
    "anime-gen characters edit": [["characters", "edit", "nobody", "--description", "x"]],
    "anime-gen characters list": [["characters", "list"], ["characters", "list", "--json"]],
    "anime-gen characters remove": [["characters", "remove", "nobody"]],
    "anime-gen poses search": [["poses", "search", "sitting reading", "--json"]],
    "anime-gen poses list": [["poses", "list"]],
    "anime-gen poses show": [["poses", "show", "standing_neutral", "--json"]],
    "anime-gen poses add": [["poses", "add", "my pose", "--from", "{pose}"]],
    "anime-gen jobs": [["jobs"], ["jobs", "--json"]],
    "anime-gen jobs cancel": [["jobs", "cancel", "nojob"]],
    "anime-gen jobs retry": [["jobs", "retry", "nojob"]],
    "anime-gen jobs wait": [["jobs", "wait"]],
    "anime-gen index rebuild": [["index", "rebuild"]],
    "anime-chat": [
        ["-c", "draw sakura standing", "--plan-only", "--json"],
        ["-c", "who do I have"],
        [],  # the REPL, reading an empty stdin
    ],
}
# The console scripts' modules.
APPS = {"anime-gen": "assistant.gen_cli", "anime-chat": "assistant.chat_cli"}


def _commands() -> list[str]:
    """Every command path of both apps: leaf commands, and groups that run on their own."""
    import typer

    from assistant.chat_cli import app as chat_app
    from assistant.gen_cli import app as gen_app

    found: list[str] = []

    def walk(command, path: str) -> None:
        subcommands = getattr(command, "commands", None)
        if subcommands is None or command.invoke_without_command:
            found.append(path)
        for name, sub in (subcommands or {}).items():
            walk(sub, f"{path} {name}")

    walk(typer.main.get_command(gen_app), "anime-gen")
    walk(typer.main.get_command(chat_app), "anime-chat")
    return found


def test_every_command_has_a_case():
    missing = [path for path in _commands() if path not in CASES]
    assert not missing, (
        f"no fresh-home case for {', '.join(missing)}: add its arguments to CASES in "
        "tests/test_fresh_home.py"
    )
    stale = [path for path in CASES if path not in _commands()]
    assert not stale, f"CASES names commands that no longer exist: {', '.join(stale)}"


@pytest.fixture
def fresh_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """A home with no config file, offline, Ollama unreachable; files for the arguments."""
    from PIL import Image
    from PIL.PngImagePlugin import PngInfo

    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("ANIME_HOME", str(home))  # the autouse fixture stops what it started
    files = tmp_path / "files"
    files.mkdir()
    info = PngInfo()
    info.add_text(
        "parameters",
        "1girl, pink hair, standing\nNegative prompt: lowres\nSteps: 20, Sampler: Euler a, "
        "CFG scale: 7, Seed: 42, Size: 512x768, Model: anything-v5",
    )
    Image.new("RGB", (64, 96), (200, 180, 220)).save(files / "a1111.png", pnginfo=info)
    Image.new("RGB", (96, 128), (240, 200, 210)).save(files / "drawing.png")
    points = [[256, 100], [256, 160], [210, 165], [200, 260], [195, 350], [302, 165],
              [312, 260], [317, 350], [230, 380], [228, 520], [226, 660], [282, 380],
              [284, 520], [286, 660], [245, 90], [267, 90], [235, 95], [277, 95]]  # fmt: skip
    (files / "pose.json").write_text(json.dumps({"keypoints": points}))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANIME_", "HF_"))}
    env.update(
        ANIME_HOME=str(home),
        ANIME_IN_PROCESS="1",
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        ANIME_LLM_HOST="http://127.0.0.1:9",
        # What a command leaves running in the background idles out soon.
        ANIME_WORKER_KEEP_ALIVE="1s",
        ANIME_SERVER_KEEP_ALIVE="30s",
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    )
    env["{png}"], env["{image}"] = str(files / "a1111.png"), str(files / "drawing.png")
    env["{pose}"] = str(files / "pose.json")
    return env


def _cases() -> list[tuple[str, list[str]]]:
    return [(path, args) for path, cases in CASES.items() for args in cases]


@pytest.mark.slow
@pytest.mark.parametrize(("path", "args"), _cases(), ids=[" ".join([p, *a]) for p, a in _cases()])
def test_a_command_on_a_fresh_home_is_an_answer_or_one_line(fresh_home, path, args):
    program = path.split()[0]
    env = {k: v for k, v in fresh_home.items() if not k.startswith("{")}
    argv = [fresh_home.get(arg, arg) for arg in args]
    try:
        result = subprocess.run(
            [sys.executable, "-m", APPS[program], *argv],
            env=env,
            cwd=fresh_home["ANIME_HOME"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=HANG_GUARD,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"{program} {' '.join(args)} hung on a fresh home")
    shown = f"{program} {' '.join(args)}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    assert "Traceback" not in result.stderr + result.stdout, shown
    assert result.returncode in (0, 1), shown
    if result.returncode == 1 and path != "anime-gen doctor":
        lines = result.stderr.splitlines()
        errors = [n for n, line in enumerate(lines) if line.startswith("error: ")]
        assert len(errors) == 1, shown
        assert all(line.startswith("hint: ") for line in lines[errors[0] + 1 :]), shown
