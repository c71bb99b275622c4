"""Loaded by every Python process of a test cluster's nodes (tests/ray_cluster.py puts this
folder on their PYTHONPATH): records each file operation on a path under ANIME_AUDIT_FORBID
(the head's home) in ANIME_AUDIT_LOG, so a test can show that no actor used a head path."""

from __future__ import annotations

import os
import sys
from typing import Any

FORBID = os.environ.get("ANIME_AUDIT_FORBID", "")
LOG = os.environ.get("ANIME_AUDIT_LOG", "")
_busy = False


def _audit(event: str, args: tuple[Any, ...]) -> None:
    global _busy
    if _busy or not args or not isinstance(args[0], (str, bytes, os.PathLike)):
        return
    try:
        path = os.fsdecode(args[0])
    except TypeError:
        return
    if not path.startswith(FORBID):
        return
    _busy = True
    try:
        with open(LOG, "a", encoding="utf-8") as log:
            log.write(f"{os.getpid()} {event} {path}\n")
    finally:
        _busy = False


if FORBID and LOG:
    sys.addaudithook(_audit)
