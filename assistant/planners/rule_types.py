"""The types `follow_ups` shares with `rules`, one level below both: a parsed `Request`, and
the rule planner as follow-ups use it (a `Protocol`, so nothing here imports `rules`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from assistant.planners.base import PlannerContext
from assistant.planners.clauses import Attrs, Part, merged
from assistant.planners.resolve import Resolved


class RulePlanner(Protocol):
    """`assistant.planners.rules.RulePlanner`, as far as a follow-up needs it."""

    def add(
        self, resolved: Resolved, tool: str, args: dict[str, Any], context: PlannerContext
    ) -> None: ...


@dataclass
class Request:
    """A parsed request: its parts, what they share, and the words that refer elsewhere."""

    parts: list[Part] = field(default_factory=list)
    before: Attrs = field(default_factory=Attrs)
    after: Attrs = field(default_factory=Attrs)
    seed: int | None = None
    image_ref: int | None = None
    excluded: list[str] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)
    bad_counts: list[int] = field(default_factory=list)  # counts said out of range
    notes: list[str] = field(default_factory=list)
    pronoun: bool = False

    @property
    def characters(self) -> list[str]:
        return list(dict.fromkeys(n for part in self.parts for n in part.names))

    @property
    def everyone(self) -> bool:
        return any(part.everyone for part in self.parts)

    @property
    def named(self) -> bool:
        return bool(self.characters or self.everyone)

    def whole(self) -> Attrs:
        """Everything said, as one part: what a follow-up or a single request uses."""
        layers = [self.before]
        for part in self.parts:
            layers += [part.attrs, *part.own.values()]
        return merged(*layers, self.after)

    def entries(self, characters: list[str]) -> list[tuple[list[str] | str, Attrs]]:
        """(who, how) for each character, or "all" for a whole-cast part."""
        out: list[tuple[list[str] | str, Attrs]] = []
        for part in self.parts:
            if part.everyone:
                who = [c for c in characters if c not in self.excluded] if self.excluded else "all"
                out.append((who, merged(self.before, part.attrs, self.after)))
            for name in part.names:
                own = part.own.get(name, Attrs())
                out.append(([name], merged(self.before, part.attrs, own, self.after)))
        return out
