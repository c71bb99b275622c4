"""Progress while images render: one bar over all denoising steps, with ETA, on stderr."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tools.generate import ImageSpec, OutputRecord
    from tools.runtime import Runtime


def render_with_progress(
    runtime: Runtime, specs: list[ImageSpec], quiet: bool = False
) -> list[OutputRecord]:
    """Produce every spec in this process, showing per-image progress unless quiet or piped."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    console = Console(stderr=True)
    show = not quiet and sys.stderr.isatty()
    records = []
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} steps"),
        TimeRemainingColumn(),
        console=console,
        disable=not show,
        transient=True,
    ) as progress:
        steps = runtime.settings.output.steps
        task = progress.add_task("loading models", total=steps * len(specs))
        for number, spec in enumerate(specs, start=1):
            done_before = (number - 1) * steps
            progress.update(task, description=f"image {number}/{len(specs)}")

            def on_step(step: int, total: int, base: int = done_before) -> None:
                progress.update(task, completed=base + min(step, total))

            records.append(runtime.generator.produce(spec, on_step=on_step))
            progress.update(task, completed=number * steps)
    return records
