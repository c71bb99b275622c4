"""The studio server: auth (token, cookie + CSRF), loopback checks, the path guard, one server
per home, stale files, the contract's shapes through it, SSE progress and kill -9 recovery.

The unit tests drive the app in-process (TestClient); the rest share one background server per
module (`studio`) so the suite pays its cold start once.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import studio_env as _env
from conftest import studio_home as _home
from fastapi.testclient import TestClient

from tools.gallery.auth import login_code
from tools.server import files
from tools.server.app import create_app
from tools.server.client import StudioClient, connect, running_client
from tools.server.files import stop_server
from tools.server.security import CSRF_HEADER, cookie_name, csrf_token
from tools.server.studio import Studio

TOKEN = "test-token"


# --- the app itself ------------------------------------------------------------------------------
@pytest.fixture
def app_client(anime_home: Path) -> TestClient:
    from assistant.studio import routers

    studio = Studio(anime_home, TOKEN, "127.0.0.1")
    return TestClient(create_app(studio, routers()), base_url="http://127.0.0.1:7788")


def test_routes_need_the_token(app_client):
    assert app_client.get("/api/characters").status_code == 401
    wrong = {"Authorization": "Bearer nope"}
    assert app_client.get("/api/characters", headers=wrong).status_code == 401
    assert app_client.post("/api/plan", json={"text": "hi"}).status_code == 401
    ok = app_client.get("/api/characters", headers={"Authorization": f"Bearer {TOKEN}"})
    assert ok.status_code == 200 and ok.json() == []


def test_http_basic_with_the_token_as_password_is_accepted(app_client):
    """A1111's `--api-auth` style: any user name, the token as the password."""
    import base64

    def basic(credentials: str) -> dict[str, str]:
        return {"Authorization": "Basic " + base64.b64encode(credentials.encode()).decode()}

    assert app_client.get("/api/characters", headers=basic(f"anyone:{TOKEN}")).status_code == 200
    assert app_client.get("/api/characters", headers=basic(f":{TOKEN}")).status_code == 200
    for wrong in ("anyone:nope", TOKEN, f"{TOKEN}:", ""):
        assert app_client.get("/api/characters", headers=basic(wrong)).status_code == 401
    garbled = {"Authorization": "Basic %%%not-base64"}
    assert app_client.get("/api/characters", headers=garbled).status_code == 401


def test_cookie_needs_the_csrf_header_to_change_anything(app_client):
    app_client.cookies.set(cookie_name(7788), TOKEN)  # the token is no session
    assert app_client.get("/api/characters").status_code == 401
    app_client.get("/gallery/login", params={"code": login_code(TOKEN)})
    assert app_client.get("/api/characters").status_code == 200
    session = app_client.app.state.studio.gallery_session
    body = {"text": "who do I have", "planner": "rules"}
    assert app_client.post("/api/plan", json=body).status_code == 401
    forged = app_client.post("/api/plan", json=body, headers={CSRF_HEADER: "guess"})
    assert forged.status_code == 401
    stale = app_client.post("/api/plan", json=body, headers={CSRF_HEADER: csrf_token(TOKEN)})
    assert stale.status_code == 401
    ok = app_client.post("/api/plan", json=body, headers={CSRF_HEADER: csrf_token(session)})
    assert ok.status_code == 200, ok.text


@pytest.mark.parametrize(
    "headers",
    [{"Host": "evil.example:7788"}, {"Origin": "http://evil.example"}, {"Origin": "null"}],
)
def test_non_loopback_host_or_origin_is_forbidden(app_client, headers):
    headers = {"Authorization": f"Bearer {TOKEN}", **headers}
    assert app_client.get("/api/characters", headers=headers).status_code == 403


def test_files_outside_the_home_folders_are_not_found(app_client, anime_home):
    auth = {"Authorization": f"Bearer {TOKEN}"}
    inside = anime_home / "anime-output" / "drawn.png"
    inside.parent.mkdir(parents=True)
    inside.write_bytes(b"ok")
    assert app_client.get("/api/file", params={"path": str(inside)}, headers=auth).text == "ok"
    for path in (
        f"{anime_home}/anime-output/../.anime-config.yaml",
        f"{anime_home}/anime-output/../../../../etc/passwd",
        "/etc/passwd",
    ):
        answer = app_client.get("/api/file", params={"path": path}, headers=auth)
        assert answer.status_code == 404, path
    (anime_home / "anime-output" / "escape").symlink_to("/etc")
    escape = f"{anime_home}/anime-output/escape/passwd"
    assert app_client.get("/api/file", params={"path": escape}, headers=auth).status_code == 404


