"""Draw a pose the way ControlNet OpenPose models were trained to see it.

Same colours, limb order, ellipse limbs (60% colour) and joint dots as controlnet_aux's
`draw_bodypose`. Its widths (stick 4 px, dot radius 4 px) are for a 512 px detection canvas, so
they scale with the shorter side here, which matches its detect-at-512-then-resize output.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from posebank.skeleton import LIMBS

if TYPE_CHECKING:
    from PIL import Image

    from posebank.pose import Pose

COLORS = (
    (255, 0, 0), (255, 85, 0), (255, 170, 0), (255, 255, 0), (170, 255, 0), (85, 255, 0),
    (0, 255, 0), (0, 255, 85), (0, 255, 170), (0, 255, 255), (0, 170, 255), (0, 85, 255),
    (0, 0, 255), (85, 0, 255), (170, 0, 255), (255, 0, 255), (255, 0, 170), (255, 0, 85),
)  # fmt: skip
_REFERENCE_SIDE = 512
_STICK_WIDTH = 4
_DOT_RADIUS = 4


def draw_keypoints(
    keypoints: list[tuple[float, float] | None], width: int, height: int
) -> Image.Image:
    """A black RGB canvas with the skeleton drawn on it."""
    import cv2
    import numpy as np
    from PIL import Image

    canvas = np.zeros((height, width, 3), dtype=np.uint8)
    scale = min(width, height) / _REFERENCE_SIDE
    stick = max(1, round(_STICK_WIDTH * scale))
    dot = max(1, round(_DOT_RADIUS * scale))
    for (a, b), color in zip(LIMBS, COLORS, strict=False):
        pa, pb = keypoints[a], keypoints[b]
        if pa is None or pb is None:
            continue
        mid = (int((pa[0] + pb[0]) / 2), int((pa[1] + pb[1]) / 2))
        length = math.hypot(pa[0] - pb[0], pa[1] - pb[1])
        angle = math.degrees(math.atan2(pa[1] - pb[1], pa[0] - pb[0]))
        polygon = cv2.ellipse2Poly(mid, (int(length / 2), stick), int(angle), 0, 360, 1)
        cv2.fillConvexPoly(canvas, polygon, [int(c * 0.6) for c in color])
    for point, color in zip(keypoints, COLORS, strict=False):
        if point is not None:
            cv2.circle(canvas, (int(point[0]), int(point[1])), dot, color, thickness=-1)
    return Image.fromarray(canvas)


def render_pose(pose: Pose, width: int, height: int, framing: str = "full") -> Image.Image:
    """The ControlNet conditioning image for `pose` on a width x height canvas."""
    return draw_keypoints(pose.keypoints(width, height, framing), width, height)
