"""The few-step quality bench: the gate's scores with and without the fast LoRA
(`python -m evals.bench --fast-quality`)."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

from evals.bench_common import (
    BASE_SEED,
    machine,
    reference_drawing,
)

SCORE_NAMES = ("consistency", "palette", "aesthetic")


def fast_quality_bench(
    images: int, workdir: Path, config: Path | None, fast_lora: str | None
) -> dict[str, Any]:
    """One request drawn normally and in few-step mode; the gate's mean scores of each.

    Without `config` it runs on the tiny models and a tiny random LoRA: the path runs, the
    figures mean nothing. With a real config and LoRA the difference is the quality cost.
    """
    from evals.tiny_lora import build_tiny_lora
    from evals.tiny_models import build_tiny_models
    from tools.characters.library import CharacterLibrary
    from tools.engine.rendering import sampling_for
    from tools.generation.runtime import Runtime
    from tools.generation.specs import GenerationRequest
    from tools.settings import CONFIG_FILENAME, load_settings

    home = workdir / "quality-home"
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    if config is None:
        models_dir = workdir / "tiny-models"
        config = build_tiny_models(models_dir)
        if fast_lora is None:
            unet = models_dir / "sd15" / "unet"
            # Beside the models, not in them: the tiny-models folder may be shared (tests).
            fast_lora = str(build_tiny_lora(unet, workdir / "fast-lora.safetensors"))
    if fast_lora is None:
        raise SystemExit("--fast-lora is needed with --config")
    shutil.copyfile(config, home / CONFIG_FILENAME)
    reference_path = workdir / "reference.png"
    reference_drawing().save(reference_path)
    CharacterLibrary(load_settings(home=home, env={}).paths).add(
        "bench", reference_path, prompt_tags="1girl, red hair"
    )
    sides: dict[str, Any] = {}
    for side, models in (("normal", {}), ("fast", {"fast_lora": fast_lora})):
        settings = load_settings(home=home, env={}, overrides={"models": models})
        request = GenerationRequest(
            character="bench", random_pose=True, count=images, seed=BASE_SEED, request_id=side
        )
        started = time.perf_counter()
        runtime = Runtime(settings)
        records = runtime.producer.produce_batch(runtime.planner.plan(request))
        sides[side] = _score_means(records) | {
            "seconds": round(time.perf_counter() - started, 2),
            "steps": sampling_for(settings).steps,
        }
    return {
        "mode": "fast-quality",
        "settings": {"images": images, "config": str(config), "fast_lora": fast_lora},
        "machine": machine(),
        "sides": sides,
        "consistency_delta": _delta(sides, "consistency"),
    }


def _score_means(records: list[Any]) -> dict[str, Any]:
    means: dict[str, Any] = {}
    for name in SCORE_NAMES:
        values = [getattr(r.scores, name) for r in records if getattr(r.scores, name) is not None]
        means[name] = round(sum(values) / len(values), 4) if values else None
    means["accepted_first_try"] = sum(r.accepted and r.attempts == 1 for r in records)
    means["images"] = len(records)
    return means


def _delta(sides: dict[str, Any], name: str) -> float | None:
    fast, normal = sides["fast"][name], sides["normal"][name]
    return None if fast is None or normal is None else round(fast - normal, 4)
