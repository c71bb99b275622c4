"""Write a pose as files: `<id>.json` (the `poses show --json` shape) and `<id>.png`."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from posebank.pose import Pose
from posebank.render import draw_keypoints


def pose_json(pose: Pose, width: int, height: int, framing: str = "full") -> dict[str, Any]:
    """The contract shape of `anime-gen poses show ID --json`."""
    return {
        "id": pose.id,
        "name": pose.name,
        "tags": pose.tags,
        "width": width,
        "height": height,
        "keypoints": [
            None if p is None else [p[0], p[1]] for p in pose.keypoints(width, height, framing)
        ],
    }


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_pose_files(
    pose: Pose, folder: Path, width: int, height: int, framing: str = "full"
) -> tuple[Path, Path]:
    """Write `<id>.json` and `<id>.png` into `folder` (created if missing); returns both paths."""
    import io

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    data = pose_json(pose, width, height, framing)
    json_path, png_path = folder / f"{pose.id}.json", folder / f"{pose.id}.png"
    _atomic_write(json_path, (json.dumps(data, indent=2) + "\n").encode())
    buffer = io.BytesIO()
    draw_keypoints(
        [None if p is None else (p[0], p[1]) for p in data["keypoints"]], width, height
    ).save(buffer, format="PNG")
    _atomic_write(png_path, buffer.getvalue())
    return json_path, png_path
