"""Add a user pose from an OpenPose keypoints JSON file or from an image.

JSON: OpenPose's own output (`people[0].pose_keypoints_2d`, COCO-18 or BODY_25, x/y/confidence
triples) or this project's `poses show --json` shape (`keypoints`: 18 `[x, y]` or null).
Images go through controlnet_aux's OpenposeDetector, whose weights download once from the
Hugging Face hub; offline that fails with a clear message.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any

from posebank.checks import Measures, guess_posture, limb_problems
from posebank.errors import PoseBankError
from posebank.library import USER_SUFFIX, pose_to_record
from posebank.pose import Pose
from posebank.skeleton import KEYPOINT_NAMES, Body

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp"}
DETECTOR_REPO = "lllyasviel/Annotators"
# BODY_25 → COCO-18: BODY_25 adds MidHip at 8 and feet after 18.
_BODY25_TO_COCO = (0, 1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18)
_MIN_CONFIDENCE = 0.05
_NAME = re.compile(r"[a-z0-9_]{1,40}")


def pose_id_for(name: str) -> str:
    pose_id = re.sub(r"[^a-z0-9]+", "_", name.strip().lower()).strip("_")
    if not _NAME.fullmatch(pose_id):
        raise PoseBankError(
            f"'{name}' is not a usable pose name", "use letters, digits and spaces, up to 40"
        )
    return pose_id


def _points_from_triples(values: list[float], width: float, height: float) -> Body:
    count = len(values) // 3
    if count not in (18, 25) or len(values) % 3:
        raise PoseBankError(
            f"pose_keypoints_2d has {len(values)} numbers",
            "expected COCO-18 or BODY_25 x/y/confidence triples",
        )
    order = range(18) if count == 18 else _BODY25_TO_COCO
    points = []
    for i in order:
        x, y, confidence = values[3 * i : 3 * i + 3]
        points.append(None if confidence < _MIN_CONFIDENCE else (x * width, y * height))
    return tuple(points)


def body_from_json(data: Any) -> Body:
    """Keypoints from either supported JSON shape, with y down and an honest aspect ratio."""
    if isinstance(data, list):
        data = data[0] if data else {}
    if not isinstance(data, dict):
        raise PoseBankError("the JSON file is not an OpenPose keypoints file")
    if "keypoints" in data:
        raw = data["keypoints"]
        if not isinstance(raw, list) or len(raw) != 18:
            raise PoseBankError("'keypoints' must list 18 points in COCO-18 order")
        return tuple(None if p is None else (float(p[0]), float(p[1])) for p in raw)
    people = data.get("people")
    if not people:
        raise PoseBankError(
            "no person in the JSON file", "expected OpenPose output with a 'people' list"
        )
    values = [float(v) for v in people[0].get("pose_keypoints_2d", [])]
    xy = values[0::3] + values[1::3]
    normalised = bool(xy) and max(xy) <= 1.0
    # Normalised coordinates need the canvas size back to keep the aspect ratio.
    width = float(data.get("canvas_width", 1)) if normalised else 1.0
    height = float(data.get("canvas_height", 1)) if normalised else 1.0
    return _points_from_triples(values, width, height)


def body_from_image(path: Path) -> Body:
    import numpy as np
    from PIL import Image

    try:
        from controlnet_aux import OpenposeDetector

        detector = OpenposeDetector.from_pretrained(DETECTOR_REPO)
    except Exception as exc:  # the hub client raises many types for "cannot download"
        offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes")
        why = "offline (HF_HUB_OFFLINE is set)" if offline else f"({type(exc).__name__})"
        raise PoseBankError(
            f"cannot load the OpenPose detector weights from {DETECTOR_REPO} {why}",
            "go online once so they download, or import an OpenPose JSON file instead",
        ) from None
    image = np.array(Image.open(path).convert("RGB"))
    height, width = image.shape[:2]
    people = detector.detect_poses(image)
    if not people:
        raise PoseBankError(f"no person found in {path}", "try a clearer full-body picture")
    best = max(people, key=lambda p: sum(k is not None for k in p.body.keypoints))
    return tuple(None if k is None else (k.x * width, k.y * height) for k in best.body.keypoints)


def _centred(body: Body) -> Body:
    """Move the hips to the origin and scale to head heights, like the built-in poses."""
    m = Measures(body)
    return tuple(m.point(name) for name in KEYPOINT_NAMES)


def import_pose(name: str, source: Path, user_dir: Path, reserved: set[str]) -> Pose:
    """Read `source`, check it, and save it as `<user_dir>/<id>.json` (replacing an earlier
    user pose of that name; built-in ids in `reserved` are refused)."""
    pose_id = pose_id_for(name)
    if pose_id in reserved:
        raise PoseBankError(f"'{pose_id}' is a built-in pose", "choose another name for your pose")
    if not source.is_file():
        raise PoseBankError(f"no such file: {source}")
    if source.suffix.lower() in IMAGE_SUFFIXES:
        body = body_from_image(source)
    else:
        try:
            data = json.loads(source.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise PoseBankError(
                f"{source} is neither an image nor valid JSON ({exc})",
                "pass an OpenPose keypoints .json file or a picture (.png, .jpg)",
            ) from None
        body = body_from_json(data)
    try:
        body = _centred(body)
    except ValueError as exc:
        raise PoseBankError(
            f"the pose in {source} is incomplete ({exc})",
            "neck, both shoulders and both hips must be visible",
        ) from None
    problems = limb_problems(body)
    if problems:
        raise PoseBankError(f"implausible skeleton in {source}: {problems[0]}")
    posture = guess_posture(body)
    words = name.strip()
    pose = Pose(
        id=pose_id,
        name=words,
        posture=posture,
        tags=[posture, "custom"],
        descriptions=[f"{words} ({posture})"],
        body=body,
        source=str(user_dir / f"{pose_id}{USER_SUFFIX}"),
    )
    user_dir.mkdir(parents=True, exist_ok=True)
    target = user_dir / f"{pose_id}{USER_SUFFIX}"
    fd, tmp = tempfile.mkstemp(dir=user_dir, prefix=f".{pose_id}.", suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(pose_to_record(pose), handle, indent=2)
    os.replace(tmp, target)
    return pose
