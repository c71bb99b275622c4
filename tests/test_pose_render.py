"""The conditioning image: matches stored references, and draws like controlnet_aux."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from posebank.bank import PoseBank
from posebank.export import write_pose_files
from posebank.render import draw_keypoints, render_pose

REFERENCES = Path(__file__).parent / "data" / "poses"
CASES = [
    ("sitting_reading", 512, 768, "full"),
    ("running_side", 768, 512, "full"),
    ("standing_waving~m", 512, 768, "upper"),
]


@pytest.fixture(scope="module")
def bank(tmp_path_factory):
    state = tmp_path_factory.mktemp("state")
    return PoseBank(state, state / "poses")


@pytest.mark.parametrize(("pose_id", "width", "height", "framing"), CASES)
def test_render_matches_reference(bank, pose_id, width, height, framing):
    image = render_pose(bank.get(pose_id), width, height, framing)
    reference = Image.open(REFERENCES / f"{pose_id.replace('~', '-')}_{framing}.png")
    assert image.size == reference.size == (width, height)
    diff = np.abs(np.asarray(image, dtype=int) - np.asarray(reference.convert("RGB"), dtype=int))
    assert (diff > 40).mean() < 0.002  # a few anti-aliasing pixels at most


def test_same_pixels_as_controlnet_aux_at_512(bank):
    from controlnet_aux.open_pose.body import Keypoint
    from controlnet_aux.open_pose.util import draw_bodypose

    points = bank.get("standing_hands_on_hips").keypoints(512, 512)
    theirs = draw_bodypose(
        np.zeros((512, 512, 3), dtype=np.uint8),
        [None if p is None else Keypoint(p[0] / 512, p[1] / 512) for p in points],
    )
    ours = np.asarray(draw_keypoints(points, 512, 512))
    assert (np.abs(ours.astype(int) - theirs.astype(int)) > 40).mean() < 0.002


def test_framings_crop_legs(bank):
    pose = bank.get("standing_neutral")
    full, knees, upper = (pose.keypoints(512, 768, f) for f in ("full", "knees", "upper"))
    assert all(p is not None for p in full[:14])
    assert knees[10] is None and knees[9] is not None  # ankle cropped, knee kept
    assert upper[9] is None and upper[8] is not None  # knee cropped, hip kept
    shoulder_width = lambda pts: abs(pts[2][0] - pts[5][0])  # noqa: E731
    assert shoulder_width(upper) > shoulder_width(knees) > shoulder_width(full)


def test_write_pose_files(bank, tmp_path):
    json_path, png_path = write_pose_files(bank.get("kneeling_seiza"), tmp_path / "p", 512, 768)
    assert json_path.name == "kneeling_seiza.json"
    assert Image.open(png_path).size == (512, 768)
