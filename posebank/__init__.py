"""Poses as data: an anime-proportioned OpenPose skeleton, a named pose library, a ControlNet
renderer, and text search over an embedded index (see docs/ARCHITECTURE.md → Pose bank).

Importing this package is cheap: its names load on first access (so `posebank.errors`, which
every CLI imports through `tools.errors`, costs nothing more), and Chroma, torch and
sentence-transformers only on search.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from posebank.bank import PoseBank
    from posebank.errors import PoseBankError
    from posebank.pose import POSTURES, Pose, PoseMatch

__all__ = ["POSTURES", "Pose", "PoseBank", "PoseBankError", "PoseMatch"]
_HOMES = {
    "POSTURES": "posebank.pose",
    "Pose": "posebank.pose",
    "PoseMatch": "posebank.pose",
    "PoseBank": "posebank.bank",
    "PoseBankError": "posebank.errors",
}


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'posebank' has no attribute {name!r}")
    return getattr(importlib.import_module(_HOMES[name]), name)
