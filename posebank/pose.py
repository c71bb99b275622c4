"""A named pose: metadata plus its body-space skeleton."""

from __future__ import annotations

from dataclasses import dataclass, field

from posebank.framing import fit_to_canvas
from posebank.skeleton import Body

POSTURES = (
    "standing",
    "sitting",
    "kneeling",
    "lying",
    "walking",
    "running",
    "jumping",
    "crouching",
)


@dataclass(frozen=True)
class Pose:
    id: str
    name: str
    posture: str
    tags: list[str]  # the posture tag first, then action/view tags
    descriptions: list[str]
    body: Body = field(repr=False)
    source: str = "builtin"  # "builtin", or the user file it came from

    def keypoints(
        self, width: int, height: int, framing: str = "full"
    ) -> list[tuple[float, float] | None]:
        """18 pixel points (or None) in OpenPose COCO-18 order on a width x height canvas."""
        return fit_to_canvas(self.body, width, height, framing)


@dataclass(frozen=True)
class PoseMatch:
    pose: Pose
    score: float
