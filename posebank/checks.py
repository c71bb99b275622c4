"""Plausibility checks on a pose, and a posture guess for imported skeletons.

All measures are relative to the pose's own torso (neck to mid-hip), expressed in head heights
(the library's torso is 2.0), so imported skeletons of any scale are judged alike.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from posebank.skeleton import INDEX, SEGMENT_LENGTHS, TORSO, Body, Point

if TYPE_CHECKING:
    from posebank.pose import Pose

_SEGMENTS = (
    ("r_shoulder", "r_elbow", "upper_arm"),
    ("r_elbow", "r_wrist", "forearm"),
    ("l_shoulder", "l_elbow", "upper_arm"),
    ("l_elbow", "l_wrist", "forearm"),
    ("r_hip", "r_knee", "thigh"),
    ("r_knee", "r_ankle", "shin"),
    ("l_hip", "l_knee", "thigh"),
    ("l_knee", "l_ankle", "shin"),
)
_REQUIRED = ("neck", "r_shoulder", "l_shoulder", "r_hip", "l_hip")
_LEGS = (("r_hip", "r_knee", "r_ankle"), ("l_hip", "l_knee", "l_ankle"))


class Measures:
    """A skeleton rescaled so its torso is TORSO head heights long."""

    def __init__(self, body: Body) -> None:
        missing = [n for n in _REQUIRED if body[INDEX[n]] is None]
        if missing:
            raise ValueError(f"missing {', '.join(missing)}")
        neck = body[INDEX["neck"]]
        r_hip, l_hip = body[INDEX["r_hip"]], body[INDEX["l_hip"]]
        self.hip = ((r_hip[0] + l_hip[0]) / 2, (r_hip[1] + l_hip[1]) / 2)
        torso = math.dist(neck, self.hip)
        if torso < 1e-6:
            raise ValueError("neck and hips coincide")
        self.scale = TORSO / torso
        self.body = body
        self.tilt = abs(math.degrees(math.atan2(neck[0] - self.hip[0], self.hip[1] - neck[1])))

    def point(self, name: str) -> Point | None:
        p = self.body[INDEX[name]]
        if p is None:
            return None
        return ((p[0] - self.hip[0]) * self.scale, (p[1] - self.hip[1]) * self.scale)

    def below_hip(self, name: str) -> float | None:
        """How far the joint is below the middle of the hips (negative: above)."""
        p = self.point(name)
        return None if p is None else p[1]

    def lowest_ankle(self) -> float | None:
        drops = [d for n in ("r_ankle", "l_ankle") if (d := self.below_hip(n)) is not None]
        return max(drops) if drops else None


def limb_problems(body: Body) -> list[str]:
    try:
        m = Measures(body)
    except ValueError as exc:
        return [str(exc)]
    problems = []
    for a, b, segment in _SEGMENTS:
        pa, pb = m.point(a), m.point(b)
        if pa is None or pb is None:
            continue
        ratio = math.dist(pa, pb) / SEGMENT_LENGTHS[segment]
        # Foreshortening shortens a limb on screen; nothing makes it much longer.
        if not 0.15 <= ratio <= 1.3:
            problems.append(f"{a}-{b} is {ratio:.2f}x a normal {segment}")
    return problems


def _kneeling(m: Measures) -> bool:
    points = [d for n in ("r_knee", "l_knee", "r_ankle", "l_ankle") if (d := m.below_hip(n))]
    for _, knee, ankle in _LEGS:
        k, a = m.below_hip(knee), m.below_hip(ankle)
        if k is None or a is None:
            continue
        if k >= max(points) - 0.45 and a - k < 0.45 and k > 0.5:
            return True
    return False


def _knee_drops(m: Measures) -> list[float]:
    return [d for n in ("r_knee", "l_knee") if (d := m.below_hip(n)) is not None]


def _stride(m: Measures) -> float:
    r, l_ = m.point("r_ankle"), m.point("l_ankle")
    return 0.0 if r is None or l_ is None else abs(r[0] - l_[0])


def _knee_bends(m: Measures) -> list[float]:
    bends = []
    for hip, knee, ankle in _LEGS:
        h, k, a = m.point(hip), m.point(knee), m.point(ankle)
        if h is None or k is None or a is None:
            continue
        thigh = math.atan2(k[0] - h[0], k[1] - h[1])
        shin = math.atan2(a[0] - k[0], a[1] - k[1])
        bends.append(abs(math.degrees((shin - thigh + math.pi) % (2 * math.pi) - math.pi)))
    return bends


def posture_fits(body: Body, posture: str) -> bool:
    """Whether the skeleton's geometry is consistent with `posture`."""
    m = Measures(body)
    lying = m.tilt > 55
    if posture == "lying":
        return lying
    if lying:
        return False
    drop = m.lowest_ankle()
    knees = _knee_drops(m)
    if drop is None or not knees:
        return posture in ("standing", "sitting")  # a cropped import: legs unseen
    kneeling = _kneeling(m)
    if posture == "kneeling":
        return kneeling
    if posture == "crouching":
        return not kneeling and 0.4 <= drop <= 1.45 and max(knees) < 0.3
    if posture == "sitting":
        # Seated hips are near knee height (or below raised knees), and not on full legs.
        return not kneeling and min(knees) < 0.95 and drop < 2.5
    upright = drop > 1.9 and not kneeling
    if posture == "standing":
        # At least one straight leg carries the weight; the other may be lifted (dancing).
        return upright and any(
            m.below_hip(knee) > 1.2 and bend < 35
            for (_, knee, _), bend in zip(_LEGS, _knee_bends(m), strict=False)
            if m.below_hip(knee) is not None
        )
    if posture == "walking":
        bend = max(_knee_bends(m), default=0)
        return upright and min(knees) > 0.9 and (_stride(m) > 1.3 or 12 < bend <= 50)
    if posture == "running":
        return upright and max(_knee_bends(m), default=0) > 50
    if posture == "jumping":
        return drop > 0.6 and (max(_knee_bends(m), default=0) > 25 or _stride(m) > 1.0)
    raise ValueError(f"unknown posture '{posture}'")


# Most specific first: the first posture whose geometry fits is the guess.
_GUESS_ORDER = ("lying", "kneeling", "crouching", "running", "sitting", "standing", "walking")


def guess_posture(body: Body) -> str:
    for posture in _GUESS_ORDER:
        if posture_fits(body, posture):
            return posture
    return "standing"


def frame_problems(pose: Pose, width: int = 512, height: int = 768) -> list[str]:
    problems = []
    for framing in ("full",):
        pixels = pose.keypoints(width, height, framing)
        lost = [name for name, i in INDEX.items() if pose.body[i] is not None and pixels[i] is None]
        if lost:
            problems.append(f"{framing} framing leaves {', '.join(lost)} outside the canvas")
    return problems


def pose_problems(pose: Pose) -> list[str]:
    """Everything implausible about a pose; empty when it is fine."""
    problems = limb_problems(pose.body) + frame_problems(pose)
    if not problems and not posture_fits(pose.body, pose.posture):
        problems.append(f"skeleton does not look {pose.posture}")
    return problems
