"""What every planner shares: the plan it returns, the context it reads, and the protocol.

Planners are pure: they see the character names, a pose lookup (`PoseRef`, the one shape that
image records carry too) and the previous turn through a `PlannerContext`, and return a `Plan` of
validated tool calls. Nothing here touches a GPU.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from pydantic import BaseModel

from posebank.pose import POSTURES
from tools.generation.specs import PoseRef


class PlannedCall(BaseModel):
    tool: str
    args: dict[str, Any]
    resolved: dict[str, Any] | None = None

    def contract(self) -> dict[str, Any]:
        shape: dict[str, Any] = {"tool": self.tool, "args": self.args}
        if self.resolved is not None:
            shape["resolved"] = self.resolved
        return shape


class Plan(BaseModel):
    planner: str
    reply: str
    calls: list[PlannedCall] = []

    def contract(self) -> dict[str, Any]:
        """The `--plan-only --json` shape of the contract."""
        return {
            "planner": self.planner,
            "reply": self.reply,
            "calls": [call.contract() for call in self.calls],
        }


@dataclass(frozen=True)
class PreviousImage:
    """One image of the previous turn, for "the second one again"."""

    seed: int | None
    pose_id: str | None
    pose_tags: list[str]
    character: str


@dataclass(frozen=True)
class PreviousTurn:
    """The last generating turn and what it made, for "3 more of that".

    `call` is its last generating call and `calls` all of them (empty means just `call`);
    `images` are the images of all of them in order; `before` is the turn before, for "undo".
    """

    call: PlannedCall
    images: list[PreviousImage] = field(default_factory=list)
    calls: tuple[PlannedCall, ...] = ()
    before: PreviousTurn | None = None

    @property
    def all_calls(self) -> list[PlannedCall]:
        return list(self.calls) or [self.call]


FindPose = Callable[[str], PoseRef | None]


@dataclass
class PlannerContext:
    characters: list[str]
    find_pose: FindPose
    postures: tuple[str, ...] = POSTURES
    previous: PreviousTurn | None = None
    # The characters the last turn drew or created, for "her", "them", "both of them".
    mentioned: list[str] = field(default_factory=list)


class Planner(Protocol):
    name: str

    def plan(self, text: str, context: PlannerContext) -> Plan: ...
