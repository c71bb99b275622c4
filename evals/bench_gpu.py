"""The GPU bench: the engine's settings against the raw pipeline (`python -m evals.bench --gpu`)."""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from evals.bench_common import (
    BASE_SEED,
    NEGATIVE,
    PROMPT,
    Timing,
    load_raw_pipeline,
    machine,
    peak_vram_mb,
    raw_images,
    reference_drawing,
    reset_vram,
    timed,
)

# --- GPU: the engine's settings against the raw pipeline --------------------------------------

# name -> (models overrides, output overrides); each is measured, and kept only if it helps.
VARIANTS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "engine": ({}, {}),
    "engine-unfused": ({"fuse_qkv": False}, {}),
    "engine-cfg-cutoff-0.4": ({}, {"cfg_cutoff": 0.4}),
    "engine-compile": ({"compile": True}, {}),
    "engine-compile-cfg-cutoff-0.4": ({"compile": True}, {"cfg_cutoff": 0.4}),
    "engine-low-vram": ({"low_vram": True}, {}),
    # A random LoRA of the bench UNet's shape stands in for LCM/TCD/Hyper-SD: same cost.
    "engine-fast-lora-6-steps": ({"fast_lora": "bench"}, {"fast_steps": 6}),
}
CUDA_ONLY = {"engine-compile", "engine-compile-cfg-cutoff-0.4", "engine-low-vram"}


def gpu_bench(
    family: str,
    size: str,
    width: int,
    height: int,
    steps: int,
    batches: list[int],
    repeats: int,
    variants: list[str],
    workdir: Path,
) -> dict[str, Any]:
    import torch
    from PIL import Image

    from evals.bench_models import build_bench_models, model_settings

    device = "cuda" if torch.cuda.is_available() else "cpu"
    started = time.perf_counter()
    models_dir = build_bench_models(workdir / f"{family}-{size}", family=family, size=size)
    build_s = time.perf_counter() - started
    models = model_settings(models_dir, family)
    reference_path = workdir / "reference.png"
    reference_drawing().save(reference_path)
    reference = Image.open(reference_path).convert("RGB")
    pose = Image.new("RGB", (width, height))
    guidance, clip_skip = 7.0, 2
    rows: list[dict[str, Any]] = []

    def measure(name: str, load: Callable[[], Any], draw: Callable[[Any, int, int], Any]) -> None:
        reset_vram()
        timing = Timing()
        with timed(lambda s: setattr(timing, "load_s", s)):
            loaded = load()
        for batch in batches:
            draw(loaded, batch, BASE_SEED)  # warm-up: first-call allocations, cuDNN autotune
            per_batch: list[float] = []
            for repeat in range(repeats):
                with timed(per_batch.append):
                    draw(loaded, batch, BASE_SEED + repeat)
            rows.append(
                {
                    "name": name,
                    "batch": batch,
                    "load_s": round(timing.load_s, 2),
                    "per_image_s": round(min(per_batch) / batch, 4),
                    "peak_vram_mb": peak_vram_mb(),
                }
            )
            print(row_text(rows[-1]), file=sys.stderr, flush=True)
        del loaded
        reset_vram()

    def raw_draw(pipe: Any, batch: int, seed: int) -> Any:
        return raw_images(
            pipe,
            [PROMPT] * batch,
            NEGATIVE,
            [pose] * batch,
            reference,
            [seed + i for i in range(batch)],
            width=width,
            height=height,
            steps=steps,
            guidance=guidance,
            ipadapter_weight=0.8,
            controlnet_strength=0.8,
        )

    measure("raw-diffusers", lambda: load_raw_pipeline(models, family, device), raw_draw)
    for name in variants:
        if name in CUDA_ONLY and device != "cuda":
            continue
        model_overrides, output_overrides = VARIANTS[name]
        if model_overrides.get("fast_lora") == "bench":
            from evals.tiny_lora import build_tiny_lora

            lora = build_tiny_lora(
                Path(models["checkpoint"]) / "unet", models_dir / "fast.safetensors"
            )
            model_overrides = {**model_overrides, "fast_lora": str(lora)}
        measure(
            name,
            lambda mo=model_overrides, oo=output_overrides: _warm_engine(
                workdir, models, mo, oo, width, height, steps, guidance, clip_skip
            ),
            lambda engine, batch, seed: _engine_draw(
                engine, reference_path, pose, batch, seed, width, height
            ),
        )
    baseline = {row["batch"]: row["per_image_s"] for row in rows if row["name"] == "raw-diffusers"}
    for row in rows:
        row["speedup"] = round(baseline[row["batch"]] / row["per_image_s"], 2)
    best = max((r for r in rows if r["name"] != "raw-diffusers"), key=lambda r: r["speedup"])
    return {
        "mode": "gpu" if size == "full" else "gpu-tiny",
        "settings": {
            "family": family,
            "models": f"{size} architectures, random weights",
            "resolution": f"{width}x{height}",
            "steps": steps,
            "batches": batches,
            "guidance_scale": guidance,
            "sampler": "euler_a",
            "device": device,
            "dtype": "float16" if device == "cuda" else "float32",
            "repeats": repeats,
            "build_s": round(build_s, 1),
        },
        "machine": machine(),
        "rows": rows,
        "best": {"name": best["name"], "batch": best["batch"], "speedup": best["speedup"]},
    }


def _warm_engine(
    workdir: Path,
    models: dict[str, str],
    model_overrides: dict[str, Any],
    output_overrides: dict[str, Any],
    width: int,
    height: int,
    steps: int,
    guidance: float,
    clip_skip: int,
) -> Any:
    from tools.engine.rendering import Engine
    from tools.settings import load_settings

    home = Path(tempfile.mkdtemp(prefix="home-", dir=workdir))
    settings = load_settings(
        home=home,
        env={},
        overrides={
            "models": {**models, "clip_skip": clip_skip, **model_overrides},
            "output": {
                "resolution": f"{width}x{height}",
                "steps": steps,
                "guidance_scale": guidance,
                **output_overrides,
            },
        },
    )
    engine = Engine(settings)
    engine.pipe  # noqa: B018 - loading (and compile warm-up) is part of this side's load time
    return engine


def _engine_draw(
    engine: Any,
    reference: Path,
    pose: Any,
    batch: int,
    seed: int,
    width: int,
    height: int,
) -> Any:
    from tools.engine.rendering import RenderJob

    jobs = [RenderJob(PROMPT, NEGATIVE, pose, reference, seed + i) for i in range(batch)]
    return engine.render(
        jobs, width=width, height=height, ipadapter_weight=0.8, controlnet_strength=0.8
    )


# --- few-step mode: what it costs in the gate's scores ------------------------------------------


def row_text(row: dict[str, Any]) -> str:
    vram = "-" if row.get("peak_vram_mb") is None else f"{row['peak_vram_mb']:.0f}"
    speedup = f"{row['speedup']:.2f}x" if "speedup" in row else ""
    return (
        f"{row['name']:<30} batch {row['batch']:<3} {row['per_image_s']:>8.3f} s/image "
        f"load {row['load_s']:>6.1f} s  VRAM {vram:>7} MB  {speedup}"
    )
