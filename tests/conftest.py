"""Shared fixtures. Each block below belongs to one concern; add new ones as their own block."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from tools.server.client import StudioClient

# huggingface_hub reads these once, at import: set them before anything imports it, so no test
# can reach the network. `anime_home` sets them again for subprocesses started by a test.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

# --- Tiny models and an isolated home ----------------------------------------------------------


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Directory of tiny random-weight models (built once per session) and its anime-config.yaml."""
    from evals.tiny_models import build_tiny_models

    directory = tmp_path_factory.mktemp("tiny-models")
    build_tiny_models(directory)
    return directory


@pytest.fixture
def anime_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_models: Path) -> Path:
    """A fresh home whose config points at the tiny models; offline, so nothing downloads."""
    from evals.tiny_models import CONFIG_NAME
    from tools.settings import CONFIG_FILENAME

    home = tmp_path / "home"
    home.mkdir()
    shutil.copyfile(tiny_models / CONFIG_NAME, home / CONFIG_FILENAME)
    monkeypatch.setenv("ANIME_HOME", str(home))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    return home


@pytest.fixture
def reference_image(tmp_path: Path) -> Path:
    """A small coloured drawing (96×128 PNG) to use as a character's reference."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (96, 128), (245, 235, 220))
    draw = ImageDraw.Draw(image)
    draw.ellipse((28, 10, 68, 50), fill=(250, 210, 180), outline=(60, 40, 30))  # face
    draw.rectangle((22, 8, 74, 22), fill=(200, 40, 60))  # hair
    draw.rectangle((30, 52, 66, 100), fill=(40, 80, 200))  # dress
    draw.line((30, 60, 12, 90), fill=(250, 210, 180), width=5)  # arms
    draw.line((66, 60, 84, 90), fill=(250, 210, 180), width=5)
    path = tmp_path / "reference.png"
    image.save(path)
    return path


# --- Worker processes (job queue) --------------------------------------------------------------


@pytest.fixture(autouse=True)
def _short_lived_workers(monkeypatch: pytest.MonkeyPatch):
    """Workers that a test starts in the background idle out soon and stop when the test ends."""
    monkeypatch.setenv("ANIME_WORKER_KEEP_ALIVE", "20s")
    monkeypatch.setenv("ANIME_SERVER_KEEP_ALIVE", "20s")
    # CLI tests work in-process; tests of the studio server unset this (tests/test_server.py).
    monkeypatch.setenv("ANIME_IN_PROCESS", "1")
    yield
    home = os.environ.get("ANIME_HOME")
    if home:
        from tools.jobs.processes import stop_worker
        from tools.server.files import stop_server

        stop_server(Path(home) / ".anime-chat")
        stop_worker(Path(home) / ".anime-chat")


# --- The studio server ---------------------------------------------------------------------------


def studio_home(root: Path, tiny_models: Path) -> Path:
    from evals.tiny_models import CONFIG_NAME
    from tools.settings import CONFIG_FILENAME

    root.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(tiny_models / CONFIG_NAME, root / CONFIG_FILENAME)
    return root


def studio_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "ANIME_IN_PROCESS"}
    env.update(ANIME_HOME=str(home), ANIME_SERVER_PORT="0", ANIME_WORKER_KEEP_ALIVE="10m")
    env["ANIME_SERVER_KEEP_ALIVE"] = "10m"
    root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    return env


@pytest.fixture(scope="session")
def studio(tmp_path_factory: pytest.TempPathFactory, tiny_models: Path) -> Iterator[StudioClient]:
    """One background studio server for the whole session, on its own home (not ANIME_HOME),
    so tests of the server and of thin clients pay its cold start once. Its library holds
    `sakura`."""
    from PIL import Image

    from tools.characters.library import CharacterLibrary
    from tools.settings import load_settings

    home = studio_home(tmp_path_factory.mktemp("studio") / "home", tiny_models)
    library = CharacterLibrary(load_settings(home=home, env={}).paths)
    library.add("sakura", Image.new("RGB", (96, 128), (240, 200, 210)), description="pink hair")
    with running_studio(home, studio_env(home)) as client, kept_awake(home):
        yield client


@contextlib.contextmanager
def kept_awake(home: Path, every_s: float = 30.0) -> Iterator[None]:
    """Ping the home's running server while the session lasts: on a loaded machine the suite's
    gaps between tests that use the session server can outlast its 10-minute keep-alive (it then
    exits on its own, and the next test finds no server). A session that dies stops pinging, so
    a server left behind still exits after the keep-alive."""
    from tools.server.client import running_client

    stop = threading.Event()

    def ping() -> None:
        while not stop.wait(every_s):
            client = running_client(home)
            if client is not None:
                with contextlib.suppress(Exception):  # a test may be stopping or killing it
                    client.call("GET", "/api/status", timeout=10)

    pinger = threading.Thread(target=ping, name="studio-keep-awake", daemon=True)
    pinger.start()
    try:
        yield
    finally:
        stop.set()
        pinger.join(15)


@contextlib.contextmanager
def running_studio(home: Path, env: dict[str, str]) -> Iterator[StudioClient]:
    """A background studio server of `home` started with `env`; stopped (and its worker) after."""
    from tools.jobs.processes import stop_worker
    from tools.server.client import running_client
    from tools.server.files import stop_server

    process = subprocess.Popen(
        [sys.executable, "-m", "assistant.studio", "--background"],
        env=env,
        stdin=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while (client := running_client(home)) is None:
        assert process.poll() is None, "the server exited"
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.1)
    try:
        yield client
    finally:
        stop_server(home / ".anime-chat")
        stop_worker(home / ".anime-chat")
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
