"""Per-character LoRAs and trigger words through `anime-gen characters add/edit`."""

from __future__ import annotations

import json
import shutil

from typer.testing import CliRunner

from assistant.gen_cli import app
from evals.tiny_models import LORA_NAME

runner = CliRunner()


def test_add_and_edit_store_loras_and_trigger(anime_home, tiny_models, reference_image):
    (anime_home / "models" / "lora").mkdir(parents=True)
    shutil.copyfile(
        tiny_models / "lora" / f"{LORA_NAME}.safetensors",
        anime_home / "models" / "lora" / f"{LORA_NAME}.safetensors",
    )
    added = runner.invoke(
        app,
        [
            "characters",
            "add",
            "sakura",
            "--image",
            str(reference_image),
            "--lora",
            f"{LORA_NAME}:0.7",
        ],
    )
    assert added.exit_code == 0, added.output
    edited = runner.invoke(app, ["characters", "edit", "sakura", "--trigger", "skr girl"])
    assert edited.exit_code == 0 and "tiny:0.7" in edited.output
    index = json.loads((anime_home / ".anime-characters" / "characters.json").read_text())
    entry = index["characters"][0]
    assert entry["loras"] == [{"name": LORA_NAME, "weight": 0.7}] and entry["trigger"] == "skr girl"


def test_a_missing_character_lora_is_one_line_naming_the_folder(anime_home, reference_image):
    result = runner.invoke(
        app, ["characters", "add", "momo", "--image", str(reference_image), "--lora", "nowhere"]
    )
    assert result.exit_code == 1
    assert "LoRA 'nowhere' not found in" in result.output and "Traceback" not in result.output
    assert not (anime_home / ".anime-characters" / "momo").exists()
