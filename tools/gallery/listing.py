"""What the gallery lists and how it shows one image: the filters (FTS5 search among them) that
become the query's WHERE clause, and an index row as the API's image JSON.
"""

from __future__ import annotations

import json
import re
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCORE_NAMES = ("consistency", "face", "aesthetic", "palette")
ID_PATTERN = re.compile(r"[0-9]{1,18}")
# FTS5 (unicode61) splits words on anything but letters and digits: split the query alike.
_WORD = re.compile(r"[^\W_]+")


class NotFound(LookupError):
    """No such image (or an id that is not one): the API answers 404."""


@dataclass
class Filters:
    q: str = ""
    character: str | None = None
    collection: str | None = None
    starred: bool | None = None
    rejected: bool = False
    trashed: bool = False
    day: str | None = None
    posture: str | None = None

    def where(self) -> tuple[list[str], list[Any]]:
        clauses = ["status = 'saved'", "trashed = ?", "accepted = ?"]
        params: list[Any] = [int(self.trashed), 0 if self.rejected else 1]
        if self.trashed:  # the trash shows accepted and rejected images alike
            clauses.pop()
            params.pop()
        for column in ("character", "collection", "posture"):
            value = getattr(self, column)
            if value:
                clauses.append(f"{column} = ?")
                params.append(value)
        if self.starred is not None:
            clauses.append("starred = ?")
            params.append(int(self.starred))
        if self.day:
            clauses.append("substr(created, 1, 10) = ?")
            params.append(self.day)
        match = match_expression(self.q)
        if match:
            clauses.append("id IN (SELECT rowid FROM images_fts WHERE images_fts MATCH ?)")
            params.append(match)
        return clauses, params


def match_expression(q: str) -> str | None:
    """Every word of `q`, each as a prefix: `pink libr` → `"pink"* "libr"*` (FTS5: AND)."""
    words = _WORD.findall(q.lower())
    return " ".join(f'"{word}"*' for word in words) or None


def image_json(row: sqlite3.Row) -> dict[str, Any]:
    """The contract's image shape, plus the gallery's own keys (accepted, collection, ...)."""
    record = json.loads(row["record"])
    scores = record.get("scores") or {}
    output = record.get("output") if isinstance(record.get("output"), dict) else {}
    pose = record.get("pose") or {}
    return {
        "id": str(row["id"]),
        "path": row["path"],
        "character": row["character"],
        "pose": {"id": row["pose_id"], "tags": list(pose.get("tags") or [])},
        "seed": row["seed"],
        "prompt": record.get("prompt", ""),
        "created": row["created"],
        "starred": bool(row["starred"]),
        "scores": {name: scores.get(name) for name in SCORE_NAMES},
        "accepted": bool(row["accepted"]),
        "trashed": bool(row["trashed"]),
        "missing": bool(row["missing"]) or not Path(row["path"]).exists(),
        "collection": row["collection"],
        "posture": row["posture"],
        "user_prompt": record.get("user_prompt", ""),
        "model": record.get("model"),
        "reasons": list(output.get("reasons") or []),
    }
