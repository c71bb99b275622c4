"""Every library pose is a plausible skeleton of its declared posture, and ids round-trip."""

import random

import pytest

from posebank.bank import PoseBank
from posebank.checks import pose_problems
from posebank.errors import PoseBankError
from posebank.library import load_builtin
from posebank.pose import POSTURES

LIBRARY = load_builtin()


@pytest.fixture
def bank(tmp_path):
    return PoseBank(tmp_path / "state", tmp_path / "state" / "poses")


@pytest.mark.parametrize("pose", LIBRARY, ids=lambda p: p.id)
def test_library_pose_is_plausible(pose):
    assert pose_problems(pose) == []
    assert pose.tags[0] == pose.posture
    assert [t for t in pose.tags if t in POSTURES] == [pose.posture]
    assert 2 <= len(pose.descriptions) <= 4


def test_ids_are_unique_and_well_formed():
    ids = [p.id for p in LIBRARY]
    assert len(ids) == len(set(ids))
    assert all(i.replace("_", "").isalnum() and i.islower() for i in ids)


def test_every_posture_is_covered():
    assert {p.posture for p in LIBRARY} == set(POSTURES)


def test_keypoints_are_18_pixels_inside_canvas():
    pose = LIBRARY[0]
    points = pose.keypoints(512, 768)
    assert len(points) == 18
    assert all(0 <= x < 512 and 0 <= y < 768 for x, y in points if (x, y))


def test_unknown_id_suggests_close_ids(bank):
    with pytest.raises(PoseBankError) as err:
        bank.get("sitting_readin")
    assert "sitting_reading" in err.value.hint


def test_variations_are_distinct_valid_and_reproducible(bank):
    poses = bank.variations(5, random.Random(7))
    assert len({p.id for p in poses}) == 5
    assert len({p.posture for p in poses}) >= 4
    for pose in poses:
        assert pose_problems(pose) == []
        again = bank.get(pose.id)
        assert again.body == pose.body
        assert again.body != bank.get(pose.id.split("~")[0]).body


def test_variations_keep_a_given_posture(bank):
    poses = bank.variations(6, random.Random(3), posture="sitting")
    assert {p.posture for p in poses} == {"sitting"}
    assert len({p.id for p in poses}) == 6


def test_mirror_swaps_sides(bank):
    base, mirrored = bank.get("standing_waving"), bank.get("standing_waving~m")
    assert "mirrored" in mirrored.tags
    r_wrist_base = base.keypoints(512, 768)[4]
    l_wrist_mirror = mirrored.keypoints(512, 768)[7]
    assert l_wrist_mirror[0] == pytest.approx(512 - 1 - r_wrist_base[0], abs=2)


def test_random_respects_posture(bank):
    rng = random.Random(0)
    assert {bank.random(rng, posture="lying").posture for _ in range(10)} == {"lying"}
    with pytest.raises(PoseBankError):
        bank.random(rng, posture="flying")


def test_building_the_pose_index_touches_nothing_until_it_is_used(tmp_path, monkeypatch):
    """No MiniLM, no Chroma, no files at construction; the first use opens and fills it."""
    import posebank.index as index_module

    loads: list[int] = []
    monkeypatch.setattr(index_module, "load_embedder", lambda: loads.append(1))
    state = tmp_path / "state"
    index = index_module.PoseIndex(state, state / "poses", LIBRARY)
    assert not state.exists() and loads == []
    index.ensure_loaded()  # built-in texts ship their vectors: still no model
    assert (state / index_module.INDEX_DIR).is_dir() and index.rebuilt is True and loads == []


def test_pose_bank_errors_are_the_user_errors_every_cli_catches(bank):
    from tools.errors import UserError

    with pytest.raises(UserError) as error:
        bank.get("no_such_pose")
    assert isinstance(error.value, PoseBankError)
    assert error.value.message == "unknown pose 'no_such_pose'" and error.value.hint
