"""How well the quality gate's consistency check separates a character from other characters.

`python -m evals.gate_separation [--encoder PATH_OR_HUB_ID | --from-config] [--threshold T]`

"Characters" are synthetic drawings with distinct designs (hair colour and style, eyes, outfit,
accessory); each one's reference is drawn in a neutral pose. "Generated images" are the same
designs redrawn in other poses, places and sizes, on other backgrounds, mirrored and
colour-jittered: same-character samples come from the character's own design, other-character
samples from the other designs. Every sample goes through the real `QualityGate` (characters
in a temporary library, baselines calibrated and stored as in production), face and aesthetic
checks off. Printed: the accept rate for same-character images, the reject rate for
other-character images at the threshold, and the ROC AUC of the scores (threshold-free).

By default the encoder is the tiny random-weight CLIP image encoder of `evals.tiny_models`
(no download): its figures say the pipeline runs end to end, not that real images separate.
Point `--encoder` at the IP-Adapter's real image encoder (e.g. a local
`IP-Adapter/models/image_encoder`), or use `--from-config` to take the encoder the gate would use
under `$ANIME_HOME/.anime-config.yaml`, for figures that mean something.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw, ImageEnhance, ImageOps

SIZE = (192, 288)
PALETTE_HAIR = [
    (236, 120, 170),
    (40, 40, 50),
    (245, 220, 120),
    (90, 140, 230),
    (200, 60, 50),
    (240, 240, 245),
    (120, 70, 40),
    (110, 200, 150),
    (150, 90, 200),
    (250, 150, 60),
]
PALETTE_OUTFIT = [
    (30, 60, 160),
    (200, 30, 40),
    (250, 250, 250),
    (20, 20, 20),
    (60, 150, 70),
    (240, 190, 60),
    (140, 80, 170),
    (250, 140, 180),
    (100, 100, 110),
    (0, 160, 180),
]
SKIN = [(250, 222, 200), (240, 200, 170), (200, 150, 110)]


@dataclass(frozen=True)
class Design:
    """What makes a synthetic character recognisable."""

    hair: tuple[int, int, int]
    hair_style: str  # long, short, twintails
    eyes: tuple[int, int, int]
    skin: tuple[int, int, int]
    outfit: tuple[int, int, int]
    skirt: bool
    accessory: str  # none, ribbon, hat


def make_designs(count: int, seed: int = 0) -> list[Design]:
    rng = random.Random(seed)
    hairs = rng.sample(PALETTE_HAIR, min(count, len(PALETTE_HAIR)))
    outfits = rng.sample(PALETTE_OUTFIT, min(count, len(PALETTE_OUTFIT)))
    return [
        Design(
            hair=hairs[i % len(hairs)],
            hair_style=("long", "short", "twintails")[i % 3],
            eyes=rng.choice(PALETTE_OUTFIT),
            skin=SKIN[i % len(SKIN)],
            outfit=outfits[(i * 3) % len(outfits)],
            skirt=i % 2 == 0,
            accessory=("none", "ribbon", "hat")[(i // 3) % 3],
        )
        for i in range(count)
    ]


def _limb(
    draw: ImageDraw.ImageDraw,
    start: tuple[float, float],
    angle: float,
    length: float,
    colour: tuple[int, int, int],
    width: int,
) -> None:
    end = (start[0] + length * math.sin(angle), start[1] + length * math.cos(angle))
    draw.line([start, end], fill=colour, width=width)


def draw_character(
    design: Design,
    rng: random.Random | None = None,
    background: tuple[int, int, int] = (245, 240, 235),
    size: tuple[int, int] = SIZE,
) -> Image.Image:
    """The design in a pose: neutral without `rng`, else random limbs, place and scale."""
    width, height = size
    image = Image.new("RGB", size, background)
    draw = ImageDraw.Draw(image)
    scale = rng.uniform(0.75, 1.0) if rng else 1.0
    cx = width / 2 + (rng.uniform(-0.15, 0.15) * width if rng else 0)
    top = height * (rng.uniform(0.02, 0.12) if rng else 0.06)
    unit = height * 0.9 * scale / 8  # a figure about eight heads... of a chibi-ish four
    head_r = unit * 0.9
    head_c = (cx, top + head_r)
    arms = [rng.uniform(-2.4, -0.2), rng.uniform(0.2, 2.4)] if rng else [-0.35, 0.35]
    legs = [rng.uniform(-0.6, 0.0), rng.uniform(0.0, 0.6)] if rng else [-0.12, 0.12]
    hair_back = design.hair
    if design.hair_style == "long":
        draw.rectangle(
            [cx - head_r * 1.1, head_c[1], cx + head_r * 1.1, head_c[1] + unit * 3], fill=hair_back
        )
    if design.hair_style == "twintails":
        for side in (-1, 1):
            x = cx + side * head_r * 1.3
            draw.ellipse(
                [x - unit * 0.45, head_c[1], x + unit * 0.45, head_c[1] + unit * 2.6],
                fill=hair_back,
            )
    body_top = head_c[1] + head_r
    body_bottom = body_top + unit * 3
    shoulders = (cx, body_top + unit * 0.3)
    for side, angle in zip((-1, 1), arms, strict=True):
        _limb(
            draw,
            (shoulders[0] + side * unit * 0.6, shoulders[1]),
            angle,
            unit * 2.4,
            design.skin,
            max(3, int(unit * 0.3)),
        )
    hips = body_bottom - unit * 0.2
    for side, angle in zip((-1, 1), legs, strict=True):
        _limb(
            draw,
            (cx + side * unit * 0.35, hips),
            angle,
            unit * 3.2,
            design.skin,
            max(3, int(unit * 0.35)),
        )
    draw.rectangle([cx - unit * 0.7, body_top, cx + unit * 0.7, body_bottom], fill=design.outfit)
    if design.skirt:
        draw.polygon(
            [
                (cx - unit * 0.7, body_bottom - unit * 0.8),
                (cx + unit * 0.7, body_bottom - unit * 0.8),
                (cx + unit * 1.3, body_bottom + unit * 0.6),
                (cx - unit * 1.3, body_bottom + unit * 0.6),
            ],
            fill=design.outfit,
        )
    draw.ellipse(
        [head_c[0] - head_r, head_c[1] - head_r, head_c[0] + head_r, head_c[1] + head_r],
        fill=design.skin,
        outline=(60, 40, 30),
    )
    draw.chord(
        [
            head_c[0] - head_r * 1.08,
            head_c[1] - head_r * 1.1,
            head_c[0] + head_r * 1.08,
            head_c[1] + head_r * 0.5,
        ],
        180,
        360,
        fill=design.hair,
    )
    if design.hair_style == "short":
        draw.rectangle(
            [
                cx - head_r * 1.05,
                head_c[1] - head_r * 0.2,
                cx - head_r * 0.7,
                head_c[1] + head_r * 0.6,
            ],
            fill=design.hair,
        )
        draw.rectangle(
            [
                cx + head_r * 0.7,
                head_c[1] - head_r * 0.2,
                cx + head_r * 1.05,
                head_c[1] + head_r * 0.6,
            ],
            fill=design.hair,
        )
    for side in (-1, 1):
        ex = head_c[0] + side * head_r * 0.4
        ey = head_c[1] + head_r * 0.15
        draw.ellipse(
            [ex - head_r * 0.18, ey - head_r * 0.25, ex + head_r * 0.18, ey + head_r * 0.25],
            fill=design.eyes,
            outline=(20, 20, 20),
        )
    if design.accessory == "ribbon":
        rx, ry = head_c[0] + head_r * 0.6, head_c[1] - head_r * 0.9
        draw.polygon(
            [(rx, ry), (rx - unit * 0.5, ry - unit * 0.3), (rx - unit * 0.5, ry + unit * 0.3)],
            fill=(230, 30, 60),
        )
        draw.polygon(
            [(rx, ry), (rx + unit * 0.5, ry - unit * 0.3), (rx + unit * 0.5, ry + unit * 0.3)],
            fill=(230, 30, 60),
        )
    if design.accessory == "hat":
        draw.rectangle(
            [
                head_c[0] - head_r * 1.3,
                head_c[1] - head_r * 1.0,
                head_c[0] + head_r * 1.3,
                head_c[1] - head_r * 0.8,
            ],
            fill=(50, 40, 30),
        )
        draw.rectangle(
            [
                head_c[0] - head_r * 0.7,
                head_c[1] - head_r * 1.8,
                head_c[0] + head_r * 0.7,
                head_c[1] - head_r * 0.9,
            ],
            fill=(50, 40, 30),
        )
    return image


def generated_like(design: Design, rng: random.Random) -> Image.Image:
    """A stand-in for a generated image: new pose, place, background, mirror and colour shift."""
    background = tuple(rng.randrange(170, 256) for _ in range(3))
    image = draw_character(design, rng, background)  # type: ignore[arg-type]
    if rng.random() < 0.5:
        image = ImageOps.mirror(image)
    image = ImageEnhance.Brightness(image).enhance(rng.uniform(0.9, 1.1))
    return ImageEnhance.Color(image).enhance(rng.uniform(0.85, 1.15))


# -- the measurement ---------------------------------------------------------------------------


def roc_auc(positives: list[float], negatives: list[float]) -> float:
    """P(a same-character score > an other-character score), ties counted half."""
    wins = sum((p > n) + 0.5 * (p == n) for p in positives for n in negatives)
    return wins / (len(positives) * len(negatives))


def best_threshold(positives: list[float], negatives: list[float]) -> tuple[float, float]:
    """The threshold with the best balanced accuracy over the observed scores, and that accuracy."""
    best = (0.0, 0.0)
    for threshold in sorted(set(positives) | set(negatives)):
        accept = sum(p >= threshold for p in positives) / len(positives)
        reject = sum(n < threshold for n in negatives) / len(negatives)
        best = max(best, ((accept + reject) / 2, threshold))
    return best[1], best[0]


def measure(
    encoder, home: Path, threshold: float, characters: int, samples: int, seed: int
) -> dict:
    from tools.characters import CharacterLibrary
    from tools.quality import QualityGate
    from tools.settings import load_settings

    home.mkdir(parents=True, exist_ok=True)
    config = {
        "quality": {"min_consistency": threshold, "require_face": False, "aesthetic_model": None}
    }
    (home / ".anime-config.yaml").write_text(json.dumps(config), encoding="utf-8")
    settings = load_settings(home=home, env={})
    library = CharacterLibrary(settings.paths)
    gate = QualityGate(settings, None, encoder=encoder, library=library)
    designs = make_designs(characters, seed)
    names = [f"char{i}" for i in range(characters)]
    for name, design in zip(names, designs, strict=True):
        library.add(name, draw_character(design))
    rng = random.Random(seed + 1)
    same, other, raw_same, raw_other = [], [], [], []
    for index, name in enumerate(names):
        character = library.get(name)
        baseline = gate.baseline(character)
        character = character.model_copy(update={"consistency_baseline": baseline})
        for _ in range(samples):
            for own, bucket, raw_bucket in ((True, same, raw_same), (False, other, raw_other)):
                pick = index if own else rng.choice([j for j in range(characters) if j != index])
                image = generated_like(designs[pick], rng)
                verdict = gate.evaluate(image, character, [])
                bucket.append(verdict)
                raw_bucket.append(gate.raw_consistency(image, character))
    baselines = [library.get(name).consistency_baseline for name in names]
    same_scores = [v.scores.consistency for v in same]
    other_scores = [v.scores.consistency for v in other]
    suggested, balanced = best_threshold(same_scores, other_scores)
    return {
        "encoder": encoder.name,
        "threshold": threshold,
        "characters": characters,
        "images_per_kind": len(same),
        "same_accept_rate": round(sum(v.accepted for v in same) / len(same), 3),
        "other_reject_rate": round(sum(not v.accepted for v in other) / len(other), 3),
        "auc_calibrated": round(roc_auc(same_scores, other_scores), 3),
        "auc_raw": round(roc_auc(raw_same, raw_other), 3),
        "mean_same": round(sum(same_scores) / len(same_scores), 4),
        "mean_other": round(sum(other_scores) / len(other_scores), 4),
        "best_threshold": round(suggested, 4),
        "best_balanced_accuracy": round(balanced, 3),
        "baselines": {"min": min(baselines), "max": max(baselines)},
    }


def _encoder_from_config():
    from tools.consistency import ClipEncoder
    from tools.model_sources import local_path, resolve_source
    from tools.settings import load_settings

    settings = load_settings()
    models_dir = settings.paths.models
    if settings.quality.consistency_model:
        return ClipEncoder(settings.quality.consistency_model, models_dir), settings
    models = settings.models
    source = resolve_source(models.ipadapter, models_dir, "ipadapter")
    folder = local_path(
        source, [f"{models.ipadapter_subfolder}/{models.image_encoder_folder}/*"], "ipadapter"
    )
    encoder_dir = folder / models.ipadapter_subfolder / models.image_encoder_folder
    return ClipEncoder(str(encoder_dir), models_dir), settings


def main(argv: list[str] | None = None) -> int:
    from tools.consistency import ClipEncoder

    parser = argparse.ArgumentParser(
        prog="python -m evals.gate_separation", description=__doc__.split("\n\n")[0]
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--encoder", help="CLIP vision model: local folder or hub id")
    source.add_argument(
        "--from-config",
        action="store_true",
        help="the encoder the gate uses under $ANIME_HOME's config",
    )
    parser.add_argument("--threshold", type=float, help="min_consistency (default: config's)")
    parser.add_argument("--characters", type=int, default=8)
    parser.add_argument("--samples", type=int, default=6, help="images per kind per character")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    from tools.settings import QualitySettings

    threshold = args.threshold
    with tempfile.TemporaryDirectory(prefix="gate-separation-") as scratch:
        if args.from_config:
            encoder, settings = _encoder_from_config()
            threshold = threshold if threshold is not None else settings.quality.min_consistency
        elif args.encoder:
            encoder = ClipEncoder(args.encoder, Path.cwd() / "models")
        else:
            from evals.tiny_models import build_tiny_models

            tiny = Path(scratch) / "tiny"
            build_tiny_models(tiny)
            encoder = ClipEncoder(str(tiny / "ip-adapter" / "models" / "image_encoder"), tiny)
        if threshold is None:
            threshold = QualitySettings().min_consistency
        result = measure(
            encoder, Path(scratch) / "home", threshold, args.characters, args.samples, args.seed
        )
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"encoder: {result['encoder']}")
        print(f"threshold (quality.min_consistency): {result['threshold']:.2f}")
        print(
            f"same-character images accepted:  {result['same_accept_rate']:.1%} "
            f"of {result['images_per_kind']}"
        )
        print(
            f"other-character images rejected: {result['other_reject_rate']:.1%} "
            f"of {result['images_per_kind']}"
        )
        print(
            f"ROC AUC calibrated {result['auc_calibrated']:.3f}, raw {result['auc_raw']:.3f}; "
            f"mean score same {result['mean_same']:.3f}, other {result['mean_other']:.3f}"
        )
        print(
            f"best threshold for these images: {result['best_threshold']:.3f} "
            f"(balanced accuracy {result['best_balanced_accuracy']:.1%})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
