"""Write a pose as files: `<id>.json` (the `poses show --json` shape) and `<id>.png`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from posebank.atomic import write_atomic
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


def write_pose_files(
    pose: Pose, folder: Path, width: int, height: int, framing: str = "full"
) -> tuple[Path, Path]:
    """Write `<id>.json` and `<id>.png` into `folder` (created if missing); returns both paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    data = pose_json(pose, width, height, framing)
    json_path, png_path = folder / f"{pose.id}.json", folder / f"{pose.id}.png"
    payload = (json.dumps(data, indent=2) + "\n").encode()
    write_atomic(json_path, lambda handle: handle.write(payload))
    drawing = draw_keypoints(
        [None if p is None else (p[0], p[1]) for p in data["keypoints"]], width, height
    )
    write_atomic(png_path, lambda handle: drawing.save(handle, format="PNG"))
    return json_path, png_path
