"""Run a plan's calls through the toolbox; one call's user error does not stop the others."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from assistant.planners.base import Plan, PlannedCall
from tools.errors import UserError
from tools.generation.toolbox import TOOLS, ToolResult

if TYPE_CHECKING:
    from tools.generation.runtime import Runtime


@dataclass
class CallOutcome:
    call: PlannedCall
    result: ToolResult | None = None
    error: UserError | None = None


def expected_images(plan: Plan) -> int:
    """How many images the plan will render, for the progress bar."""
    total = 0
    for call in plan.calls:
        if call.tool == "generate":
            total += call.args["count"]
        elif call.tool == "batch":
            total += call.args["count"] * len((call.resolved or {}).get("characters") or [1])
    return total


def execute(
    plan: Plan, runtime: Runtime, on_image: Callable[[Any], None] | None = None
) -> list[CallOutcome]:
    outcomes = []
    for call in plan.calls:
        tool = TOOLS[call.tool]
        args = tool.args_model.model_validate(call.args)
        try:
            outcomes.append(CallOutcome(call, result=tool.run(runtime, args, on_image)))
        except UserError as error:  # PoseBankError too
            outcomes.append(CallOutcome(call, error=error))
    return outcomes
