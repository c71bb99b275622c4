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
    kind: PlannerKind,
    host: str,
    model: str,
    notice: Callable[[str], None],
    timeout: float = 120.0,
) -> Planner:
    """The planner for `--planner KIND`; `auto` falls back to the rules with a one-line notice,
    at the start or whenever Ollama fails later. `timeout` bounds each planning attempt.

    `ollama` raises `OllamaUnavailable` (a `UserError` with the fix) instead of falling back.
    """
    if kind == "rules":
        return RulePlanner()
    import time

    import ollama

    from assistant.planners.ollama_planner import (
        Deadline,
        FallbackPlanner,
        OllamaPlanner,
        OllamaUnavailable,
        check_available,
        fallback_notice,
    )

    started = time.monotonic()
    client = ollama.Client(host=host, timeout=timeout)
    try:
        check_available(client, host, model, Deadline(timeout, started))
    except OllamaUnavailable as error:
        if kind == "ollama":
            raise
        notice(fallback_notice(error))
        return RulePlanner()
    planner = OllamaPlanner(client, model, host, timeout=timeout, started=started)
    return planner if kind == "ollama" else FallbackPlanner(planner, RulePlanner(), notice)
