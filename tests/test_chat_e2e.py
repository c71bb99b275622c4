"""End to end with the tiny models: a request in plain words makes images and names their paths."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from assistant.chat_cli import app
from tests.test_ollama_planner import closed_port_host


@pytest.mark.slow
def test_draw_sakura_standing_in_the_rain_makes_two_images(
    anime_home, reference_image, monkeypatch
):
    from tools.characters.library import CharacterLibrary
    from tools.settings import load_settings

    monkeypatch.setenv("OLLAMA_HOST", closed_port_host())
    CharacterLibrary(load_settings().paths).add("sakura", reference_image)
    result = CliRunner().invoke(app, ["-c", "draw sakura standing in the rain, 2 variations"])
    assert result.exit_code == 0, result.output
    paths = [Path(p) for p in re.findall(r"^\s+(\S+\.png)\s", result.stdout, re.MULTILINE)]
    assert len(paths) == 2 and all(p.is_file() for p in paths)
    assert all(p.is_relative_to(anime_home / "anime-output") for p in paths)
    assert all(p.name.startswith("sakura_standing_") for p in paths)
    assert "contact sheet:" in result.stdout
