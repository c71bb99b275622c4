"""Loads the pose library: built-in poses (angle specs in data/poses.yaml) and user poses
(keypoint JSON files under the user pose folder), plus a content hash for the index."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from posebank.errors import PoseBankError
from posebank.pose import POSTURES, Pose
from posebank.skeleton import Body, build_body

DATA_DIR = Path(__file__).parent / "data"
BUILTIN_FILE = "poses.yaml"
USER_SUFFIX = ".json"


def _builtin_text() -> str:
    return (DATA_DIR / BUILTIN_FILE).read_text(encoding="utf-8")


def _tags(posture: str, tags: Iterable[str]) -> list[str]:
    if posture not in POSTURES:
        raise ValueError(f"posture '{posture}' is not one of {', '.join(POSTURES)}")
    rest = [t for t in dict.fromkeys(tags) if t != posture]
    stray = [t for t in rest if t in POSTURES]
    if stray:
        raise ValueError(f"a pose has exactly one posture tag; also found {', '.join(stray)}")
    return [posture, *rest]


def parse_builtin(text: str) -> list[Pose]:
    import yaml

    # libyaml's loader is ~10x faster than the pure-Python one; it ships with PyYAML wheels.
    data = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    templates: dict[str, dict[str, Any]] = data.get("templates", {})
    poses = []
    for entry in data["poses"]:
        try:
            spec = {**templates.get(entry.get("base", ""), {}), **entry.get("joints", {})}
            if entry.get("base") and entry["base"] not in templates:
                raise ValueError(f"unknown base template '{entry['base']}'")
            poses.append(
                Pose(
                    id=entry["id"],
                    name=entry["name"],
                    posture=entry["posture"],
                    tags=_tags(entry["posture"], entry.get("tags", [])),
                    descriptions=list(entry["descriptions"]),
                    body=build_body(spec),
                )
            )
        except (KeyError, ValueError) as exc:
            raise ValueError(f"pose {entry.get('id', '?')}: {exc}") from exc
    return poses


def load_builtin() -> list[Pose]:
    return parse_builtin(_builtin_text())


def pose_to_record(pose: Pose) -> dict[str, Any]:
    """The user-pose file format: metadata plus body-space points."""
    return {
        "id": pose.id,
        "name": pose.name,
        "posture": pose.posture,
        "tags": pose.tags,
        "descriptions": pose.descriptions,
        "body": [None if p is None else [round(p[0], 4), round(p[1], 4)] for p in pose.body],
    }


def pose_from_record(record: dict[str, Any], source: str) -> Pose:
    body: Body = tuple(None if p is None else (float(p[0]), float(p[1])) for p in record["body"])
    if len(body) != 18:
        raise ValueError("body must have 18 points")
    return Pose(
        id=record["id"],
        name=record["name"],
        posture=record["posture"],
        tags=_tags(record["posture"], record.get("tags", [])),
        descriptions=list(record.get("descriptions") or [record["name"]]),
        body=body,
        source=source,
    )


def user_files(user_dir: Path) -> list[Path]:
    return sorted(user_dir.glob(f"*{USER_SUFFIX}")) if user_dir.is_dir() else []


def load_user(user_dir: Path) -> list[Pose]:
    poses = []
    for path in user_files(user_dir):
        try:
            poses.append(pose_from_record(json.loads(path.read_text(encoding="utf-8")), str(path)))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise PoseBankError(
                f"user pose file {path} is broken ({exc})",
                "fix it or delete it, then add the pose again with `anime-gen poses add`",
            ) from None
    return poses


def library_hash(user_dir: Path) -> str:
    """Changes whenever the built-in data or any user pose file changes."""
    digest = hashlib.sha256(_builtin_text().encode())
    for path in user_files(user_dir):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()
