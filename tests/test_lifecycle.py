"""The lifecycle a user controls: `anime-gen serve --stop`, and the server's own keep-alive
(`server.keep_alive`) beside the GPU worker's (`worker.keep_alive`). Real processes; every loop
waits for an event, with a generous hang guard only."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import studio_env, studio_home
from typer.testing import CliRunner

from tools.jobs.processes import worker_running
from tools.server.client import running_client
from tools.server.files import server_running, stop_server

HANG_GUARD = 240.0  # seconds; only a bound for a hung test, never a speed requirement


def _until(condition: Callable[[], object], what: str, process: subprocess.Popen | None = None):
    deadline = time.monotonic() + HANG_GUARD
    while not (value := condition()):
        assert process is None or process.poll() is None, f"the server exited before {what}"
        assert time.monotonic() < deadline, f"hang guard: {what}"
        time.sleep(0.1)
    return value


def _alive(pid: int) -> bool:
    """A process that exists and is not a zombie (a dead child not yet waited for)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(child) for child in (task / "children").read_text().split()]
        except OSError:
            continue
    return found


def _start_server(home: Path, **env: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "assistant.studio", "--background"],
        env={**studio_env(home), **env},
        stdin=subprocess.DEVNULL,
    )


DRAW = {"character": "sakura", "pose": "standing", "count": 1, "seed": 1}


def _home_with_sakura(tmp_path: Path, tiny_models: Path) -> Path:
    from PIL import Image

    from tools.characters.library import CharacterLibrary
    from tools.settings import load_settings

    home = studio_home(tmp_path / "home", tiny_models)
    library = CharacterLibrary(load_settings(home=home, env={}).paths)
    library.add("sakura", Image.new("RGB", (96, 128), (240, 200, 210)), description="pink hair")
    return home


def test_serve_stop_when_nothing_runs_says_so(tmp_path, monkeypatch):
    from assistant.gen_cli import app

    monkeypatch.setenv("ANIME_HOME", str(tmp_path))
    result = CliRunner().invoke(app, ["serve", "--stop"])
    assert result.exit_code == 0, result.output
    assert "no studio server or worker runs" in result.stdout


@pytest.mark.slow
def test_serve_stop_leaves_no_server_or_worker_of_the_home(tmp_path, tiny_models):
    """A busy home (a job in flight, held by a hang fault): `serve --stop` ends all of it."""
    home = _home_with_sakura(tmp_path, tiny_models)
    state = home / ".anime-chat"
    server = _start_server(home, ANIME_WORKER_FAULTS="hang@0", ANIME_WORKER_HANG_TIMEOUT="1h")
    try:
        client = _until(lambda: running_client(home), "the server starts", server)
        job = client.call("POST", "/api/jobs", DRAW)["job"]
        _until(
            lambda: client.call("GET", f"/api/jobs/{job}")["state"] == "running",
            "a worker holds the job",
            server,
        )
        supervisor = int((state / "worker.pid").read_text())
        renderers = _until(lambda: _children(supervisor), "the render worker starts")
        pids = [server.pid, supervisor, *renderers]

        result = subprocess.run(
            [sys.executable, "-m", "assistant.gen_cli", "serve", "--stop"],
            env=studio_env(home),
            capture_output=True,
            text=True,
            timeout=HANG_GUARD,
        )
        assert result.returncode == 0, result.stderr
        assert f"stopped the studio server (pid {server.pid})" in result.stdout
        assert f"stopped the worker (pid {supervisor})" in result.stdout
        assert server.wait(HANG_GUARD) == 0
        _until(lambda: not any(_alive(pid) for pid in pids), "every process of the home ends")
        assert not server_running(state) and not worker_running(state)
        assert not (state / "server.pid").exists()
    finally:
        stop_server(state)
        if server.poll() is None:
            server.kill()


@pytest.mark.slow
def test_the_gpu_worker_exits_after_its_keep_alive_while_the_server_stays(tmp_path, tiny_models):
    home = _home_with_sakura(tmp_path, tiny_models)
    state = home / ".anime-chat"
    server = _start_server(home, ANIME_WORKER_KEEP_ALIVE="1s", ANIME_SERVER_KEEP_ALIVE="1h")
    try:
        client = _until(lambda: running_client(home), "the server starts", server)
        job = client.call("POST", "/api/jobs", DRAW)["job"]
        assert client.call("GET", f"/api/jobs/{job}/wait?timeout=600")["state"] == "done"
        _until(lambda: not worker_running(state), "the idle worker exits", server)
        status = client.call("GET", "/api/status")
        assert server.poll() is None and status["pid"] == server.pid, status
    finally:
        stop_server(state)
        if server.poll() is None:
            server.kill()


def test_serve_stop_never_signals_a_process_named_by_stale_files(tmp_path, monkeypatch):
    """A crash left server.json and worker.pid naming a pid that now belongs to another
    process: no lock is held, so nothing is signalled."""
    from assistant.gen_cli import app

    monkeypatch.setenv("ANIME_HOME", str(tmp_path))
    state = tmp_path / ".anime-chat"
    state.mkdir()
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        (state / "server.json").write_text(
            f'{{"pid": {bystander.pid}, "host": "127.0.0.1", "port": 9}}\n'
        )
        (state / "server.pid").write_text(f"{bystander.pid}\n")
        (state / "worker.pid").write_text(f"{bystander.pid}\n")
        for name in ("server.lock", "worker.lock"):
            (state / name).touch()
        result = CliRunner().invoke(app, ["serve", "--stop"])
        assert result.exit_code == 0, result.output
        assert "no studio server or worker runs" in result.stdout
        assert bystander.poll() is None
    finally:
        bystander.kill()
        bystander.wait()
