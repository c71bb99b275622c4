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
from dataclasses import dataclass, replace
from pathlib import Path

from PIL import Image, ImageChops, ImageDraw, ImageEnhance, ImageOps

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
            outfit=outfits[i % len(outfits)],
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


def palette_twin(design: Design) -> Design:
    """Another character in the same colours: other hair style, skirt and accessory."""
    styles = ("long", "short", "twintails")
    accessories = ("none", "ribbon", "hat")
    return replace(
        design,
        hair_style=styles[(styles.index(design.hair_style) + 1) % 3],
        skirt=not design.skirt,
        accessory=accessories[(accessories.index(design.accessory) + 1) % 3],
    )


def make_cast(count: int, twins: int, seed: int = 0) -> list[Design]:
    """`count - twins` designs in distinct colours, then `twins` palette twins of the first ones."""
    distinct = make_designs(count - twins, seed)
    return distinct + [palette_twin(design) for design in distinct[:twins]]


def _same_colours(first: Design, second: Design) -> bool:
    return (first.hair, first.eyes, first.skin, first.outfit) == (
        second.hair,
        second.eyes,
        second.skin,
        second.outfit,
    )


def hair_swapped(design: Design, rng: random.Random) -> Design:
    """The design with another hair colour: the IP-Adapter drift the palette should catch."""
    return replace(design, hair=rng.choice([c for c in PALETTE_HAIR if c != design.hair]))


def _scene(size: tuple[int, int], rng: random.Random) -> Image.Image:
    """A place stand-in: sky, ground at a random horizon, a few coloured blocks (trees, walls)."""
    width, height = size
    scene = Image.new("RGB", size, tuple(rng.randrange(120, 256) for _ in range(3)))
    draw = ImageDraw.Draw(scene)
    horizon = rng.uniform(0.55, 0.85) * height
    draw.rectangle(
        [0, horizon, width, height], fill=tuple(rng.randrange(60, 200) for _ in range(3))
    )
    for _ in range(rng.randrange(0, 3)):
        x, w = rng.uniform(0, width), rng.uniform(0.1, 0.3) * width
        top = rng.uniform(0.2, 0.5) * height
        colour = tuple(rng.randrange(40, 220) for _ in range(3))
        draw.rectangle([x, top, x + w, horizon], fill=colour)
    return scene


def _shade(image: Image.Image, rng: random.Random) -> Image.Image:
    """Light from one side: brightness falls off linearly across the image."""
    width, height = image.size
    strength = rng.uniform(0.0, 0.25)
    ramp = Image.linear_gradient("L").resize(image.size)
    if rng.random() < 0.5:
        ramp = ramp.rotate(90, expand=False).resize(image.size)
    dark = ImageEnhance.Brightness(image).enhance(1 - strength)
    return Image.composite(image, dark, ramp)


def generated_like(design: Design, rng: random.Random, scene_chance: float = 0.0) -> Image.Image:
    """A stand-in for a generated image: new pose, place, background, mirror, light and colour.

    With `scene_chance`, the plain background is sometimes a scene instead (the figure's colours
    then compete with the place's, as in a real generation "at the beach").
    """
    background = tuple(rng.randrange(170, 256) for _ in range(3))
    image = draw_character(design, rng, background)  # type: ignore[arg-type]
    if rng.random() < scene_chance:
        plain = Image.new("RGB", image.size, background)  # type: ignore[arg-type]
        mask = ImageChops.difference(image, plain).convert("L").point(lambda v: 255 * (v > 0))
        image = Image.composite(image, _scene(image.size, rng), mask)
    if rng.random() < 0.5:
        image = ImageOps.mirror(image)
    image = _shade(image, rng)
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


@dataclass
class Sample:
    """One scored image: which set it belongs to and what each check said."""

    kind: str  # same, other (distinct colours), twin (other, same colours), drift (hair swap)
    consistency: float
    palette: float
    raw_consistency: float
    accepted: bool


KINDS = ("same", "other", "twin", "drift")


