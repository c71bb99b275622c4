"""Hub ids through the real huggingface_hub client, served by the loopback hub in fake_hub.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fake_hub import FakeHub, repo_from_folder
from tools.jobs.processes import stop_worker

# Each weights folder also holds a variant the loaders never open: the partial download this
# project makes on purpose (one weights file per folder) must still count as downloaded.
UNUSED = b"unused variant" * 100


def hub_repos(tiny_models: Path) -> list:
    return [
        repo_from_folder(
            "tiny/sd15",
            tiny_models / "sd15",
            {"README.md": b"tiny", "unet/diffusion_pytorch_model.fp16.safetensors": UNUSED},
        ),
        repo_from_folder(
            "tiny/controlnet",
            tiny_models / "controlnet",
            {"README.md": b"tiny", "diffusion_pytorch_model.bin": UNUSED},
        ),
        repo_from_folder(
            "tiny/ip-adapter",
            tiny_models / "ip-adapter",
            {"models/ip-adapter-plus_sd15.safetensors": UNUSED},
        ),
        repo_from_folder(
            "tiny/aesthetic", tiny_models / "aesthetic", {"pytorch_model.bin": UNUSED}
        ),
    ]


def hub_env(hub_home: Path, url: str, offline: bool) -> dict[str, str]:
    return {
        **os.environ,
        "HF_ENDPOINT": url,
        "HF_HOME": str(hub_home),
        "HF_HUB_OFFLINE": "1" if offline else "0",
        "HF_HUB_DISABLE_TELEMETRY": "1",
    }


def python(code: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300
    )


def test_partial_download_is_found_offline_by_probe_fetch_and_doctor(tiny_models, tmp_path):
    hub_home = tmp_path / "hf"
    fetch = (
        "from tools.engine.model_sources import fetch_hub as f; print(f({!r}, {!r}, 'controlnet'))"
    )
    code = fetch.format("tiny/controlnet", ["diffusion_pytorch_model*"])
    with FakeHub(hub_repos(tiny_models)) as hub:
        first = python(code, hub_env(hub_home, hub.url, offline=False))
        assert first.returncode == 0, first.stderr
        assert "downloading controlnet tiny/controlnet" in first.stderr
        before = len(hub.requests)
        again = python(code, hub_env(hub_home, hub.url, offline=False))
        assert again.returncode == 0, again.stderr
        assert hub.requests[before:] == [] and "downloading" not in again.stderr
    offline = python(code, hub_env(hub_home, hub.url, offline=True))
    assert offline.returncode == 0, offline.stderr
    assert offline.stdout.strip() == first.stdout.strip()

    probe = (
        "from tools.engine.model_sources import cached_snapshot as c;"
        "print(c('tiny/controlnet', ['diffusion_pytorch_model*']) is not None,"
        " c('tiny/controlnet', ['diffusion_pytorch_model*', 'missing.safetensors']) is None,"
        " c('tiny/sd15', ['unet/*']) is None)"
    )
    assert python(probe, hub_env(hub_home, hub.url, offline=True)).stdout.split() == ["True"] * 3


def render(home: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    args = ["sakura", "--pose", "standing", "--seed", "7", "--json"]
    return subprocess.run(
        [sys.executable, "-m", "assistant.gen_cli", *args],
        env={**env, "ANIME_HOME": str(home)},
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.mark.slow
def test_hub_ids_render_on_first_download_then_offline(
    anime_home, tiny_models, reference_image, tmp_path
):
    from typer.testing import CliRunner

    from assistant.gen_cli import app

    added = CliRunner().invoke(
        app, ["characters", "add", "sakura", "--image", str(reference_image)]
    )
    assert added.exit_code == 0, added.output
    config = anime_home / ".anime-config.yaml"
    text = config.read_text()
    for folder in ("sd15", "controlnet", "ip-adapter", "aesthetic"):
        text = text.replace(str(tiny_models / folder), f"tiny/{folder}")
    config.write_text(text)
    hub_home = tmp_path / "hf"
    state = anime_home / ".anime-chat"
    with FakeHub(hub_repos(tiny_models)) as hub:
        # The client draws its bars on a terminal only; TQDM_POSITION=-1 is its switch for pipes.
        first_env = {**hub_env(hub_home, hub.url, offline=False), "TQDM_POSITION": "-1"}
        first = render(anime_home, first_env)
        assert first.returncode == 0, first.stderr
        notes = {"checkpoint": "sd15", "controlnet": "controlnet", "ipadapter": "ip-adapter",
                 "aesthetic model": "aesthetic"}  # fmt: skip
        for what, repo in notes.items():
            assert f"downloading {what} tiny/{repo} (" in first.stderr
        assert "Fetching" in first.stderr or "Downloading" in first.stderr, first.stderr
        assert not any("unused" in r or "fp16" in r or ".bin" in r for r in hub.requests)
        before = len(hub.requests)
        cached = render(anime_home, hub_env(hub_home, hub.url, offline=False))
        assert cached.returncode == 0, cached.stderr
        assert hub.requests[before:] == [] and "downloading" not in cached.stderr
    stop_worker(state)
    offline_env = hub_env(hub_home, hub.url, offline=True)
    offline = render(anime_home, offline_env)
    assert offline.returncode == 0, offline.stderr
    assert "downloading" not in offline.stderr
    outputs = [json.loads(r.stdout)["outputs"][0] for r in (first, offline)]
    assert Path(outputs[1]["path"]).is_file() and outputs[1]["seed"] == outputs[0]["seed"]

    doctor = subprocess.run(
        [sys.executable, "-m", "assistant.gen_cli", "doctor"],
        env={**offline_env, "ANIME_HOME": str(anime_home)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    lines = doctor.stdout.splitlines()
    for key, repo in [("models.checkpoint", "sd15"), ("models.controlnet", "controlnet"),
                      ("models.ipadapter", "ip-adapter"),
                      ("quality.aesthetic_model", "aesthetic")]:  # fmt: skip
        assert any(line.startswith(f"[  ok] {key}: tiny/{repo} downloaded") for line in lines)
