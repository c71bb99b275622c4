"""Planners turn a request into validated tool calls: `RulePlanner` and `OllamaPlanner`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from assistant.planners.base import Plan, PlannedCall, Planner, PlannerContext, PoseRef
from assistant.planners.rules import RulePlanner

PlannerKind = Literal["auto", "ollama", "rules"]

__all__ = [
    "Plan",
    "PlannedCall",
    "Planner",
    "PlannerContext",
    "PoseRef",
    "PlannerKind",
    "RulePlanner",
    "choose_planner",
]


def choose_planner(
    kind: PlannerKind, host: str, model: str, notice: Callable[[str], None]
) -> Planner:
    """The planner for `--planner KIND`; `auto` falls back to the rules with a one-line notice.

    `ollama` raises `OllamaUnavailable` (a `UserError` with the fix) instead of falling back.
    """
    if kind == "rules":
        return RulePlanner()
    import ollama

    from assistant.planners.ollama_planner import OllamaPlanner, OllamaUnavailable, check_available

    client = ollama.Client(host=host, timeout=120)
    try:
        check_available(client, host, model)
    except OllamaUnavailable as error:
        if kind == "ollama":
            raise
        notice(f"notice: {error.message} ({error.hint}); using the built-in rule planner")
        return RulePlanner()
    return OllamaPlanner(client, model, host)
