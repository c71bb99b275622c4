"""`--variations NAME N` and `--all-characters`: planned through the planner, gated, linked."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tools.errors import UserError
from tools.generation.library_runs import link_variations, plan_all_characters, plan_variations
from tools.generation.runtime import Runtime
from tools.settings import load_settings


@pytest.mark.slow
def test_five_variations_have_distinct_poses_and_are_linked(
    anime_home: Path, reference_image: Path
) -> None:
    runtime = Runtime(load_settings())
    runtime.characters.add("sakura", reference_image)
    specs = plan_variations(runtime, "sakura", 5, seed=40)
    assert len({spec.pose.id for spec in specs}) == 5
    assert [spec.seed for spec in specs] == [40, 41, 42, 43, 44]
    records = [runtime.producer.produce(spec) for spec in specs]
    assert all(record.accepted and record.scores.consistency is not None for record in records)

    rejected = records[0].model_copy(update={"accepted": False})
    links = link_variations(runtime, [*records, rejected])
    folder = runtime.characters.get("sakura").folder / "variations"
    assert sorted(links) == sorted(folder.iterdir()) and len(links) == 5
    assert {os.path.realpath(link) for link in links} == {
        os.path.realpath(record.path) for record in records
    }
    assert link_variations(runtime, records) == links  # linking again adds nothing


def test_all_characters_plans_every_character_with_consecutive_seeds(
    anime_home: Path, reference_image: Path
) -> None:
    runtime = Runtime(load_settings())
    with pytest.raises(UserError, match="empty"):
        plan_all_characters(runtime)
    for name in ("yuki", "aoi", "momo"):
        runtime.characters.add(name, reference_image)
    specs = plan_all_characters(runtime, posture="standing", count=2, seed=7)
    assert [spec.character for spec in specs] == ["aoi", "aoi", "momo", "momo", "yuki", "yuki"]
    assert [spec.seed for spec in specs] == list(range(7, 13))
    assert all(spec.posture == "standing" for spec in specs)
    assert len({spec.key for spec in specs}) == 6
