"""The progress bar counts the steps each image really runs."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
from rich.console import Console
from rich.progress import Progress

from assistant import progress
from tools.settings import load_settings


@pytest.mark.parametrize(
    ("models", "steps_per_image"), [({}, 25), ({"fast_lora": "latent-consistency/lcm"}, 6)]
)
def test_bar_total_is_images_times_the_steps_of_the_mode_in_use(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, models: dict, steps_per_image: int
) -> None:
    settings = load_settings(overrides={"models": models}, home=tmp_path, env={})
    job = SimpleNamespace(
        images=[0, 1, 2], done_count=1, state="running", progress={"step": 2, "phase": None}
    )
    shown: list[dict] = []
    real_update = Progress.update

    def record(self: Progress, task: object, **fields: object) -> None:
        shown.append(fields)
        real_update(self, task, **fields)

    monkeypatch.setattr(Progress, "update", record)
    monkeypatch.setattr(
        "tools.jobs.client.wait_for_job", lambda _settings, _job_id, update: update(job) or job
    )
    progress._wait(SimpleNamespace(settings=settings), "j1", Console(quiet=True), show=False)
    assert shown[-1]["total"] == 3 * steps_per_image
    assert shown[-1]["completed"] == steps_per_image + 2