def _rates(samples: list[Sample], accepts) -> dict:
    """Accept rate of `same`, reject rates of the others, under the decision `accepts`."""
    rates: dict = {}
    for kind in KINDS:
        chosen = [s for s in samples if s.kind == kind]
        if not chosen:
            continue
        accepted = sum(accepts(s) for s in chosen) / len(chosen)
        key = "same_accept_rate" if kind == "same" else f"{kind}_reject_rate"
        rates[key] = round(accepted if kind == "same" else 1 - accepted, 3)
    return rates


def _separation(samples: list[Sample], score) -> dict:
    same = [score(s) for s in samples if s.kind == "same"]
    others = [score(s) for s in samples if s.kind in ("other", "twin")]
    suggested, balanced = best_threshold(same, others)
    return {
        "auc": round(roc_auc(same, others), 3),
        "mean_same": round(sum(same) / len(same), 4),
        "mean_other": round(sum(others) / len(others), 4),
        "best_threshold": round(suggested, 4),
        "best_balanced_accuracy": round(balanced, 3),
    }


def measure(
    encoder,
    home: Path,
    threshold: float,
    characters: int,
    samples: int,
    seed: int,
    palette_threshold: float | None = None,
    twins: int = 2,
    scene_chance: float = 0.3,
) -> dict:
    """Score same / other / twin / drift images through the real gate; rates per check."""
    from tools.characters.library import CharacterLibrary
    from tools.quality.gate import QualityGate
    from tools.settings import QualitySettings, load_settings

    if palette_threshold is None:
        palette_threshold = QualitySettings().min_palette
    home.mkdir(parents=True, exist_ok=True)
    config = {
        "quality": {
            "min_consistency": threshold,
            "min_palette": palette_threshold,
            "require_face": False,
            "aesthetic_model": None,
        }
    }
    (home / ".anime-config.yaml").write_text(json.dumps(config), encoding="utf-8")
    settings = load_settings(home=home, env={})
    library = CharacterLibrary(settings.paths)
    gate = QualityGate(settings, None, encoder=encoder, library=library)
    twins = min(twins, characters // 2)
    designs = make_cast(characters, twins, seed)
    names = [f"char{i}" for i in range(characters)]
    for name, design in zip(names, designs, strict=True):
        library.add(name, draw_character(design))
    rng = random.Random(seed + 1)
    scored: list[Sample] = []
    for index, name in enumerate(names):
        gate.baseline(library.get(name))
        character = library.get(name)
        twin_of = {
            j for j in range(characters) if j != index and _same_colours(designs[j], designs[index])
        }
        for _ in range(samples):
            pick = rng.choice([j for j in range(characters) if j != index])
            cases = [
                ("same", designs[index]),
                ("twin" if pick in twin_of else "other", designs[pick]),
                ("drift", hair_swapped(designs[index], rng)),
            ]
            if twin_of:
                cases.append(("twin", designs[rng.choice(sorted(twin_of))]))
            for kind, design in cases:
                image = generated_like(design, rng, scene_chance)
                verdict = gate.evaluate(image, character, [])
                assert verdict.scores.consistency is not None and verdict.scores.palette is not None
                scored.append(
                    Sample(
                        kind,
                        verdict.scores.consistency,
                        verdict.scores.palette,
                        gate.raw_consistency(image, character),
                        verdict.accepted,
                    )
                )
    stored = library.list()
    clip_baselines = [c.consistency_baseline or 0.0 for c in stored]
    palette_baselines = [c.palette_baseline or 0.0 for c in stored]
    counts = {kind: sum(s.kind == kind for s in scored) for kind in KINDS}
    combined = _rates(scored, lambda s: s.accepted)
    others = [s for s in scored if s.kind in ("other", "twin")]
    return {
        "encoder": encoder.name,
        "threshold": threshold,
        "palette_threshold": palette_threshold,
        "characters": characters,
        "palette_twins": twins,
        "scene_chance": scene_chance,
        "images": counts,
        "images_per_kind": counts["same"],
        "clip": {
            **_rates(scored, lambda s: s.consistency >= threshold),
            **_separation(scored, lambda s: s.consistency),
            "auc_raw": _separation(scored, lambda s: s.raw_consistency)["auc"],
        },
        "palette": {
            **_rates(scored, lambda s: s.palette >= palette_threshold),
            **_separation(scored, lambda s: s.palette),
        },
        "combined": combined,
        "same_accept_rate": combined["same_accept_rate"],
        "other_reject_rate": round(sum(not s.accepted for s in others) / len(others), 3),
        "baselines": {"min": min(clip_baselines), "max": max(clip_baselines)},
        "palette_baselines": {"min": min(palette_baselines), "max": max(palette_baselines)},
    }


def _encoder_from_config():
    from tools.engine.families import family_for, models_for_family
    from tools.engine.model_sources import image_encoder_subfolder, local_path, resolve_source
    from tools.quality.consistency import ClipEncoder
    from tools.settings import load_settings

    settings = load_settings()
    models_dir = settings.paths.models
    if settings.quality.consistency_model:
        return ClipEncoder(settings.quality.consistency_model, models_dir), settings
    models = models_for_family(settings.models, family_for(settings))
    encoder_folder = image_encoder_subfolder(
        models.ipadapter_subfolder, models.image_encoder_folder
    )
    source = resolve_source(models.ipadapter, models_dir, "ipadapter")
    encoder_dir = local_path(source, [f"{encoder_folder}/*"], "ipadapter") / encoder_folder
    return ClipEncoder(str(encoder_dir), models_dir), settings


ROW_LABELS = {
    "same_accept_rate": ("same character accepted", "same"),
    "other_reject_rate": ("other character rejected", "other"),
    "twin_reject_rate": ("other, same colours, rejected", "twin"),
    "drift_reject_rate": ("same, hair colour swapped, rejected", "drift"),
}


def _print_check(title: str, figures: dict, images: dict) -> None:
    print(f"{title}:")
    for key, (label, kind) in ROW_LABELS.items():
        if key in figures:
            print(f"  {label + ':':37} {figures[key]:6.1%} of {images[kind]}")
    if "auc" in figures:
        print(
            f"  ROC AUC same vs other {figures['auc']:.3f}; mean same {figures['mean_same']:.3f}, "
            f"other {figures['mean_other']:.3f}; best threshold {figures['best_threshold']:.3f} "
            f"(balanced accuracy {figures['best_balanced_accuracy']:.1%})"
        )


def main(argv: list[str] | None = None) -> int:
    from tools.quality.consistency import ClipEncoder

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
    parser.add_argument("--palette-threshold", type=float, help="min_palette (default: config's)")
    parser.add_argument("--characters", type=int, default=8)
    parser.add_argument("--twins", type=int, default=2, help="characters sharing a palette")
    parser.add_argument(
        "--scenes", type=float, default=0.3, help="share of images on a scene background"
    )
    parser.add_argument("--samples", type=int, default=6, help="images per kind per character")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    from tools.settings import QualitySettings

    threshold, palette_threshold = args.threshold, args.palette_threshold
    with tempfile.TemporaryDirectory(prefix="gate-separation-") as scratch:
        if args.from_config:
            encoder, settings = _encoder_from_config()
            threshold = threshold if threshold is not None else settings.quality.min_consistency
            if palette_threshold is None:
                palette_threshold = settings.quality.min_palette
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
            encoder,
            Path(scratch) / "home",
            threshold,
            args.characters,
            args.samples,
            args.seed,
            palette_threshold=palette_threshold,
            twins=args.twins,
            scene_chance=args.scenes,
        )
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"encoder: {result['encoder']}")
    print(
        f"{result['characters']} characters ({result['palette_twins']} share another's colours), "
        f"{result['scene_chance']:.0%} of images on a scene background"
    )
    images = result["images"]
    _print_check(
        f"CLIP alone (quality.min_consistency {result['threshold']:.2f})", result["clip"], images
    )
    _print_check(
        f"palette alone (quality.min_palette {result['palette_threshold']:.2f})",
        result["palette"],
        images,
    )
    _print_check("combined gate (both)", result["combined"], images)
    return 0


if __name__ == "__main__":
    sys.exit(main())
