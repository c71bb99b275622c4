"""The palette check: a weights-free identity signal from the figure's colours."""

from __future__ import annotations

import json
import random
from dataclasses import replace
from pathlib import Path

from PIL import Image, ImageOps

from evals.gate_separation import Design, draw_character, generated_like, make_designs
from tools.characters.library import CharacterLibrary
from tools.quality import palette
from tools.quality.calibration import calibrated, compute_baseline
from tools.quality.consistency import ClipEncoder
from tools.quality.gate import QualityGate
from tools.quality.signals import PALETTE
from tools.settings import load_settings

PINK, BLUE, GREEN = (236, 120, 170), (90, 140, 230), (110, 200, 150)


def _score(image: Image.Image, reference: Image.Image) -> float:
    raw = palette.similarity_to_references([image], [palette.palette_histogram(reference)])[0]
    return calibrated(raw, compute_baseline(PALETTE, [reference]))


def test_same_character_in_other_poses_and_framings_scores_high() -> None:
    design = replace(make_designs(1)[0], hair=PINK)
    reference = draw_character(design)
    rng = random.Random(7)
    poses = [generated_like(design, rng) for _ in range(6)]
    close_up = reference.crop((20, 0, 172, 150)).resize(reference.size)
    small_mirrored = ImageOps.mirror(ImageOps.pad(reference, (400, 400), color=(200, 220, 240)))
    scores = [_score(image, reference) for image in [*poses, close_up, small_mirrored]]
    assert min(scores) > 0.75, scores


def test_hair_colour_swap_scores_below_every_redrawing() -> None:
    design = Design(PINK, "twintails", GREEN, (250, 222, 200), (60, 150, 70), True, "none")
    reference = draw_character(design)
    rng = random.Random(7)
    same = [_score(generated_like(design, rng), reference) for _ in range(4)]
    swapped = [_score(generated_like(replace(design, hair=BLUE), rng), reference) for _ in range(4)]
    assert max(swapped) < min(same) - 0.05 and max(swapped) < 0.85, (same, swapped)


def test_background_scene_colours_are_left_out_of_the_palette() -> None:
    figure = Image.new("RGB", (120, 160), (250, 250, 250))
    figure.paste(Image.new("RGB", (40, 80), PINK), (40, 40))
    scene = Image.new("RGB", (120, 160), (120, 180, 240))  # sky
    scene.paste(Image.new("RGB", (120, 50), (90, 160, 70)), (0, 110))  # grass at the border
    scene.paste(Image.new("RGB", (40, 80), PINK), (40, 20))
    reference = palette.palette_histogram(figure)
    assert palette.histogram_similarity(palette.palette_histogram(scene), reference) > 0.95


def _gate(home: Path, encoder: ClipEncoder, **quality: object) -> QualityGate:
    settings = load_settings(overrides={"quality": quality}, env={}, home=home)
    return QualityGate(settings, None, encoder=encoder, library=CharacterLibrary(settings.paths))


def test_threshold_comes_from_config_and_baseline_is_stored(
    anime_home: Path, tiny_models: Path
) -> None:
    encoder = ClipEncoder(str(tiny_models / "ip-adapter" / "models" / "image_encoder"), tiny_models)
    design = replace(make_designs(1)[0], hair=PINK)
    library = CharacterLibrary(load_settings().paths)
    library.add("aiko", draw_character(design))
    assert library.get("aiko").palette_baseline is None
    drifted = generated_like(replace(design, hair=BLUE), random.Random(3))
    common = {"min_consistency": 0.0, "aesthetic_model": None, "require_face": False}

    probe = _gate(anime_home, encoder, min_palette=0.0, **common)
    verdict = probe.evaluate(drifted, library.get("aiko"), [])
    score = verdict.scores.palette
    assert verdict.accepted and score is not None and 0.0 < score < 1.0
    stored = json.loads(library.index_path.read_text())["characters"][0]
    assert stored["palette_baseline"] == library.get("aiko").palette_baseline
    assert 0.0 < stored["palette_baseline"] <= 1.0

    aiko = library.get("aiko")
    strict = _gate(anime_home, encoder, min_palette=score + 0.005, **common)
    rejected = strict.evaluate(drifted, aiko, [])
    assert not rejected.accepted and rejected.reasons[0].startswith("palette")
    assert rejected.scores.model_dump().keys() >= {"consistency", "face", "aesthetic", "palette"}
    lenient = _gate(anime_home, encoder, min_palette=score - 0.005, **common)
    assert lenient.evaluate(drifted, aiko, []).accepted


def test_warming_a_character_stores_both_baselines(anime_home: Path, tiny_models: Path) -> None:
    encoder = ClipEncoder(str(tiny_models / "ip-adapter" / "models" / "image_encoder"), tiny_models)
    library = CharacterLibrary(load_settings().paths)
    library.add("beni", draw_character(make_designs(2)[1]))
    _gate(anime_home, encoder).baseline(library.get("beni"))
    beni = library.get("beni")
    assert beni.consistency_baseline is not None and beni.palette_baseline is not None


def test_calibrated_scores_stay_in_0_1_and_1_0_means_at_least_the_baseline() -> None:
    from tools.quality.calibration import calibrated

    assert calibrated(0.97, 0.93) == 1.0  # closer than the character's own re-drawings
    assert calibrated(0.93, 0.93) == 1.0
    assert 0.0 <= calibrated(0.92, 0.93) < 1.0  # so min 1.0 rejects it
    assert calibrated(-0.2, 0.93) == 0.0
    assert calibrated(0.5, 0.0) == 1.0  # baseline floored at MIN_BASELINE: never above 1
