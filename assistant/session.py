"""Conversation memory: the last generating call and its images, for "3 more of that"."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from assistant.planners.base import PlannedCall, PreviousImage, PreviousTurn

GENERATING_TOOLS = ("generate", "batch")


@dataclass
class Session:
    previous: PreviousTurn | None = None

    def remember(self, call: PlannedCall, outputs: list[Any]) -> None:
        """Keep the call and its images (seed, pose) if it generated anything."""
        if call.tool not in GENERATING_TOOLS:
            return
        images = [
            PreviousImage(
                seed=record.seed,
                pose_id=record.pose.id,
                pose_tags=list(record.pose.tags),
                character=record.character,
            )
            for record in outputs
        ]
        self.previous = PreviousTurn(call=call, images=images)
