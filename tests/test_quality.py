"""The quality gate: consistency (calibrated per character), face and aesthetic checks."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from PIL import Image

from evals.gate_separation import draw_character, generated_like, make_designs
from tools.characters.library import CharacterLibrary
from tools.quality.aesthetic import AestheticScorer, aesthetic_status
from tools.quality.consistency import ClipEncoder, character_crop
from tools.quality.gate import QualityGate, face_expected
from tools.settings import load_settings


def _settings(home: Path, **quality: object):
    return load_settings(overrides={"quality": quality}, env={}, home=home)


@pytest.fixture
def encoder(tiny_models: Path) -> ClipEncoder:
    return ClipEncoder(str(tiny_models / "ip-adapter" / "models" / "image_encoder"), tiny_models)


@pytest.fixture
def library_with_two(anime_home: Path) -> CharacterLibrary:
    library = CharacterLibrary(load_settings().paths)
    first, second = make_designs(2)
    library.add("aiko", draw_character(first))
    library.add("beni", draw_character(second))
    return library


def _gate(home: Path, encoder: ClipEncoder, **quality: object) -> QualityGate:
    settings = _settings(home, **quality)
    return QualityGate(settings, None, encoder=encoder, library=CharacterLibrary(settings.paths))


def test_face_expected_for_front_views_and_upper_body_not_back_views() -> None:
    assert face_expected(["standing", "front view", "waving"])
    assert face_expected(["sitting", "upper_body"])
    assert not face_expected(["standing", "looking back", "back view", "front view"])
    assert not face_expected(["walking", "side view"])


def test_character_crop_finds_the_figure_on_a_plain_background() -> None:
    image = Image.new("RGB", (100, 200), "white")
    image.paste(Image.new("RGB", (20, 40), "red"), (30, 100))
    assert character_crop(image).size == (20 + 2 * 4, 40 + 2 * 8)  # plus a 4% margin
    assert character_crop(Image.new("RGB", (100, 200), "white")).size == (100, 200)


def test_threshold_comes_from_config_and_baseline_is_stored(
    anime_home: Path, encoder: ClipEncoder, library_with_two: CharacterLibrary
) -> None:
    aiko = library_with_two.get("aiko")
    assert aiko.consistency_baseline is None
    other = generated_like(make_designs(2)[1], random.Random(3))
    probe = _gate(anime_home, encoder, min_consistency=0.0, aesthetic_model=None)
    score = probe.evaluate(other, aiko, []).scores.consistency
    assert score is not None and 0.0 < score < 1.0

    baseline = library_with_two.get("aiko").consistency_baseline
    assert baseline is not None and 0.0 < baseline <= 1.0
    stored = json.loads(library_with_two.index_path.read_text())["characters"]
    assert [c["consistency_baseline"] is not None for c in stored] == [True, False]

    aiko = library_with_two.get("aiko")
    strict = _gate(anime_home, encoder, min_consistency=score + 0.005, aesthetic_model=None)
    verdict = strict.evaluate(other, aiko, [])
    assert not verdict.accepted and "consistency" in verdict.reasons[0]
    lenient = _gate(anime_home, encoder, min_consistency=score - 0.005, aesthetic_model=None)
    assert lenient.evaluate(other, aiko, []).accepted


def test_face_required_only_where_the_pose_shows_it(
    anime_home: Path, encoder: ClipEncoder, library_with_two: CharacterLibrary
) -> None:
    gate = _gate(anime_home, encoder, min_consistency=0.0, require_face=True, aesthetic_model=None)
    faceless = Image.new("RGB", (128, 192), (230, 230, 240))
    aiko = library_with_two.get("aiko")
    front = gate.evaluate(faceless, aiko, ["standing", "front view"])
    assert not front.accepted and front.scores.face == 0.0
    assert any("face" in reason for reason in front.reasons)
    assert gate.evaluate(faceless, aiko, ["standing", "back view"]).accepted


def test_aesthetic_scores_with_the_tiny_classifier_and_rejects_below_minimum(
    anime_home: Path, encoder: ClipEncoder, library_with_two: CharacterLibrary
) -> None:
    image = draw_character(make_designs(1)[0])
    gate = _gate(anime_home, encoder, min_consistency=0.0, min_aesthetic=0.999)
    verdict = gate.evaluate(image, library_with_two.get("aiko"), [])
    assert verdict.scores.aesthetic is not None and 0.0 < verdict.scores.aesthetic < 0.999
    assert not verdict.accepted and verdict.reasons[0].startswith("aesthetic")
    assert aesthetic_status(gate.settings)[0] == "ok"


def test_missing_aesthetic_model_is_skipped_and_reported(anime_home: Path) -> None:
    settings = _settings(anime_home, aesthetic_model=str(anime_home / "no-such-model"))
    scorer = AestheticScorer(settings)
    assert scorer.score(Image.new("RGB", (64, 64))) is None
    assert "not found" in (scorer.unavailable or "")
    assert aesthetic_status(settings)[0] == "warn"
    assert aesthetic_status(_settings(anime_home, aesthetic_model=None))[0] == "off"


@pytest.mark.slow
def test_rejects_are_rerolled_up_to_max_attempts_and_kept_with_scores(
    anime_home: Path, reference_image: Path
) -> None:
    from tools.generation.runtime import Runtime
    from tools.generation.specs import GenerationRequest
    from tools.store.output_store import read_png_metadata

    # No probability reaches 1.0, so every attempt fails the aesthetic minimum.
    runtime = Runtime(
        load_settings(overrides={"quality": {"min_aesthetic": 1.0, "max_attempts": 3}})
    )
    runtime.characters.add("sakura", reference_image)
    spec = runtime.planner.plan(GenerationRequest(character="sakura", seed=5))[0]
    record = runtime.producer.produce(spec)

    assert not record.accepted and record.attempts == 3
    assert len(record.rejected) == 2 and record.path not in record.rejected
    rejected_dir = anime_home / "anime-output" / "rejected"
    files = sorted(rejected_dir.rglob("*.png"))
    assert sorted(map(str, files)) == sorted([*record.rejected, record.path])
    seeds = set()
    for path in files:
        meta = json.loads(read_png_metadata(path)["anime-chat"])
        assert meta["accepted"] is False
        assert meta["scores"]["aesthetic"] is not None and meta["scores"]["consistency"] is not None
        seeds.add(meta["seed"])
    assert len(seeds) == 3  # each attempt had its own seed
    indexed = runtime.index.by_key(spec.key)
    assert indexed is not None and indexed["record"]["scores"] == record.scores.model_dump()
    assert not list((anime_home / "anime-output").glob("20*/*.png"))  # nothing passed as kept


def test_gate_separation_eval_measures_rates(tmp_path: Path, encoder: ClipEncoder) -> None:
    from evals.gate_separation import measure, roc_auc

    assert roc_auc([0.9, 0.8], [0.1, 0.8]) == 0.875
    result = measure(
        encoder, tmp_path / "home", 0.0, characters=4, samples=2, seed=0, palette_threshold=0.0
    )
    assert result["images"]["same"] == result["images"]["drift"] == 8
    assert result["images"]["twin"] >= 2  # a palette twin is always among the other characters
    assert result["same_accept_rate"] == 1.0 and result["other_reject_rate"] == 0.0
    for check in ("clip", "palette", "combined"):
        assert result[check]["same_accept_rate"] == 1.0
    assert 0.0 <= result["clip"]["auc"] <= 1.0 and result["palette"]["auc"] > 0.5
