"""`create_character_sheet`: a complete character from one sentence, drawn by the worker,
never overwriting."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from tools.errors import UserError
from tools.generation.character_sheet import (
    VIEWS,
    create_character_sheet,
    derive_name,
    description_tags,
)
from tools.generation.runtime import Runtime
from tools.settings import load_settings


def test_tags_and_names_come_from_the_description() -> None:
    assert description_tags("a new character with pink hair, blue eyes") == "pink hair blue eyes"
    assert derive_name("new pink hair girl", set()) == "pink-hair-girl"
    assert derive_name("new pink hair girl", {"pink-hair-girl"}) == "pink-hair-girl-2"
    with pytest.raises(UserError):
        description_tags("a new character")


def _no_drawing_here(*_args, **_kwargs):
    raise AssertionError("a character sheet image was drawn in the front-end process")


@pytest.mark.slow
def test_character_sheet_is_drawn_by_the_worker_into_a_complete_character_folder(
    anime_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tools.engine.rendering import Engine
    from tools.jobs.job import JobState
    from tools.jobs.journal import JobJournal

    # This process only plans: a pipeline here would be a second one beside the worker's.
    monkeypatch.setattr(Engine, "pipe", property(_no_drawing_here))
    monkeypatch.setattr(Engine, "render", _no_drawing_here)
    monkeypatch.setattr(Engine, "image_embeddings", _no_drawing_here)
    runtime = Runtime(load_settings())
    events: list[str] = []
    character = create_character_sheet(
        runtime, "new pink hair girl", seed=11, candidates=2, on_event=events.append
    )
    assert character.name == "pink-hair-girl"
    assert character.description == "new pink hair girl"
    assert character.prompt_tags == "pink hair girl"
    assert character.consistency_baseline is not None
    folder = character.folder
    with Image.open(folder / "reference.png") as reference:
        assert reference.size == (128, 192)
    sheet = folder / "sheet"
    for view in VIEWS:
        assert (sheet / f"{view.name}.png").is_file()
    with Image.open(sheet / "sheet.png") as strip:
        assert strip.size == (128 * len(VIEWS), 192)
    chosen = json.loads((sheet / "candidates.json").read_text())
    assert len(chosen["candidates"]) == 2
    assert (sheet / "candidates" / chosen["chosen"]).is_file()
    assert (folder / "variations").is_dir() and (folder / "poses").is_dir()
    listed = {c.name: c for c in runtime.characters.list()}
    assert listed["pink-hair-girl"].reference_path == folder / "reference.png"
    assert not [p for p in runtime.characters.root.iterdir() if ".sheet-" in p.name]
    assert [e.split(":")[0] for e in events[:2]] == ["candidate 1/2", "candidate 2/2"]
    assert events[2].startswith("reference: candidate ")
    assert events[3:] == [f"sheet: {view.name}" for view in VIEWS]
    jobs = sorted(JobJournal.for_state(runtime.paths.state).list(), key=lambda job: job.created)
    assert [(job.request["label"], len(job.images), job.state) for job in jobs] == [
        ("character sheet pink-hair-girl: candidates", 2, JobState.DONE),
        ("character sheet pink-hair-girl: views", len(VIEWS), JobState.DONE),
        ("calibrate pink-hair-girl", 1, JobState.DONE),
    ]


def test_an_existing_character_is_never_overwritten(
    anime_home: Path, reference_image: Path
) -> None:
    runtime = Runtime(load_settings())
    runtime.characters.add("momo", reference_image, description="the original")
    before = (runtime.characters.root / "momo" / "reference.png").read_bytes()
    with pytest.raises(UserError, match="already exists"):
        create_character_sheet(runtime, "new pink hair girl", name="Momo")
    assert runtime.characters.get("momo").description == "the original"
    assert (runtime.characters.root / "momo" / "reference.png").read_bytes() == before
    assert not (runtime.characters.root / "momo" / "sheet").exists()
    assert runtime.engine.loaded is False  # refused before drawing anything


def test_turnaround_views_use_neutral_standing_poses(tmp_path) -> None:
    from types import SimpleNamespace

    from posebank import PoseBank
    from tools.generation.character_sheet import _pose_for

    runtime = SimpleNamespace(poses=PoseBank(tmp_path / "state", tmp_path / "poses"))
    views = {tag: _pose_for(runtime, tag) for tag in ("front view", "side view", "back view")}
    assert all(pose.posture == "standing" for pose in views.values())
    assert "arms down" in views["front view"].tags
    assert "profile" in views["side view"].tags


def test_sheet_records_are_reported_in_spec_order_whatever_order_they_are_drawn_in() -> None:
    from tools.generation.character_sheet import _InOrder
    from tools.generation.specs import ImageSpec, OutputRecord, PoseRef, SheetImage

    pose = PoseRef(id="p", tags=[])
    specs = [
        ImageSpec(key=f"r:{i}", request_id="r", index=i, character="momo", pose=pose,
                  posture="standing", seed=i, sheet=SheetImage(tags="t", path=f"/s/{i}.png"))
        for i in range(3)
    ]  # fmt: skip
    told: list[int] = []
    report = _InOrder(specs, lambda number, _record: told.append(number))
    for i in (1, 2, 0):
        report(OutputRecord(path=f"/s/{i}.png", character="momo", pose=pose, seed=i))
        if i == 1:
            assert told == []  # image 0 is not drawn yet
    assert told == [0, 1, 2]
