"""Atomic file writes: a reader sees the old file or the new one, never half of one.

`write_atomic` is `posebank.atomic`'s (posebank imports nothing of ours, so the one copy lives
there); the JSON helper is ours.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from posebank.atomic import write_atomic

__all__ = ["write_atomic", "write_json_atomic"]


def write_json_atomic(path: Path, data: Any) -> None:
    payload = (json.dumps(data, indent=2, ensure_ascii=False) + "\n").encode("utf-8")
    write_atomic(path, lambda handle: handle.write(payload))
