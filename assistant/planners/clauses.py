"""Cut a request into clauses and read who gets what: per-character parts and shared parts.

A clause ends at a comma, 'and', 'then', ';', 'also', 'plus' ... Clauses that name characters
start a part ("sakura sitting on a bench"); a clause of names alone joins the next ("sakura and
yuki both at the beach"); a clause that names no one adds to the part before it ("2 images"),
or to everyone when it says 'both', 'each' or comes before any name ("in a snowy forest, aoi
kneeling and momo standing"). A clause after 'no wait', 'actually', 'I mean' replaces what the
part said before it; 'not', 'without', 'instead of' drop the pose or the scene words after them.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from assistant.planners import vocabulary as v
from assistant.planners.tokens import Tokens


@dataclass
class Attrs:
    """What a clause says about how to draw: count, posture, actions, scene, what to leave out."""

    count: int | None = None
    posture: str | None = None
    actions: list[str] = field(default_factory=list)
    random: bool = False
    scenes: list[str] = field(default_factory=list)
    remove: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return self == Attrs()

    @property
    def pose(self) -> str | None:
        return " ".join(([self.posture] if self.posture else []) + self.actions) or None

    def add(self, other: Attrs, correct: bool = False) -> None:
        """Take in a later clause of the same part; a correction replaces, else the first wins."""
        if other.count is not None and (correct or self.count is None):
            self.count = other.count
        if other.posture and (correct or self.posture is None):
            self.posture = other.posture
        if other.actions:
            self.actions = other.actions if correct else [*self.actions, *other.actions]
        self.random = (self.random or other.random) and not (self.posture or self.actions)
        if correct and other.scenes and self.scenes:
            self.scenes = self.scenes[:-1]
        self.scenes = list(dict.fromkeys([*self.scenes, *other.scenes]))
        self.remove = [*self.remove, *other.remove]


def merged(*layers: Attrs) -> Attrs:
    """General to specific: each later layer's count and pose win; scenes add up."""
    out = Attrs()
    for layer in layers:
        out.count = layer.count if layer.count is not None else out.count
        out.posture = layer.posture or out.posture
        out.actions = layer.actions or out.actions
        out.random = layer.random or (out.random and not (layer.posture or layer.actions))
        out.scenes = list(dict.fromkeys([*out.scenes, *layer.scenes]))
        out.remove = [*out.remove, *layer.remove]
    out.scenes = [s for s in out.scenes if not any(word in s.split() for word in out.remove)]
    return out


@dataclass
class Part:
    names: list[str]
    everyone: bool = False
    attrs: Attrs = field(default_factory=Attrs)
    own: dict[str, Attrs] = field(default_factory=dict)  # a member named again on its own


@dataclass
class Clause:
    start: int
    stop: int
    names: list[str]
    everyone: bool
    correct: bool
    shared: bool
    attrs: Attrs
    each_count: int | None = None  # "two pictures each of sakura and mei", "rin and mei 2 each"
    # "rin and mei 2 each": a count after the names closes the group; "2 each of rin" opens it.
    closes: bool = False
    # "..., one of kaede": a count before the name starts a part of its own.
    opens: bool = False


def _count_of(tokens: Tokens, start: int, stop: int) -> int | None:
    counts = tokens.found("count", start, stop)
    best = next((m for m in counts if m.value[1]), counts[0] if counts else None)
    return best.value[0] if best else None


def _negated(tokens: Tokens, start: int, stop: int) -> tuple[set[int], list[str], set[int]]:
    """Pose mentions a negator drops, the scene words it removes, the token positions it takes."""
    dropped: set[int] = set()
    removed: list[str] = []
    taken: set[int] = set()
    posed = [m for m in tokens.mentions if m.kind in ("posture", "action", "random")]
    for negator in tokens.found("negate", start, stop):
        after = [m for m in tokens.mentions if negator.stop <= m.start < stop and m.kind != "break"]
        first = min(after, key=lambda m: m.start, default=None)
        gap = range(negator.stop, first.start if first else stop)
        if first in posed and all(tokens.words[i] in v.FILLERS for i in gap):
            dropped.add(first.start)
            continue
        for i in gap:
            if tokens.free(i):
                taken.add(i)
                if tokens.words[i] not in v.FILLERS and tokens.words[i] not in v.SCENE_PREPOSITIONS:
                    removed.append(tokens.words[i])
    return dropped, removed, taken


def scene_of(tokens: Tokens, start: int, stop: int, skip: set[int] | None = None) -> list[str]:
    """Free tokens in runs, each run trimmed of filler at both ends."""
    skip = skip or set()
    spans: list[list[str]] = [[]]
    for i in range(start, stop):
        if tokens.used[i] or i in skip:
            if spans[-1]:
                spans.append([])
        else:
            spans[-1].append(tokens.words[i])
    kept = []
    for span in spans:
        while span and (span[0] in v.FILLERS and span[0] not in v.SCENE_PREPOSITIONS):
            span = span[1:]
        while span and (span[-1] in v.FILLERS or span[-1] in v.SCENE_PREPOSITIONS):
            span = span[:-1]
        if span and not all(w in v.FILLERS for w in span):
            kept.append(" ".join(span))
    return list(dict.fromkeys(kept))


