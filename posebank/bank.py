"""`PoseBank`: the pose library behind one object: look-up, search, random picks, variations."""

from __future__ import annotations

import difflib
import random
import threading
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from posebank import lexicon
from posebank.errors import PoseBankError
from posebank.library import load_builtin, load_user
from posebank.pose import POSTURES, Pose, PoseMatch
from posebank.variants import VariantId, apply_variant, parse_variant_id

if TYPE_CHECKING:
    from posebank.index import PoseIndex

# Search score = semantic similarity (0..1) + these bonuses, so the asked-for posture always
# ranks first and tag words the query names break ties between similar poses.
POSTURE_BONUS = 1.0
TAG_BONUS = 0.16
ACTION_BONUS = 0.1  # more on top for a tag the query's action word names ("reading")
# With no posture named, people mostly mean standing ("texting on her phone"): a mild prior.
DEFAULT_POSTURE, DEFAULT_BONUS = "standing", 0.2


class PoseBank:
    """Built-in poses plus the user's own (`user_dir`), indexed in Chroma under `state_dir`.

    Safe to share between threads (the studio server's requests): the library and the index
    are each built once, under the bank's lock.
    """

    def __init__(self, state_dir: Path, user_dir: Path) -> None:
        self.state_dir = Path(state_dir)
        self.user_dir = Path(user_dir)
        self._poses: dict[str, Pose] | None = None
        self._index: PoseIndex | None = None
        self._tag_words: dict[str, set[str]] = {}
        self._lock = threading.RLock()

    # -- the library -------------------------------------------------------------------------

    def _library(self) -> dict[str, Pose]:
        poses = self._poses
        if poses is None:
            with self._lock:
                if self._poses is None:
                    loaded = {p.id: p for p in load_builtin()}
                    for pose in load_user(self.user_dir):
                        loaded.setdefault(pose.id, pose)  # a built-in id means the built-in
                    self._poses = loaded
                poses = self._poses
        return poses

    def reload(self) -> None:
        with self._lock:
            self._poses = None
            self._index = None
            self._tag_words = {}

    def list(self) -> list[Pose]:
        return sorted(self._library().values(), key=lambda p: (POSTURES.index(p.posture), p.id))

    def get(self, pose_id: str) -> Pose:
        library = self._library()
        variant = parse_variant_id(pose_id.strip())
        if variant is None or variant.base not in library:
            base = variant.base if variant else pose_id
            close = difflib.get_close_matches(base, list(library), n=3, cutoff=0.4)
            hint = (
                f"did you mean {', '.join(close)}?"
                if close
                else "see `anime-gen poses list` or `anime-gen poses search TEXT`"
            )
            raise PoseBankError(f"unknown pose '{pose_id}'", hint)
        return self._variant(library[variant.base], variant)

    @staticmethod
    def _variant(base: Pose, variant: VariantId) -> Pose:
        if not variant.is_variant:
            return base
        notes = (["mirrored"] if variant.mirror else []) + (
            ["varied"] if variant.jitter_seed is not None else []
        )
        tags = base.tags + [t for t in notes if t not in base.tags]
        return replace(
            base,
            id=str(variant),
            name=f"{base.name} ({', '.join(notes)})",
            tags=tags,
            descriptions=[f"{d} ({', '.join(notes)})" for d in base.descriptions],
            body=apply_variant(base.body, variant),
        )

    # -- picking -----------------------------------------------------------------------------

    def _candidates(self, posture: str | None) -> list[Pose]:
        poses = self.list()
        if posture is None:
            return poses
        if posture not in POSTURES:
            raise PoseBankError(
                f"unknown posture '{posture}'", f"use one of: {', '.join(POSTURES)}"
            )
        return [p for p in poses if p.posture == posture]

    def random(self, rng: random.Random, posture: str | None = None) -> Pose:
        return rng.choice(self._candidates(posture))

    def variations(self, n: int, rng: random.Random, posture: str | None = None) -> list[Pose]:
        """n poses with distinct ids: mirrored and/or jittered variants of different base poses,
        spread over the postures unless one is given."""
        from posebank.checks import pose_problems

        if n < 1:
            return []
        candidates = self._candidates(posture)
        by_posture: dict[str, list[Pose]] = {}
        for pose in candidates:
            by_posture.setdefault(pose.posture, []).append(pose)
        for group in by_posture.values():
            rng.shuffle(group)
        order = list(by_posture)
        rng.shuffle(order)
        bases = []
        while len(bases) < n:
            for name in order:
                group = by_posture[name]
                bases.append(group[len(bases) // len(order) % len(group)])
        chosen: list[Pose] = []
        seen: set[str] = set()
        for base in bases[:n]:
            for _attempt in range(20):
                variant = VariantId(base.id, rng.random() < 0.5, rng.randrange(1, 10**6))
                pose = self._variant(base, variant)
                if pose.id not in seen and not pose_problems(pose):
                    break
            seen.add(pose.id)
            chosen.append(pose)
        return chosen

    # -- search ------------------------------------------------------------------------------

    def search(self, query: str, k: int = 3, posture: str | None = None) -> list[PoseMatch]:
        """Best k poses for a free-text query: the asked-for posture first, then meaning."""
        if not query.strip():
            raise PoseBankError("empty pose query", 'describe a pose, e.g. "sitting reading"')
        if posture is not None and posture not in POSTURES:
            raise PoseBankError(
                f"unknown posture '{posture}'", f"use one of: {', '.join(POSTURES)}"
            )
        wanted = posture or lexicon.posture_of(query)
        semantic = self.index().similarities(query)
        query_words = lexicon.words(query)
        query_actions = lexicon.action_words(query)
        matches = []
        for pose in self.list():
            if posture is not None and pose.posture != posture:
                continue
            score = semantic.get(pose.id, 0.0)
            if wanted is not None and pose.posture == wanted:
                score += POSTURE_BONUS
            elif wanted is None and pose.posture == DEFAULT_POSTURE:
                score += DEFAULT_BONUS
            if pose.id not in self._tag_words:
                self._tag_words[pose.id] = _tag_words(pose)
            tag_words = self._tag_words[pose.id]
            score += TAG_BONUS * len(query_words & tag_words)
            score += ACTION_BONUS * len(query_actions & tag_words)
            matches.append(PoseMatch(pose, round(score, 4)))
        matches.sort(key=lambda m: (-m.score, m.pose.id))
        return matches[: max(k, 0)]

    def index(self) -> PoseIndex:
        index = self._index
        if index is None:
            from posebank.index import PoseIndex

            with self._lock:
                if self._index is None:
                    self._index = PoseIndex(self.state_dir, self.user_dir, self.list())
                index = self._index
        return index

    # -- adding ------------------------------------------------------------------------------

    def add(self, name: str, source: Path) -> Pose:
        from posebank.importer import import_pose

        builtin = {p.id for p in load_builtin()}
        pose = import_pose(name, Path(source), self.user_dir, reserved=builtin)
        self.reload()
        return self.get(pose.id)


def _tag_words(pose: Pose) -> set[str]:
    return lexicon.words(" ".join(t for t in pose.tags if t != pose.posture))
