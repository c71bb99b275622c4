"""A path a user typed, with `~` expanded."""

from __future__ import annotations

from pathlib import Path


def expand_user(value: str | Path) -> Path:
    """`~` and `~name` expanded; `~name` of a user this machine lacks stays as written (pathlib
    raises RuntimeError for it, which would be a traceback for a mistyped path)."""
    path = Path(value)
    try:
        return path.expanduser()
    except RuntimeError:
        return path
