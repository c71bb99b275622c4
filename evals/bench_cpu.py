"""The CPU bench (`python -m evals.bench`): one request, raw diffusers against the project."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from evals.bench_common import (
    BASE_SEED,
    Timing,
    both,
    load_raw_pipeline,
    machine,
    peak_rss_mb,
    raw_images,
    reference_drawing,
    skip,
    timed,
    timing_json,
)


def cpu_bench(images: int, workdir: Path, threads: int = 1) -> dict[str, Any]:
    """Load to the last saved image, raw diffusers against the project, for the same images.

    The ratio uses this process's CPU seconds on `threads` torch threads: on a shared machine
    wall time mostly measures the neighbours. Wall seconds are reported beside it.
    """
    import torch

    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return _cpu_bench(images, workdir, threads)
    finally:
        torch.set_num_threads(previous_threads)


def _cpu_bench(images: int, workdir: Path, threads: int) -> dict[str, Any]:
    from evals.tiny_models import CONFIG_NAME, build_tiny_models
    from tools.engine.rendering import Engine
    from tools.settings import CONFIG_FILENAME, load_settings

    models_dir = workdir / "tiny-models"
    build_tiny_models(models_dir)
    home = workdir / "home"
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    shutil.copyfile(models_dir / CONFIG_NAME, home / CONFIG_FILENAME)
    settings = load_settings(home=home, env={})
    reference_path = workdir / "reference.png"
    reference_drawing().save(reference_path)
    output, models = settings.output, settings.models
    width, height = output.resolution.width, output.resolution.height
    raw_out = workdir / "raw-output"
    raw_out.mkdir(exist_ok=True)

    # One untimed load of each side first: imports and the file cache are then warm for both,
    # whichever goes first.
    load_raw_pipeline(models.model_dump(), "sd15", "cpu")
    Engine(settings).pipe  # noqa: B018

    wall = {"raw": Timing(), "project": Timing()}
    cpu = {"raw": Timing(), "project": Timing()}

    def timed_both(side: str, part: str):
        def into(timing: Timing) -> Callable[[float], None]:
            if part == "load":
                return lambda seconds: setattr(timing, "load_s", seconds)
            return timing.image_s.append

        return both(timed(into(wall[side])), timed(into(cpu[side]), time.process_time))

    from PIL import Image

    with timed_both("raw", "load"):
        pipe = load_raw_pipeline(models.model_dump(), "sd15", "cpu")
        reference = Image.open(reference_path).convert("RGB")
    from tools.characters.library import CharacterLibrary

    # The character exists before the request, as the reference file does for the raw side.
    CharacterLibrary(settings.paths).add("bench", reference_path, prompt_tags="1girl, red hair")
    with timed_both("project", "load"):
        from tools.generation.runtime import Runtime
        from tools.generation.specs import GenerationRequest

        runtime = Runtime(settings)
        # One spec more than timed: the first image of each side warms the kernels up.
        specs = runtime.planner.plan(
            GenerationRequest(character="bench", random_pose=True, count=images + 1, seed=BASE_SEED)
        )
        runtime.engine.pipe  # noqa: B018 - load now, as the raw side does

    from posebank.render import render_pose

    for spec in specs:
        # What the raw side is given: the same prompt text and pose map, drawn beforehand.
        meta = runtime.producer.metadata(spec, spec.seed)
        pose = render_pose(runtime.poses.get(spec.pose.id), width, height)
        warm_up = spec.index == 0
        with skip() if warm_up else timed_both("raw", "image"):
            image = raw_images(
                pipe,
                [meta["prompt"]],
                meta["negative_prompt"],
                [pose],
                reference,
                [spec.seed],
                width=width,
                height=height,
                steps=output.steps,
                guidance=output.guidance_scale,
                ipadapter_weight=models.ipadapter_weight,
                controlnet_strength=models.controlnet_strength,
            )[0]
            image.save(raw_out / f"{spec.index:03d}.png")
        with skip() if warm_up else timed_both("project", "image"):
            runtime.producer.produce(spec)
    raw, project = cpu["raw"], cpu["project"]
    return {
        "mode": "cpu",
        "settings": {
            "resolution": f"{width}x{height}",
            "steps": output.steps,
            "images": images,
            "batch": 1,
            "guidance_scale": output.guidance_scale,
            "models": "evals.tiny_models",
            "torch_threads": threads,
            "clock": "process CPU seconds",
        },
        "machine": machine(),
        "raw": timing_json(raw, wall["raw"]),
        "project": timing_json(project, wall["project"]),
        "peak_rss_mb": peak_rss_mb(),
        "per_image_ratio": round(project.per_image_s / raw.per_image_s, 3),
        "load_ratio": round(project.load_s / raw.load_s, 3),
        "overhead_ratio": round(project.total_s / raw.total_s, 3),
    }
