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


class _ThreadsSeen:
    """A stand-in embedder recording how many intra-op threads torch had while it encoded."""

    def __init__(self) -> None:
        self.threads: list[int] = []

    def encode(self, texts: list[str], **_: object):
        import numpy as np
        import torch

        self.threads.append(torch.get_num_threads())
        return np.zeros((len(texts), 384), dtype="float32")


def test_a_query_is_embedded_on_one_thread_and_the_thread_count_is_put_back():
    import torch

    from posebank.index import ONE_THREAD_BATCH, embed_texts

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        embedder = _ThreadsSeen()
        assert embed_texts(embedder, ["yuki sitting reading"]) == [[0.0] * 384]
        embed_texts(embedder, ["pose"] * (ONE_THREAD_BATCH + 1))
        assert embedder.threads == [1, 2]
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
