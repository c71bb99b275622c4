"""Fit a body-space skeleton onto a canvas: full body, knees up, or upper body.

The skeleton is scaled uniformly (never stretched) to fit the canvas aspect ratio and centred;
points that the crop leaves outside the canvas become None, as OpenPose would not see them.
"""

from __future__ import annotations

from collections.abc import Sequence

from posebank.errors import PoseBankError
from posebank.skeleton import INDEX, Point

FRAMINGS = ("full", "knees", "upper")
_HEAD_CLEARANCE = 0.75  # head heights above the highest face point: the crown and hair
_FOOT_CLEARANCE = 0.35  # below the lowest ankle: the feet
_SIDE_CLEARANCE = 0.45
_MARGIN = 0.05  # of the canvas, on every side
_LOWER_EDGE = {
    "knees": ("r_knee", "l_knee"),
    "upper": ("r_hip", "l_hip"),
}
_EXCLUDED = {
    "knees": ("r_ankle", "l_ankle"),
    "upper": ("r_knee", "l_knee", "r_ankle", "l_ankle"),
}


def check_framing(framing: str) -> str:
    if framing not in FRAMINGS:
        raise PoseBankError(f"unknown framing '{framing}'", f"use one of: {', '.join(FRAMINGS)}")
    return framing


def fit_to_canvas(
    body: Sequence[Point | None], width: int, height: int, framing: str = "full"
) -> list[tuple[float, float] | None]:
    """Pixel coordinates on a width x height canvas, in COCO-18 order."""
    check_framing(framing)
    excluded = {INDEX[n] for n in _EXCLUDED.get(framing, ())}
    kept = [p for i, p in enumerate(body) if p is not None and i not in excluded]
    if not kept:
        raise PoseBankError("the pose has no visible keypoints", "re-import it from a clearer file")
    xs, ys = [p[0] for p in kept], [p[1] for p in kept]
    left, right = min(xs) - _SIDE_CLEARANCE, max(xs) + _SIDE_CLEARANCE
    top, bottom = min(ys) - _HEAD_CLEARANCE, max(ys) + _FOOT_CLEARANCE
    if framing in _LOWER_EDGE:
        # A crop ends just below its lowest kept joint so that joint is clearly inside.
        bottom = max(ys) + 0.25
    usable_w, usable_h = width * (1 - 2 * _MARGIN), height * (1 - 2 * _MARGIN)
    scale = min(usable_w / (right - left), usable_h / (bottom - top))
    offset_x = width / 2 - scale * (left + right) / 2
    offset_y = height / 2 - scale * (top + bottom) / 2
    pixels: list[tuple[float, float] | None] = []
    for p in body:
        if p is None:
            pixels.append(None)
            continue
        x, y = offset_x + scale * p[0], offset_y + scale * p[1]
        inside = 0 <= x <= width - 1 and 0 <= y <= height - 1
        pixels.append((round(x, 2), round(y, 2)) if inside else None)
    return pixels
