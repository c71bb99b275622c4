"""Pose variants encoded in the id, so a recorded id always rebuilds the same skeleton.

`sitting_reading~m` is the mirror image, `sitting_reading~j1234` a jitter with seed 1234, and
`sitting_reading~m~j1234` both (mirror first, then jitter).
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass

from posebank.skeleton import INDEX, Body, Point, mirror_body

SEPARATOR = "~"
_SUFFIX = re.compile(r"^(m|j\d{1,9})$")

# Chains rotated by jitter: (pivot, joint, end), with the noise in degrees per segment.
_CHAINS = (
    (("r_shoulder", "r_elbow", "r_wrist"), (7.0, 9.0)),
    (("l_shoulder", "l_elbow", "l_wrist"), (7.0, 9.0)),
    (("r_hip", "r_knee", "r_ankle"), (3.0, 4.0)),
    (("l_hip", "l_knee", "l_ankle"), (3.0, 4.0)),
)
_HEAD = ("nose", "r_eye", "l_eye", "r_ear", "l_ear")
_HEAD_NOISE = 5.0


@dataclass(frozen=True)
class VariantId:
    base: str
    mirror: bool = False
    jitter_seed: int | None = None

    def __str__(self) -> str:
        parts = [self.base]
        if self.mirror:
            parts.append("m")
        if self.jitter_seed is not None:
            parts.append(f"j{self.jitter_seed}")
        return SEPARATOR.join(parts)

    @property
    def is_variant(self) -> bool:
        return self.mirror or self.jitter_seed is not None


def parse_variant_id(pose_id: str) -> VariantId | None:
    """None when the suffixes are not a valid variant encoding."""
    base, *suffixes = pose_id.split(SEPARATOR)
    if not base or any(not _SUFFIX.match(s) for s in suffixes):
        return None
    mirrors = [s for s in suffixes if s == "m"]
    jitters = [s for s in suffixes if s.startswith("j")]
    if len(mirrors) > 1 or len(jitters) > 1 or (suffixes and suffixes[0] != "m" and mirrors):
        return None
    seed = int(jitters[0][1:]) if jitters else None
    return VariantId(base, bool(mirrors), seed)


def _rotate(p: Point, pivot: Point, degrees: float) -> Point:
    a = math.radians(degrees)
    dx, dy = p[0] - pivot[0], p[1] - pivot[1]
    return (
        pivot[0] + dx * math.cos(a) - dy * math.sin(a),
        pivot[1] + dx * math.sin(a) + dy * math.cos(a),
    )


def jitter_body(body: Sequence[Point | None], seed: int) -> Body:
    """Small joint-angle noise: each limb segment turns a few degrees about its parent joint."""
    rng = random.Random(seed)
    points = list(body)
    for (pivot, joint, end), (noise_a, noise_b) in _CHAINS:
        turn_a, turn_b = rng.gauss(0, noise_a), rng.gauss(0, noise_b)
        p, j, e = (points[INDEX[n]] for n in (pivot, joint, end))
        if p is None or j is None:
            continue
        j2 = _rotate(j, p, turn_a)
        points[INDEX[joint]] = j2
        if e is not None:
            points[INDEX[end]] = _rotate(_rotate(e, p, turn_a), j2, turn_b)
    neck = points[INDEX["neck"]]
    head_turn = rng.gauss(0, _HEAD_NOISE)
    if neck is not None:
        for name in _HEAD:
            if points[INDEX[name]] is not None:
                points[INDEX[name]] = _rotate(points[INDEX[name]], neck, head_turn)
    return tuple(points)


def apply_variant(body: Sequence[Point | None], variant: VariantId) -> Body:
    out: Body = tuple(body)
    if variant.mirror:
        out = mirror_body(out)
    if variant.jitter_seed is not None:
        out = jitter_body(out, variant.jitter_seed)
    return out
