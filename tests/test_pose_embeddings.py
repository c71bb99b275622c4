from posebank.index import load_builtin_embeddings, pose_texts
from posebank.library import load_builtin


def test_shipped_embeddings_cover_every_builtin_pose_text():
    shipped = load_builtin_embeddings()
    missing = [t for pose in load_builtin() for t in pose_texts(pose) if t not in shipped]
    assert not missing, (
        f"{len(missing)} pose texts have no shipped embedding (e.g. {missing[0]!r}); "
        "run `python -m posebank.index` after editing posebank/data/poses.yaml"
    )
    assert all(len(vector) == 384 for vector in list(shipped.values())[:3])
