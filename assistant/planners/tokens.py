"""The rule planner's token list: words as typed and normalised, and which ones a pass claimed.

Every extraction pass claims the tokens it understands and records what it found as a
`Mention` at a token position, so later steps can split the request into clauses by position.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from typing import Any

from assistant.planners import vocabulary as v

TOKEN = re.compile(r"#?[A-Za-z0-9][A-Za-z0-9_'’\-]*|[,.;:!?&()\[\]—–×]|(?<!\S)-(?!\S)")
PUNCTUATION = set(",.;:!?&()[]—–-")
HONORIFIC = re.compile(r"-(chan|kun|san|sama|senpai|sensei|tan|chi)$")


@dataclass(frozen=True)
class Mention:
    """Something a pass understood: its kind ('name', 'count', 'posture', ...) and value."""

    start: int
    kind: str
    value: Any = None
    end: int = -1  # one past the last token; -1 means start + 1

    @property
    def stop(self) -> int:
        return self.start + 1 if self.end < 0 else self.end


@dataclass
class Tokens:
    words: list[str]
    original: list[str]
    used: list[bool]
    mentions: list[Mention] = field(default_factory=list)

    @classmethod
    def of(cls, text: str) -> Tokens:
        # NFKC first: full-width letters and digits ("ｙｕｋｉ", "３") are their plain forms, not
        # characters TOKEN skips.
        normal = unicodedata.normalize("NFKC", text)
        original = [t.replace("’", "'") for t in TOKEN.findall(normal)]
        words = [normal_word(t.lower()) for t in original]
        return cls(words, original, [w in PUNCTUATION for w in words])

    @property
    def names(self) -> set[int]:
        """Positions claimed by character names, known or not."""
        return {
            i
            for m in self.mentions
            if m.kind in ("name", "unknown", "except")
            for i in range(m.start, m.stop)
        }

    def free(self, i: int) -> bool:
        return 0 <= i < len(self.words) and not self.used[i]

    def claim(self, start: int, stop: int, kind: str | None = None, value: Any = None) -> None:
        for j in range(start, stop):
            self.used[j] = True
        if kind:
            self.mentions.append(Mention(start, kind, value, stop))

    def take_phrases(self, phrases: dict[str, str] | tuple[str, ...]) -> list[tuple[int, str]]:
        """Claim every free occurrence of each phrase, longest first; (start, phrase) found."""
        found = []
        for phrase in sorted(phrases, key=lambda p: -len(p.split())):
            parts = phrase.split()
            for i in range(len(self.words) - len(parts) + 1):
                span = range(i, i + len(parts))
                if all(self.free(j) for j in span) and self.words[i : i + len(parts)] == parts:
                    self.claim(i, i + len(parts))
                    found.append((i, phrase))
        return sorted(found)

    def found(self, kind: str, start: int = 0, stop: int | None = None) -> list[Mention]:
        stop = len(self.words) if stop is None else stop
        return sorted(
            (m for m in self.mentions if m.kind == kind and start <= m.start < stop),
            key=lambda m: m.start,
        )

    def text(self) -> str:
        return " ".join(self.words)


def normal_word(word: str) -> str:
    """Drop a possessive 's; spell out a mistyped vocabulary word ('sittin', 'standng')."""
    if word == "×":
        return "x"
    if len(word) > 3:
        word = re.sub(r"'s$", "", word)
    return v.known_spelling(word)


def name_forms(word: str) -> tuple[str, ...]:
    """The word as typed, then without an honorific ('sakura-chan' is sakura)."""
    bare = HONORIFIC.sub("", word)
    return (word, bare) if bare != word else (word,)


def number_word(words: list[str], i: int) -> tuple[int, int] | None:
    """(value, tokens used) for a number written in words at i ("twenty five", "twenty-five")."""
    parts = words[i].split("-")
    if len(parts) == 2 and parts[0] in v.TENS and parts[1] in v.UNITS:
        return v.TENS[parts[0]] + v.UNITS[parts[1]], 1
    word = words[i]
    if word in v.TENS:
        if i + 1 < len(words) and words[i + 1] in v.UNITS and 0 < v.UNITS[words[i + 1]] < 10:
            return v.TENS[word] + v.UNITS[words[i + 1]], 2
        return v.TENS[word], 1
    if word in v.UNITS:
        return v.UNITS[word], 1
    if word.isdigit():
        return int(word), 1
    return None


def vocabulary_word(word: str) -> bool:
    return (
        word in v.FILLERS
        or word in v.POSTURE_WORDS
        or word in v.ACTION_WORDS
        or word in v.UNITS
        or word in v.TENS
        or word in v.ORDINALS
        or word in v.COUNT_NOUNS
        or word in v.CLAUSE_WORDS
    )
