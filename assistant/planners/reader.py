"""The embedder reader: words nobody listed, read by similarity (issue 27).

The rules stay the precise layer (counts, names, structure); what they leave unread, the words
that may say what someone does ("nodding off", "wolfing down") or how they hold themselves
("curled up", "slumped"), is compared by cosine similarity with the sentence embedder the pose
search already uses (all-MiniLM-L6-v2, offline) to what the lexicon and the pose bank say of each
action and posture: the lexicon's words for it, and the descriptions and tags of the poses that
carry it. A reading counts only above a threshold and by a margin over the next label, so an
unrelated word maps to nothing. Intents are read the same way, by similarity to a handful of
example phrasings each.

Everything is deterministic (the same text gives the same vectors) and cached: the labels'
vectors once per process, each phrase's vector once (bounded), so a warm process embeds only
the few phrases a request has that it has not seen.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from assistant.planners import vocabulary as v
from assistant.planners.tokens import Tokens

# Cosine similarity a phrase needs to the best label, and its lead over the next label. Tuned on
# evals/chat_cases/embedder_dev.yaml with the older case files as the false-positive check.
THRESHOLDS = {"action": (0.5, 0.1), "posture": (0.8, 0.1), "intent": (0.6, 0.08)}
MAX_CACHED = 4096
log = logging.getLogger("anime")

# A handful of example phrasings per intent; only "list" is acted on (library questions).
INTENT_EXAMPLES = {
    "list": (
        "who are my characters", "list my characters", "what characters do I have",
        "which characters are there", "who is in my library", "what is in my library",
        "show me my characters", "what's in my roster",
    ),
    "show": (
        "show me the last pictures", "what did you just make", "open the latest images",
        "show my recent results",
    ),
    "draw": (
        "draw her sitting", "make three pictures at the beach", "a picture of her waving",
        "give me two images standing in the rain",
    ),
    "find_pose": ("find a pose for sitting", "which poses are there", "search poses for jumping"),
}  # fmt: skip


Encode = Callable[[list[str]], Any]  # texts → a (n, d) array of unit vectors


@dataclass(frozen=True)
class Reading:
    label: str
    score: float
    margin: float


def _action_texts() -> dict[str, set[str]]:
    """Each action's words in the lexicon, and the descriptions and tags of the poses tagged with
    it in the pose bank."""
    texts: dict[str, set[str]] = {}
    for word, action in v.ACTION_WORDS.items():
        texts.setdefault(action, {action}).add(word)
    for pose in _builtin_poses():
        for action in set(pose.tags) & set(texts):
            texts[action].update(pose.descriptions)
    return texts


def _posture_texts() -> dict[str, set[str]]:
    """Each posture's named positions and verbs in the lexicon (its places are scene nouns)."""
    from posebank.lexicon import NAMED, POSTURE_CUES, VERB

    return {
        posture: {posture, *cues.get(VERB, ()), *cues.get(NAMED, ())}
        for posture, cues in POSTURE_CUES.items()
    }


def _builtin_poses() -> list[Any]:
    from posebank.library import load_builtin

    return list(load_builtin())


class Reader:
    """Reads a phrase as one of a kind's labels by cosine similarity, or as nothing.

    `encode`, or `load` (called once, on the first phrase to read, so a request the rules read
    whole never loads the embedder): texts → unit vectors. Where `load` fails (no embedder
    installed) the reader reads nothing and the rules read alone."""

    def __init__(
        self,
        encode: Encode | None = None,
        labels: dict[str, dict[str, Iterable[str]]] | None = None,
        load: Callable[[], Encode] | None = None,
    ) -> None:
        self._encode = encode
        self._load = load
        self._given_labels = labels
        self._labels: dict[str, tuple[list[str], Any]] | None = None
        self._cache: dict[str, Any] = {}
        self._lock = threading.RLock()
        self.failed = False

    def _ready(self) -> bool:
        with self._lock:
            if self._labels is None and not self.failed:
                try:
                    self._build()
                # The model's libraries are the boundary: a missing package, a damaged weights
                # file (safetensors' SafetensorError is a bare Exception) or a broken tokenizer
                # each turn the reader off, never the request.
                except Exception as error:  # noqa: BLE001
                    self._give_up(error)
            return self._labels is not None

    def _give_up(self, error: Exception) -> None:
        self.failed, self._labels = True, None
        reason = str(error).strip().splitlines()[0] if str(error).strip() else ""
        log.warning(
            "the embedder reader is off (%s%s); the rules plan alone",
            type(error).__name__,
            f": {reason}" if reason else "",
        )

    def _build(self) -> None:
        import numpy as np

        encode = self._encode or (self._load() if self._load else None)
        if encode is None:
            raise ImportError("no embedder")
        self._encode = encode
        labels = self._given_labels or {
            "action": _action_texts(),
            "posture": _posture_texts(),
            "intent": INTENT_EXAMPLES,
        }
        built = {}
        for kind, texts in labels.items():
            names = [name for name, group in texts.items() for _ in sorted(set(group))]
            flat = [text for group in texts.values() for text in sorted(set(group))]
            built[kind] = (names, np.asarray(encode(flat), dtype="float32"))
        self._labels = built

    def vectors(self, phrases: Sequence[str]) -> Any:
        """Unit vectors of the phrases, each embedded once per process (bounded)."""
        import numpy as np

        assert self._encode is not None
        with self._lock:
            new = list(dict.fromkeys(p for p in phrases if p not in self._cache))
            if new:
                if len(self._cache) + len(new) > MAX_CACHED:
                    self._cache.clear()
                for phrase, vector in zip(new, self._encode(new), strict=True):
                    self._cache[phrase] = np.asarray(vector, dtype="float32")
            return np.stack([self._cache[p] for p in phrases])

    def readings(self, kind: str, phrases: Sequence[str]) -> list[Reading | None]:
        """Each phrase's label of `kind`, or None below the threshold or the margin."""
        if not phrases or not self._ready():
            return [None] * len(phrases)
        assert self._labels is not None
        names, matrix = self._labels[kind]
        threshold, margin = THRESHOLDS[kind]
        try:
            scores = self.vectors(phrases) @ matrix.T
        except Exception as error:  # noqa: BLE001 — the model's libraries, as in _ready
            with self._lock:
                self._give_up(error)
            return [None] * len(phrases)
        out: list[Reading | None] = []
        for row in scores:
            best: dict[str, float] = {}
            for name, score in zip(names, row.tolist(), strict=True):
                best[name] = max(best.get(name, -1.0), score)
            ranked = sorted(best.items(), key=lambda item: (-item[1], item[0]))
            (label, top), runner = ranked[0], ranked[1][1] if len(ranked) > 1 else -1.0
            ok = top >= threshold and top - runner >= margin
            out.append(Reading(label, top, top - runner) if ok else None)
        return out

    def read(self, kind: str, phrase: str) -> str | None:
        (reading,) = self.readings(kind, [phrase])
        return reading.label if reading else None