def test_user_errors_keep_message_and_hint(app_client):
    auth = {"Authorization": f"Bearer {TOKEN}"}
    answer = app_client.post("/api/generate/plan", json={"character": "nobody"}, headers=auth)
    assert answer.status_code == 422
    assert "nobody" in answer.json()["error"] and answer.json()["hint"]
    # A pose bank error is a user error too (one handler for both).
    answer = app_client.post(
        "/api/poses/search", json={"text": "reading", "posture": "floating"}, headers=auth
    )
    assert answer.status_code == 422
    assert answer.json()["error"] == "unknown posture 'floating'" and answer.json()["hint"]


def _overrides(env: dict[str, str]) -> dict[str, str]:

    return {"Authorization": f"Bearer {TOKEN}", "X-Anime-Overrides": json.dumps({"env": env})}


def test_anime_and_hf_overrides_reach_the_job(app_client, anime_home, monkeypatch):
    from PIL import Image

    from tools.characters.library import CharacterLibrary
    from tools.jobs.journal import JobJournal
    from tools.server.client import process_environment
    from tools.settings import load_settings

    started: list = []
    monkeypatch.setattr("tools.jobs.client.ensure_worker", started.append)
    CharacterLibrary(load_settings().paths).add("sakura", Image.new("RGB", (64, 96), "pink"))
    body = {"character": "sakura", "pose": "standing", "seed": 1}
    same = {**process_environment(), "ANIME_OUTPUT_STEPS": "3"}
    answer = app_client.post("/api/jobs", json=body, headers=_overrides(same))
    assert answer.status_code == 200, answer.text
    job = JobJournal.for_state(anime_home / ".anime-chat").find(answer.json()["job"])
    assert job.request["settings"]["output"]["steps"] == 3
    assert started and started[0].output.steps == 3
    # HF_* are read once by the worker process: a job that asks for others is refused.
    other = {**same, "HF_HUB_ETAG_TIMEOUT": "99"}
    refused = app_client.post("/api/jobs", json=body, headers=_overrides(other))
    assert refused.status_code == 422 and "HF_HUB_ETAG_TIMEOUT" in refused.json()["error"]
    assert "secret" not in str(process_environment({"HF_TOKEN": "secret"}))


def test_ollama_host_travels_to_the_planner(app_client):
    from tests.fake_ollama import FakeOllama

    with FakeOllama(models=("qwen2.5:7b",)) as fake:
        fake.reply_tool_calls(("list_characters", {}))
        body = {"text": "who do I have", "planner": "ollama"}
        answer = app_client.post(
            "/api/plan", json=body, headers=_overrides({"OLLAMA_HOST": fake.host})
        )
    assert answer.status_code == 200, answer.text
    assert answer.json()["plan"]["planner"] == "ollama"


# --- files ---------------------------------------------------------------------------------------
def test_stale_discovery_and_pid_are_cleaned(tmp_path):
    state = tmp_path / ".anime-chat"
    state.mkdir()
    (state / files.DISCOVERY_NAME).write_text(json.dumps({"pid": 999999, "host": "x", "port": 1}))
    (state / files.PID_NAME).write_text("999999\n")
    (state / files.LOCK_NAME).touch()
    assert files.live_discovery(state) is None
    assert not (state / files.DISCOVERY_NAME).exists() and not (state / files.PID_NAME).exists()


def test_token_file_is_private(tmp_path):
    token = files.write_token(tmp_path)
    assert files.read_token(tmp_path) == token
    assert (tmp_path / files.TOKEN_NAME).stat().st_mode & 0o777 == 0o600


