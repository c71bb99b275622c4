"""The OpenPose COCO-18 skeleton with anime body proportions, built from compact joint angles.

Body space is measured in head heights, x to the image right, y down. A pose is authored as a
handful of angles (see `AngleSpec`); `build_body` turns them into 18 body-space points.

Angle convention for limbs: the direction a segment points on screen, in degrees; 0 is straight
down, +90 toward the image right, -90 toward the image left, 180 straight up. A limb may carry a
length scale per segment for foreshortening (a thigh pointing at the camera is short on screen).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

Point = tuple[float, float]
Body = tuple[Point | None, ...]

KEYPOINT_NAMES = (
    "nose",
    "neck",
    "r_shoulder",
    "r_elbow",
    "r_wrist",
    "l_shoulder",
    "l_elbow",
    "l_wrist",
    "r_hip",
    "r_knee",
    "r_ankle",
    "l_hip",
    "l_knee",
    "l_ankle",
    "r_eye",
    "l_eye",
    "r_ear",
    "l_ear",
)
INDEX = {name: i for i, name in enumerate(KEYPOINT_NAMES)}
# OpenPose's own limb order (1-based pairs in controlnet_aux, 0-based here); the renderer needs it.
LIMBS = (
    (1, 2), (1, 5), (2, 3), (3, 4), (5, 6), (6, 7), (1, 8), (8, 9), (9, 10),
    (1, 11), (11, 12), (12, 13), (1, 0), (0, 14), (14, 16), (0, 15), (15, 17),
)  # fmt: skip
# Swapping these index pairs turns a person's right into their left (used by mirroring).
LEFT_RIGHT_PAIRS = ((2, 5), (3, 6), (4, 7), (8, 11), (9, 12), (10, 13), (14, 15), (16, 17))

# Anime proportions in head heights (figure about 6.7 heads tall from crown to sole).
TORSO = 2.0  # neck to the middle of the hips
SHOULDER_HALF = 0.62
HIP_HALF = 0.42
UPPER_ARM = 1.15
FOREARM = 1.0
THIGH = 1.65
SHIN = 1.55
SEGMENT_LENGTHS = {
    "upper_arm": UPPER_ARM,
    "forearm": FOREARM,
    "thigh": THIGH,
    "shin": SHIN,
}
# Face points: (azimuth from the nose toward the person's right, radius, height above the neck).
_FACE = {
    "nose": (0.0, 0.42, 0.62),
    "r_eye": (35.0, 0.40, 0.80),
    "l_eye": (-35.0, 0.40, 0.80),
    "r_ear": (95.0, 0.45, 0.74),
    "l_ear": (-95.0, 0.45, 0.74),
}
# A face point is drawn when it faces the camera at least this much (cos of the turn angle).
_FACE_VISIBLE = -0.25

AngleSpec = Mapping[str, Any]
"""Keys (all optional): yaw (0 facing the viewer, 90 facing image right, 180 back),
lean (torso tilt, + toward image right; 90 is lying with the head to the right),
head (head tilt relative to the torso), head_turn (head yaw relative to the body),
r_arm/l_arm/r_leg/l_leg: [upper, lower] angles or [upper, lower, upper_scale, lower_scale]."""

NEUTRAL: dict[str, Any] = {
    "yaw": 0.0,
    "lean": 0.0,
    "head": 0.0,
    "head_turn": 0.0,
    "r_arm": [-12, -6],
    "l_arm": [12, 6],
    "r_leg": [-3, 0],
    "l_leg": [3, 0],
}


def direction(angle_deg: float) -> Point:
    a = math.radians(angle_deg)
    return math.sin(a), math.cos(a)


def _add(p: Point, d: Point, length: float) -> Point:
    return p[0] + d[0] * length, p[1] + d[1] * length


def _limb(spec: AngleSpec, key: str) -> tuple[float, float, float, float]:
    values = [float(v) for v in spec[key]]
    if len(values) == 2:
        values += [1.0, 1.0]
    if len(values) != 4:
        raise ValueError(f"{key}: expected [upper, lower] or [upper, lower, scale, scale]")
    return values[0], values[1], values[2], values[3]


def build_body(spec: AngleSpec) -> Body:
    """18 body-space points (hip centre at the origin) from an angle spec; see `AngleSpec`."""
    unknown = set(spec) - set(NEUTRAL)
    if unknown:
        raise ValueError(f"unknown joint keys: {', '.join(sorted(unknown))}")
    s = {**NEUTRAL, **spec}
    yaw, lean = float(s["yaw"]), float(s["lean"])
    up = (math.sin(math.radians(lean)), -math.cos(math.radians(lean)))
    across = (
        math.cos(math.radians(lean)),
        math.sin(math.radians(lean)),
    )  # image-right when upright
    facing = math.cos(math.radians(yaw))  # shoulder/hip width seen on screen

    points: list[Point | None] = [None] * 18
    hip_centre = (0.0, 0.0)
    neck = _add(hip_centre, up, TORSO)
    points[INDEX["neck"]] = neck
    # The person's right side is on the image left when they face the viewer.
    points[INDEX["r_shoulder"]] = _add(_add(neck, across, -SHOULDER_HALF * facing), up, -0.05)
    points[INDEX["l_shoulder"]] = _add(_add(neck, across, SHOULDER_HALF * facing), up, -0.05)
    points[INDEX["r_hip"]] = _add(hip_centre, across, -HIP_HALF * facing)
    points[INDEX["l_hip"]] = _add(hip_centre, across, HIP_HALF * facing)

    for side in ("r", "l"):
        upper, lower, s1, s2 = _limb(s, f"{side}_arm")
        elbow = _add(points[INDEX[f"{side}_shoulder"]], direction(upper), UPPER_ARM * s1)
        points[INDEX[f"{side}_elbow"]] = elbow
        points[INDEX[f"{side}_wrist"]] = _add(elbow, direction(lower), FOREARM * s2)
        upper, lower, s1, s2 = _limb(s, f"{side}_leg")
        knee = _add(points[INDEX[f"{side}_hip"]], direction(upper), THIGH * s1)
        points[INDEX[f"{side}_knee"]] = knee
        points[INDEX[f"{side}_ankle"]] = _add(knee, direction(lower), SHIN * s2)

    head_tilt = lean + float(s["head"])
    head_up = (math.sin(math.radians(head_tilt)), -math.cos(math.radians(head_tilt)))
    head_across = (math.cos(math.radians(head_tilt)), math.sin(math.radians(head_tilt)))
    head_yaw = yaw + float(s["head_turn"])
    for name, (azimuth, radius, height) in _FACE.items():
        turn = math.radians(head_yaw - azimuth)
        if math.cos(turn) < _FACE_VISIBLE:
            continue
        points[INDEX[name]] = _add(
            _add(neck, head_up, height), head_across, radius * math.sin(turn)
        )
    return tuple(points)


def mirror_body(body: Sequence[Point | None]) -> Body:
    """Flip left-right on screen and swap the person's sides, as a mirrored photo would."""
    flipped = [None if p is None else (-p[0], p[1]) for p in body]
    for a, b in LEFT_RIGHT_PAIRS:
        flipped[a], flipped[b] = flipped[b], flipped[a]
    return tuple(flipped)
