"""One conversation: plan a request, run it with a progress bar, answer, remember the turn."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

from assistant.context import planner_context
from assistant.executor import CallOutcome, execute, expected_images
from assistant.planners.base import Plan, Planner
from assistant.session import Session

if TYPE_CHECKING:
    from rich.console import Console

    from tools.generation.runtime import Runtime
    from tools.settings import Settings


@dataclass
class Turn:
    plan: Plan
    outcomes: list[CallOutcome] = field(default_factory=list)
    text: str = ""
    images: list[Any] = field(default_factory=list)


class Conversation:
    def __init__(self, settings: Settings, planner: Planner) -> None:
        self.settings = settings
        self.planner = planner
        self.session = Session()
        # The studio server streams a turn through these (the plan, then each image).
        self.on_plan: Callable[[Plan, int], None] | None = None
        self.on_image: Callable[[Any], None] | None = None

    @cached_property
    def runtime(self) -> Runtime:
        from tools.generation.runtime import Runtime

        return Runtime(self.settings)

    def plan(self, text: str) -> Plan:
        context = planner_context(self.runtime, self.session.previous)
        context.mentioned = list(self.session.mentioned)
        return self.planner.plan(text, context)

    def run(self, text: str, console: Console | None) -> Turn:
        """Plan and execute; Ctrl-C (KeyboardInterrupt) propagates to the caller to cancel."""
        from assistant import reply

        plan = self.plan(text)
        total = expected_images(plan)
        if total and self._should_unload_llm():
            self.planner.unload()  # type: ignore[attr-defined]
        outcomes = self._execute(plan, total, console)
        self.session.remember_turn(
            [(o.call, o.result.outputs) for o in outcomes if o.result is not None]
        )
        paths = reply.image_paths(outcomes)
        sheet = reply.contact_sheet(paths, self.settings.paths.output / "contact-sheets")
        text = "\n".join(part for part in (plan.reply, reply.answer(outcomes, sheet)) if part)
        images = [record for o in outcomes if o.result for record in o.result.outputs]
        return Turn(plan, outcomes, text, images)

    def _execute(self, plan: Plan, total: int, console: Console | None) -> list[CallOutcome]:
        if self.on_plan is not None:
            self.on_plan(plan, total)
        if not total or console is None:
            return execute(plan, self.runtime, on_image=self.on_image)
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

        columns = ("{task.description}", BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        with Progress(*columns, console=console, transient=True) as progress:
            task = progress.add_task("rendering", total=total)
            return execute(plan, self.runtime, on_image=lambda _: progress.advance(task))

    def _should_unload_llm(self) -> bool:
        """Only a planner that holds an Ollama model can free it (the rule planner has none)."""
        if not hasattr(self.planner, "unload"):
            return False
        from tools.engine.gpu_memory import should_unload_llm, smallest_gpu_memory_gb

        setting = self.settings.llm.unload_before_generate
        return should_unload_llm(setting, smallest_gpu_memory_gb() if setting == "auto" else None)
