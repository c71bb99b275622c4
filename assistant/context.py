"""Build a `PlannerContext` from the runtime: character names, a pose lookup, the last turn."""

from __future__ import annotations

from typing import TYPE_CHECKING

from assistant.planners.base import PlannerContext, PoseRef, PreviousTurn

if TYPE_CHECKING:
    from tools.generation.runtime import Runtime


def pose_lookup(runtime: Runtime):
    """`find_pose(query) -> PoseRef | None` over the pose bank."""
    from posebank.errors import PoseBankError

    def find_pose(query: str) -> PoseRef | None:
        try:
            matches = runtime.poses.search(query, k=1)
        except PoseBankError:
            return None
        if not matches:
            return None
        pose = matches[0].pose
        return PoseRef(id=pose.id, tags=list(pose.tags))

    return find_pose


def planner_context(runtime: Runtime, previous: PreviousTurn | None = None) -> PlannerContext:
    names = [character.name for character in runtime.characters.list()]
    return PlannerContext(characters=names, find_pose=pose_lookup(runtime), previous=previous)
