"""Conversation memory: the last generating turn and its images, for "3 more of that", the
turn before it, for "undo that", and who the last turn was about, for "her" and "them"."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from assistant.planners.base import PlannedCall, PreviousImage, PreviousTurn

GENERATING_TOOLS = ("generate", "batch")


def _images(outputs: list[Any]) -> list[PreviousImage]:
    return [
        PreviousImage(
            seed=record.seed,
            pose_id=record.pose.id,
            pose_tags=list(record.pose.tags),
            character=record.character,
        )
        for record in outputs
    ]


def _names(call: PlannedCall) -> list[str]:
    if call.tool == "generate":
        return [call.args["character"]]
    if call.tool == "batch":
        return list((call.resolved or {}).get("characters") or [])
    if call.tool == "create_character" and call.args.get("name"):
        return [call.args["name"]]
    return []


@dataclass
class Session:
    previous: PreviousTurn | None = None
    mentioned: list[str] = field(default_factory=list)

    def remember(self, call: PlannedCall, outputs: list[Any]) -> None:
        """Keep one call and its images (seed, pose) as a turn of its own."""
        self.remember_turn([(call, outputs)])

    def remember_turn(self, made: list[tuple[PlannedCall, list[Any]]]) -> None:
        """Keep a turn's generating calls and their images; remember who it was about."""
        names = [name for call, _ in made for name in _names(call)]
        if names:
            self.mentioned = list(dict.fromkeys(names))
        generating = [(call, outputs) for call, outputs in made if call.tool in GENERATING_TOOLS]
        if not generating:
            return
        self.previous = PreviousTurn(
            call=generating[-1][0],
            images=[image for _, outputs in generating for image in _images(outputs)],
            calls=tuple(call for call, _ in generating),
            before=self.previous,
        )
