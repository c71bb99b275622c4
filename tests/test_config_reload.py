"""A warm worker renders each job with the config file as it was when the job was submitted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from PIL import Image

pytestmark = pytest.mark.slow
GEN = [sys.executable, "-m", "assistant.gen_cli"]


def set_steps(home: Path, steps: int) -> None:
    config = home / ".anime-config.yaml"
    data = yaml.safe_load(config.read_text())
    data.setdefault("output", {})["steps"] = steps
    config.write_text(yaml.safe_dump(data))


def draw(seed: int) -> dict:
    done = subprocess.run(
        [*GEN, "sakura", "standing", "--seed", str(seed), "--json"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    [output] = json.loads(done.stdout)["outputs"]
    return output


def test_editing_the_config_between_commands_reaches_the_warm_worker(
    anime_home: Path, reference_image: Path, monkeypatch: pytest.MonkeyPatch
):
    # Warm through both commands even on a loaded machine (the autouse fixture stops it after).
    monkeypatch.setenv("ANIME_WORKER_KEEP_ALIVE", "10m")
    from tools.characters.library import CharacterLibrary
    from tools.settings import load_settings

    library = CharacterLibrary(load_settings().paths)
    added = library.add("sakura", Image.open(reference_image))
    library.update(added.model_copy(update={"consistency_baseline": 0.99}))
    pid_file = anime_home / ".anime-chat" / "worker.pid"

    set_steps(anime_home, 2)
    first = draw(seed=5)
    warm_pid = pid_file.read_text().strip()
    set_steps(anime_home, 3)
    second = draw(seed=5)

    assert pid_file.read_text().strip() == warm_pid  # the same warm worker drew both
    assert "Steps: 2," in Image.open(first["path"]).text["parameters"]
    assert "Steps: 3," in Image.open(second["path"]).text["parameters"]
    assert Image.open(first["path"]).tobytes() != Image.open(second["path"]).tobytes()