def cut(tokens: Tokens) -> list[Clause]:
    breaks = [m for m in tokens.found("break")]
    edges = [0] + [i for m in breaks for i in (m.start, m.stop)] + [len(tokens.words)]
    clauses = []
    for start, stop in zip(edges[::2], edges[1::2], strict=True):
        if start >= stop:
            continue
        dropped, removed, taken = _negated(tokens, start, stop)
        postures = [m for m in tokens.found("posture", start, stop) if m.start not in dropped]
        actions = [m for m in tokens.found("action", start, stop) if m.start not in dropped]
        attrs = Attrs(
            count=_count_of(tokens, start, stop),
            posture=postures[0].value if postures else None,
            actions=list(dict.fromkeys(m.value for m in actions)),
            random=bool(tokens.found("random", start, stop)),
            scenes=scene_of(tokens, start, stop, taken),
            remove=removed,
        )
        attrs.random = attrs.random and not attrs.pose
        words = set(tokens.words[start:stop])
        names = [m.value for m in tokens.found("name", start, stop)]
        everyone = bool(tokens.found("all", start, stop))
        names = list(dict.fromkeys(names))
        each = bool(words & {"each", "apiece", "per"})
        each_count, attrs.count = (attrs.count, None) if each else (None, attrs.count)
        counts, named_at = tokens.found("count", start, stop), tokens.found("name", start, stop)
        count_first = bool(counts) and (not named_at or counts[0].start < named_at[0].start)
        closes = each and bool(counts) and not count_first
        clauses.append(Clause(
            start, stop, names, everyone,
            correct=bool(tokens.found("correct", start, stop)),
            shared=bool(words & v.SHARED_WORDS) and not names and not everyone,
            attrs=attrs,
            each_count=each_count,
            closes=closes,
            opens=count_first and not each and bool(named_at),
        ))  # fmt: skip
    return clauses


def parts_of(tokens: Tokens) -> tuple[list[Part], Attrs, Attrs]:
    """The parts of a request, and what applies to all of them (said before, said after)."""
    before, after = Attrs(), Attrs()
    parts: list[Part] = []
    targets: list[Attrs] = [before]
    name_only = False
    correct = False
    shared_since = False
    each: list[tuple[Part | None, int]] = []  # an "each" count and the part it was said of
    for clause in cut(tokens):
        correct = correct or clause.correct
        named = clause.names or clause.everyone
        if clause.each_count is not None and not named:
            each.append((parts[-1] if parts else None, clause.each_count))
        if not named and clause.attrs.empty and clause.each_count is None:
            continue
        if named and correct and parts:
            parts[-1].names, parts[-1].everyone = clause.names, clause.everyone
            parts[-1].attrs.add(clause.attrs, correct=True)
            targets, name_only = [parts[-1].attrs], False
        elif named and name_only and parts[-1].attrs.empty and not clause.opens:
            parts[-1].names += [n for n in clause.names if n not in parts[-1].names]
            parts[-1].everyone = parts[-1].everyone or clause.everyone
            parts[-1].attrs.add(clause.attrs)
            targets = [parts[-1].attrs]
        elif named and (group := _group_of(parts, clause.names)):
            if clause.each_count is not None:
                each.append((group, clause.each_count))
            for name in clause.names:
                group.own.setdefault(name, Attrs()).add(clause.attrs)
            targets = [group.own[name] for name in clause.names]
        elif named:
            parts.append(Part(list(clause.names), clause.everyone, replace(clause.attrs)))
            targets = [parts[-1].attrs]
        elif parts and (clause.shared or shared_since):
            after.add(clause.attrs, correct)
            shared_since = True
        else:
            for target in targets:
                target.add(clause.attrs, correct)
        if named:
            shared_since = False
            if clause.each_count is not None and not (each and each[-1][0] is parts[-1]):
                each.append((parts[-1], clause.each_count))
        name_only = bool(named) and clause.attrs.empty and not clause.closes
        correct = False
    _apply_each(each, before)
    return parts, before, after


def _apply_each(each: list[tuple[Part | None, int]], before: Attrs) -> None:
    """An "each" count said of a group is that group's count ("rin and mei 2 each, and yuki 3");
    said of one character or of no one, it is everyone's count unless a part says its own
    ("sakura sitting, yuki standing, 2 each"): the lowest layer, so it never leaks over one."""
    for part, count in each:
        if part is not None and (part.everyone or len(part.names) > 1):
            if part.attrs.count is None:
                part.attrs.count = count
        elif before.count is None:
            before.count = count


def _group_of(parts: list[Part], names: list[str]) -> Part | None:
    """The earlier group of several characters that these names all belong to."""
    for part in parts:
        if len(part.names) > 1 and set(names) <= set(part.names):
            return part
    return None