def _minilm() -> Encode:
    from posebank.index import embed_texts, load_embedder

    embedder = load_embedder()
    return lambda texts: embed_texts(embedder, texts)


_SHARED = Reader(load=_minilm)


def shared_reader() -> Reader:
    """The process's reader over MiniLM: its model and label vectors load once, when first
    needed, and serve every planner of the process (the warm server's requests)."""
    return _SHARED


# Words after which a word is a thing or a place ("on a bench", "at night", "her book"), never
# what someone does; the reader does not read them.
THING_AFTER = v.SCENE_PREPOSITIONS | {"a", "an", "the", "her", "his", "their", "my", "its",
                                      "some", "of", "for", "your", "our"}  # fmt: skip
# Particles that end a phrasal verb ("nodding off", "curled up", "wolfing down").
PARTICLES = {"off", "down", "up", "out", "over", "around", "away", "back"}
MAX_WORDS = 3
# Participles that say how or what, not what someone does or how they stand.
NOT_DOING = {"looking", "wearing", "holding", "having", "being", "getting", "going", "doing",
             "making", "trying", "feeling", "dressed", "named", "called", "colored", "haired",
             "themed", "styled", "shaped", "inspired", "evening", "morning", "ceiling",
             "building", "clothing", "something", "nothing", "everything", "wedding"}  # fmt: skip


def _verb_form(word: str) -> bool:
    """A participle ("nodding", "slumped"): the forms that say what someone does or how they
    hold themselves. Nouns are left to the scene ("tea", "bench", "night" say where or with what,
    and the pose bank's descriptions would pull them toward the actions done with them)."""
    return len(word) > 4 and word.endswith(("ing", "ed")) and word not in NOT_DOING


def _phrases(tokens: Tokens, start: int, stop: int) -> list[tuple[int, int, str]]:
    """(start, stop, text) of each unread phrase that could say an action or a posture: a
    participle, with a particle or its object ("nodding off", "sipping tea"), or a state
    ("deep in prayer", "lost in thought")."""
    words = tokens.words
    found = []
    for i in range(start, stop):
        word = words[i]
        if not tokens.free(i) or not word.isalpha() or word in v.FILLERS:
            continue
        if i > start and words[i - 1] in THING_AFTER:
            continue
        state = i + 2 < stop and words[i + 1] == "in" and tokens.free(i + 2) and tokens.free(i + 1)
        if state and words[i + 2] not in THING_AFTER and words[i + 2] not in v.FILLERS:
            found.append((i, i + 3, " ".join(words[i : i + 3])))
        if not _verb_form(word):
            continue
        for j in range(i + 1, min(i + MAX_WORDS, stop) + 1):
            if not tokens.free(j - 1) or words[j - 1] in v.CLAUSE_BREAKS:
                break
            last = words[j - 1]
            if j == i + 1 or last in PARTICLES or not (last in v.FILLERS or last in THING_AFTER):
                found.append((i, j, " ".join(words[i:j])))
    return found


def take_similar(tokens: Tokens, reader: Reader | None) -> None:
    """In each clause the rules left without an action (then a posture), the unread phrase most
    like one, if it is like one by the threshold and the margin."""
    if reader is None:
        return
    edges = [0, *(m.start for m in tokens.found("break")), len(tokens.words)]
    for start, stop in zip(edges, edges[1:], strict=False):
        for kind in ("action", "posture"):
            if tokens.found(kind, start, stop):
                continue
            phrases = _phrases(tokens, start, stop)
            readings = reader.readings(kind, [text for _, _, text in phrases])
            scored = [(r.score, p) for p, r in zip(phrases, readings, strict=True) if r]
            if scored:
                score, (i, j, text) = max(scored, key=lambda item: (item[0], -item[1][0]))
                label = next(r.label for r in readings if r and r.score == score)
                tokens.claim(i, j, kind, label)
