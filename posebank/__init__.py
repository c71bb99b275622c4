"""Poses as data: an anime-proportioned OpenPose skeleton, a named pose library, a ControlNet
renderer, and text search over an embedded index (see docs/ARCHITECTURE.md → Pose bank).

Importing this package is cheap: Chroma, torch and sentence-transformers load only on search.
"""

from posebank.bank import PoseBank
from posebank.errors import PoseBankError
from posebank.pose import POSTURES, Pose, PoseMatch

__all__ = ["POSTURES", "Pose", "PoseBank", "PoseBankError", "PoseMatch"]
