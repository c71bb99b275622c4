"""Many first calls at once to a cold studio server: each answers as it would alone.

A cold server builds its warm resources (the pose index and its embedder, the gallery's
catalog, the planner's runtime) on first use, in FastAPI's thread pool; two requests at once
must not build one twice (chromadb's client creation races) or see it half built. Clients that
start the server at the same moment must all get the one server that wins the home's lock.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from conftest import studio_env, studio_home
from PIL import Image

from tools.server.client import StudioClient, connect, running_client
from tools.server.files import stop_server

SEARCH = ("POST", "/api/poses/search", {"text": "sitting reading", "k": 3})
PLAN = ("POST", "/api/generate/plan", {"character": "sakura", "pose": "sitting reading", "seed": 7})
CHAT_PLAN = ("POST", "/api/plan", {"text": "draw sakura sitting reading", "planner": "rules"})
IMAGES = ("GET", "/api/images", None)
FIRST_CALLS = [SEARCH] * 4 + [PLAN] * 3 + [CHAT_PLAN] * 3 + [IMAGES] * 3


def _home(tmp_path: Path, tiny_models: Path) -> Path:
    """A home with `sakura` and two generated images, whose server has never run."""
    from evals.gallery_bench import synthetic_meta
    from tools.characters.library import CharacterLibrary
    from tools.settings import load_settings
    from tools.store.gen_index import GenerationIndex
    from tools.store.output_store import OutputStore

    home = studio_home(tmp_path / "home", tiny_models)
    settings = load_settings(home=home, env={})
    CharacterLibrary(settings.paths).add("sakura", Image.new("RGB", (96, 128), (240, 200, 210)))
    index = GenerationIndex(settings.paths.state / "generations.sqlite")
    store = OutputStore(settings, index)
    for number in range(2):
        meta = synthetic_meta(number, "sakura", ("standing", ["standing"]), "a park", True)
        store.save(Image.new("RGB", (32, 48), (40, 120, 200)), meta, key=meta["key"])
    index.close()
    return home


def _comparable(path: str, answer: Any) -> Any:
    """The answer without what differs by design between two calls (a new session's id)."""
    if path == "/api/plan":
        return {key: value for key, value in answer.items() if key != "session"}
    return answer


def _call(client: StudioClient, call: tuple[str, str, Any]) -> Any:
    method, path, body = call
    return _comparable(path, client.call(method, path, body, timeout=300))


@pytest.mark.slow
def test_many_first_calls_at_once_to_a_cold_server_answer_as_alone(
    tmp_path, tiny_models, monkeypatch
):
    home = _home(tmp_path, tiny_models)
    for name, value in studio_env(home).items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("ANIME_IN_PROCESS")
    try:
        client = connect(home)  # only /api/status: nothing warm is built yet
        start = threading.Barrier(len(FIRST_CALLS))

        def first_call(call: tuple[str, str, Any]) -> Any:
            start.wait(timeout=60)
            return _call(client, call)

        with ThreadPoolExecutor(len(FIRST_CALLS)) as pool:
            together = list(pool.map(first_call, FIRST_CALLS))
        alone = {call[1]: _call(client, call) for call in FIRST_CALLS}
        assert alone[SEARCH[1]][0]["id"] == "sitting_reading"
        assert len(alone[IMAGES[1]]["images"]) == 2
        for call, answer in zip(FIRST_CALLS, together, strict=True):
            assert answer == alone[call[1]], call
    finally:
        stop_server(home / ".anime-chat")


@pytest.mark.slow
def test_eight_pose_searches_at_once_start_one_server_and_all_answer(tmp_path, tiny_models):
    """8 `anime-gen poses search` on a home with no server: the first to take the home's lock
    serves them all, and each prints what one search alone prints."""
    home = studio_home(tmp_path / "home", tiny_models)
    env = studio_env(home)
    command = [sys.executable, "-m", "assistant.gen_cli", "poses", "search", "sitting reading"]
    command.append("--json")
    try:
        processes = [
            subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            for _ in range(8)
        ]
        results = [(p.wait(timeout=300), *p.communicate()) for p in processes]
        alone = subprocess.run(command, env=env, capture_output=True, timeout=120)
        assert alone.returncode == 0, alone.stderr
        assert json.loads(alone.stdout)[0]["id"] == "sitting_reading"
        for code, out, err in results:
            assert code == 0, err.decode()
            assert out == alone.stdout
        assert running_client(home) is not None
    finally:
        stop_server(home / ".anime-chat")
