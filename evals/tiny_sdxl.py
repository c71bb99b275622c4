"""Tiny random-weight SDXL models (checkpoint, ControlNet, IP-Adapter) for tests on a CPU.

`build_tiny_sdxl(DIR)` writes the models (once) and `DIR/anime-config.yaml` pointing at them,
with the same output settings and lenient quality thresholds as `evals.tiny_models`.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from evals.bench_models import build_bench_models, model_settings
from evals.tiny_models import CONFIG_NAME, RESOLUTION


def build_tiny_sdxl(directory: Path) -> Path:
    """Build the tiny SDXL family into `directory` and return its config file's path."""
    directory = build_bench_models(Path(directory).resolve(), family="sdxl", size="tiny")
    width, height = RESOLUTION
    config = {
        "models": model_settings(directory, "sdxl"),
        "output": {"resolution": f"{width}x{height}", "steps": 4},
        "quality": {"min_consistency": 0.0, "require_face": False},
    }
    path = directory / CONFIG_NAME
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path