# --- a real server (the session's `studio` fixture, tests/conftest.py) ------------------------
def _cli(studio: StudioClient, module: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        env=_env(studio.home),
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_server_files_and_status(studio):
    state = studio.home / ".anime-chat"
    discovery = json.loads((state / files.DISCOVERY_NAME).read_text())
    assert set(discovery) == {"pid", "host", "port"} and discovery["host"] == "127.0.0.1"
    assert (state / files.PID_NAME).read_text().strip() == str(discovery["pid"])
    assert (state / files.TOKEN_NAME).stat().st_mode & 0o777 == 0o600
    assert studio.call("GET", "/api/status")["pid"] == discovery["pid"]


def test_contract_shapes_through_the_server(studio):
    from tools.characters.library import CharacterLibrary
    from tools.settings import load_settings

    library = CharacterLibrary(load_settings(home=studio.home, env={}).paths)
    poses = json.loads(
        _cli(studio, "assistant.gen_cli", "poses", "search", "sitting reading", "--json").stdout
    )
    assert poses and set(poses[0]) == {"id", "name", "tags", "score"}
    assert poses[0]["id"] == "sitting_reading"
    listed = json.loads(_cli(studio, "assistant.gen_cli", "characters", "list", "--json").stdout)
    assert listed == [
        {
            "name": "sakura",
            "description": "pink hair",
            "reference": str(library.get("sakura").reference_path),
        }
    ]
    dry = _cli(
        studio,
        "assistant.gen_cli",
        "sakura",
        "sitting reading",
        "--dry-run",
        "--json",
        "--seed",
        "7",
        "--batch",
        "2",
    )
    outputs = json.loads(dry.stdout)["outputs"]
    assert [o["seed"] for o in outputs] == [7, 8] and all(o["path"] is None for o in outputs)
    assert set(outputs[0]) == {
        "path",
        "character",
        "pose",
        "seed",
        "scores",
        "accepted",
        "attempts",
    }
    plan = json.loads(
        _cli(
            studio,
            "assistant.chat_cli",
            "-c",
            "draw sakura sitting reading",
            "--plan-only",
            "--json",
            "--planner",
            "rules",
        ).stdout
    )
    assert set(plan) == {"planner", "reply", "calls"} and plan["planner"] == "rules"
    assert plan["calls"][0]["tool"] == "generate"
    assert plan["calls"][0]["resolved"]["characters"] == ["sakura"]


def test_chat_executes_in_the_server_with_the_contract_shape(studio):
    result = _cli(
        studio, "assistant.chat_cli", "-c", "who do I have", "--json", "--planner", "rules"
    )
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert set(answer) == {"planner", "reply", "calls", "outputs"} and answer["outputs"] == []
    assert answer["calls"][0]["tool"] == "list_characters"


@pytest.mark.slow
def test_repl_through_the_server_keeps_its_session_memory(studio):
    lines = "draw sakura standing, seed 40\n1 more of that\n/jobs\n"
    result = subprocess.run(
        [sys.executable, "-m", "assistant.chat_cli", "--planner", "rules"],
        env={**_env(studio.home), "ANIME_CHAT_IMAGES": "off"},
        input=lines,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    paths = re.findall(r"^\s+(\S+\.png)\s", result.stdout, re.MULTILINE)
    assert len(paths) == 2, result.stdout
    # "1 more of that" is sakura standing again: the session lived in the server.
    assert all(Path(path).name.startswith("sakura_standing_") for path in paths)
    assert result.stdout.count("sakura / standing") >= 2


def test_library_commands_and_modes_through_the_server(studio, tmp_path):
    from PIL import Image

    picture = tmp_path / "momo.png"
    Image.new("RGB", (96, 128), (200, 220, 240)).save(picture)
    gen = "assistant.gen_cli"
    added = _cli(studio, gen, "characters", "add", "momo", "--image", str(picture), "-d", "blue")
    assert added.returncode == 0, added.stderr
    assert added.stdout.startswith("added momo: ") and "no face found" in added.stderr
    try:
        edited = _cli(studio, gen, "characters", "edit", "momo", "--trigger", "momo_v1")
        assert edited.stdout.strip() == "momo: loras none; trigger 'momo_v1'", edited.stderr
        every = _cli(studio, gen, "--all-characters", "--pose", "standing", "--dry-run", "--json")
        assert {o["character"] for o in json.loads(every.stdout)["outputs"]} == {"momo", "sakura"}
        sheet = _cli(studio, gen, "--character-sheet", "girl with green hair", "--dry-run")
        assert sheet.stdout.startswith("would create character '"), sheet.stderr
        varied = _cli(studio, gen, "--variations", "sakura", "3", "--dry-run", "--json")
        poses = [o["pose"]["id"] for o in json.loads(varied.stdout)["outputs"]]
        assert len(set(poses)) == 3
    finally:
        removed = _cli(studio, gen, "characters", "remove", "momo")
    assert removed.stdout.startswith("removed momo"), removed.stderr
    missing = _cli(studio, gen, "characters", "remove", "momo")
    assert missing.returncode == 1 and missing.stderr.startswith("error: ")


@pytest.mark.slow
def test_variations_render_and_link_through_the_server(studio):
    result = _cli(
        studio, "assistant.gen_cli", "--variations", "sakura", "2", "--seed", "9", "--json"
    )
    assert result.returncode == 0, result.stderr
    outputs = json.loads(result.stdout)["outputs"]
    assert [o["seed"] for o in outputs] == [9, 10]
    links = list((studio.home / ".anime-characters" / "sakura" / "variations").iterdir())
    accepted = {Path(o["path"]).name for o in outputs if o["accepted"]}
    assert accepted and accepted <= {link.name.split("_", 1)[1] for link in links}


def test_unknown_character_is_one_line_error_through_the_server(studio):
    result = _cli(studio, "assistant.gen_cli", "nobody", "standing", "--dry-run")
    assert result.returncode == 1
    assert result.stderr.startswith("error: unknown character 'nobody'")
    assert "Traceback" not in result.stderr


def test_overrides_travel_with_the_request(studio):
    body = {"character": "sakura", "pose": "standing", "seed": 1}
    studio.call("POST", "/api/generate/plan", body)
    wrong = {"output": {"resolution": "13x13"}}
    with pytest.raises(Exception, match="resolution"):
        studio.call("POST", "/api/generate/plan", body, flags=wrong)


def test_second_foreground_server_is_refused_and_idle_background_replaced(tmp_path, tiny_models):
    home = _home(tmp_path / "home", tiny_models)
    env = _env(home)
    background = subprocess.Popen(
        [sys.executable, "-m", "assistant.studio", "--background"], env=env
    )
    deadline = time.monotonic() + 120  # a hang guard only: each loop waits for an event
    try:
        while running_client(home) is None:
            assert background.poll() is None and time.monotonic() < deadline
            time.sleep(0.1)
        foreground = subprocess.Popen(
            [sys.executable, "-m", "assistant.studio"], env=env, stderr=subprocess.PIPE, text=True
        )
        assert background.wait(30) == 0  # the idle background server made way
        while (client := running_client(home)) is None or client.discovery.pid != foreground.pid:
            assert foreground.poll() is None, foreground.stderr.read()
            assert time.monotonic() < deadline, "the foreground server did not start"
            time.sleep(0.1)
        second = subprocess.run(
            [sys.executable, "-m", "assistant.studio"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert second.returncode == 1
        assert "already running" in second.stderr and client.discovery.url in second.stderr
        foreground.send_signal(signal.SIGTERM)
        assert foreground.wait(30) == 0
        assert not (home / ".anime-chat" / files.DISCOVERY_NAME).exists()
    finally:
        for process in (background,):
            if process.poll() is None:
                process.kill()
        stop_server(home / ".anime-chat")


@pytest.mark.slow
def test_sse_progress_and_kill_9_of_the_server_loses_nothing(studio, monkeypatch):
    job = studio.call(
        "POST", "/api/jobs", {"character": "sakura", "pose": "standing", "count": 3, "seed": 3}
    )["job"]
    seen: list[tuple[str, dict]] = []
    for kind, data in studio.events(job):
        seen.append((kind, data))
        if kind == "image":
            break
    # However fast the render, the stream shows the image's last step before the image lands.
    first = seen[-1][1]["index"]
    steps = [(d["step"], d["steps"]) for k, d in seen if k == "progress" and d["image"] == first]
    assert steps and steps[-1][0] == steps[-1][1] > 0, f"no per-step progress in {seen}"
    state = studio.home / ".anime-chat"
    os.kill(studio.discovery.pid, signal.SIGKILL)
    deadline = time.monotonic() + 60  # a hang guard: the kernel frees the lock as it dies
    while files.server_running(state):
        assert time.monotonic() < deadline, "the killed server still holds its lock"
        time.sleep(0.05)
    # The server that takes over serves later tests too: it runs with the session studio's
    # environment (the autouse 20 s keep-alive would let it exit idle under a later test), and
    # ANIME_HOME stays the test's own (the autouse teardown stops the servers of ANIME_HOME).
    for name, value in _env(studio.home).items():
        if name != "ANIME_HOME":
            monkeypatch.setenv(name, value)
    monkeypatch.delenv("ANIME_IN_PROCESS", raising=False)
    restarted = connect(studio.home)  # the next command starts a server again
    assert restarted.discovery.pid != studio.discovery.pid
    done = restarted.call("GET", f"/api/jobs/{job}/wait?timeout=300")
    assert done["state"] == "done" and done["done"] == 3, done
    assert len({record["path"] for record in done["records"]}) == 3
    studio.discovery, studio.token = restarted.discovery, restarted.token


@pytest.mark.slow
def test_a_run_through_the_server_keeps_the_contract_shape(studio):
    result = _cli(studio, "assistant.gen_cli", "sakura", "standing", "--seed", "5", "--json")
    assert result.returncode == 0, result.stderr
    (output,) = json.loads(result.stdout)["outputs"]
    assert set(output) >= {"path", "character", "pose", "seed", "scores", "accepted", "attempts"}
    assert output["seed"] == 5 and Path(output["path"]).is_file()


@pytest.mark.slow
def test_an_idle_server_with_other_hf_settings_is_replaced(tmp_path, tiny_models, monkeypatch):
    """The worker inherits the server's HF_*: a client with others gets a server of its own."""
    from tools.server.client import with_my_environment

    home = _home(tmp_path / "home", tiny_models)
    for name, value in _env(home).items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("ANIME_IN_PROCESS")
    monkeypatch.setenv("HF_HUB_ETAG_TIMEOUT", "11")
    try:
        first = connect(home)
        assert first.call("GET", "/api/status")["env"]["HF_HUB_ETAG_TIMEOUT"] == "11"
        assert with_my_environment(first).discovery.pid == first.discovery.pid
        monkeypatch.setenv("HF_HUB_ETAG_TIMEOUT", "12")
        second = with_my_environment(first)
        assert second.discovery.pid != first.discovery.pid
        assert second.call("GET", "/api/status")["env"]["HF_HUB_ETAG_TIMEOUT"] == "12"
    finally:
        stop_server(home / ".anime-chat")


def test_a_server_that_cannot_start_is_one_line_and_plan_only_plans_here(anime_home, monkeypatch):
    from typer.testing import CliRunner

    from assistant.chat_cli import app as chat_app
    from assistant.gen_cli import app as gen_app

    monkeypatch.delenv("ANIME_IN_PROCESS")
    monkeypatch.setenv("ANIME_SERVER_HOST", "192.0.2.1")  # TEST-NET: no interface has it
    failed = CliRunner().invoke(gen_app, ["characters", "list"])
    assert failed.exit_code == 1
    error, hint = failed.stderr.splitlines()
    assert error.startswith("error: the studio server could not start: cannot listen on 192.0.2.1")
    assert hint.startswith("hint: set server.host")
    planned = CliRunner().invoke(chat_app, ["-c", "who do I have", "--plan-only", "--json"])
    assert planned.exit_code == 0, planned.output
    assert json.loads(planned.stdout)["calls"][0]["tool"] == "list_characters"
    assert "could not start" in planned.stderr and "planning in this process" in planned.stderr


def test_an_explicit_non_loopback_host_is_warned_about(anime_home):
    from typer.testing import CliRunner

    from assistant.gen_cli import app as gen_app

    result = CliRunner().invoke(gen_app, ["serve", "--host", "192.0.2.1", "--port", "0"])
    assert result.exit_code == 1
    assert "warning: listening on 192.0.2.1: other machines can reach this server" in result.stderr
    assert "error: cannot listen on 192.0.2.1" in result.stderr


def test_a_taken_port_falls_back_to_a_free_one_and_says_so():
    import socket

    from tools.server.serve import bind

    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    said: list[str] = []
    try:
        sock = bind("127.0.0.1", port, said.append)
        assert sock.getsockname()[1] != port
        assert said == [f"port {port} is taken; using port {sock.getsockname()[1]} instead"]
        sock.close()
    finally:
        taken.close()


def test_config_edits_apply_without_a_restart(anime_home):
    studio = Studio(anime_home, TOKEN, "127.0.0.1")
    assert studio.settings().output.steps == 4
    config = anime_home / ".anime-config.yaml"
    config.write_text(config.read_text().replace("steps: 4", "steps: 9"))
    assert studio.settings().output.steps == 9
    flags = {"flags": {"output": {"steps": 3}}, "env": {"ANIME_OUTPUT_STEPS": "5"}}
    assert studio.settings(flags).output.steps == 3
    assert studio.settings({"env": {"ANIME_OUTPUT_STEPS": "5"}}).output.steps == 5


def test_idle_server_exits_after_keep_alive(tmp_path, tiny_models):
    home = _home(tmp_path / "home", tiny_models)
    env = {**_env(home), "ANIME_SERVER_KEEP_ALIVE": "1s"}
    process = subprocess.Popen([sys.executable, "-m", "assistant.studio", "--background"], env=env)
    try:
        assert process.wait(60) == 0
        assert not (home / ".anime-chat" / files.DISCOVERY_NAME).exists()
    finally:
        if process.poll() is None:
            process.kill()
