"""`llm.unload_before_generate`: auto unloads Ollama's model only on a GPU under 16 GB."""

from __future__ import annotations

import pytest

from tools.engine.gpu_memory import should_unload_llm, smallest_gpu_memory_gb
from tools.settings import load_settings


@pytest.mark.parametrize(
    ("setting", "gpu_gb", "unload"),
    [
        ("auto", 8.0, True),
        ("auto", 15.9, True),
        ("auto", 24.0, False),
        ("auto", None, False),  # no GPU: the chat model sits in RAM, the render does not care
        (True, 80.0, True),
        (False, 8.0, False),
    ],
)
def test_unload_decision(setting, gpu_gb, unload):
    assert should_unload_llm(setting, gpu_gb) is unload


def test_auto_is_the_default_and_booleans_still_parse(tmp_path):
    assert load_settings(env={}, home=tmp_path).llm.unload_before_generate == "auto"
    for text, value in (("true", True), ("false", False), ("auto", "auto")):
        env = {"ANIME_LLM_UNLOAD_BEFORE_GENERATE": text}
        assert load_settings(env=env, home=tmp_path).llm.unload_before_generate == value


def test_smallest_gpu_is_read_from_nvidia_smi(tmp_path, monkeypatch):
    fake = tmp_path / "nvidia-smi"
    fake.write_text("#!/bin/sh\necho 24576\necho 12288\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert smallest_gpu_memory_gb() == 12.0
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert smallest_gpu_memory_gb() is None
