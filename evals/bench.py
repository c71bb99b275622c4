"""Speed bench: this project's engine against plain diffusers doing the same work, in one process.

    python -m evals.bench                # CPU, tiny models: the overhead the project adds
    python -m evals.bench --gpu          # full-size SD1.5 (random fp16 weights), 512x768, 25 steps
    python -m evals.bench --gpu --family sdxl --resolution 832x1216
    python -m evals.bench --gpu --tiny   # the GPU bench's code paths at toy size (any machine)
    python -m evals.bench --fast-quality [--config FILE --fast-lora LORA]  # few-step quality cost

The CPU bench runs a whole request both ways: raw diffusers written the obvious way (pipeline,
`load_ip_adapter`, prompt strings, the reference image on every call, PNG saved) against
`GenerationPlanner.plan` + `Producer.produce` (pose rendering, scoring, saving, indexing
included), from cold start to the last image. Its last line is `overhead_ratio=X` (project / raw).

The GPU bench times `Engine.render` per setting (fused QKV, CFG cutoff, torch.compile, low-VRAM,
few-step LoRA) against the raw pipeline at batch 1 and 4; its last line is `speedup=X` (raw / best
setting). `--fast-quality` draws one request with and without the few-step LoRA and prints the
gate's mean scores of each; its last line is `fast_consistency_delta=X`. Each prints a table and
the JSON report (also written with `--json PATH`).
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import resource
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

PROMPT = "masterpiece, best quality, 1girl, red hair, blue eyes, school uniform, standing"
NEGATIVE = "lowres, bad hands, worst quality, low quality"
BASE_SEED = 1234


# --- measuring --------------------------------------------------------------------------------


@dataclass
class Timing:
    """Seconds spent by one side, split into loading and images."""

    load_s: float = 0.0
    image_s: list[float] = field(default_factory=list)
    peak_vram_mb: float | None = None

    @property
    def total_s(self) -> float:
        return self.load_s + sum(self.image_s)

    @property
    def per_image_s(self) -> float:
        return sum(self.image_s) / max(1, len(self.image_s))


@contextmanager
def timed(into: Callable[[float], None], clock: Callable[[], float] = time.perf_counter):
    _synchronize()
    started = clock()
    yield
    _synchronize()
    into(clock() - started)


def _synchronize() -> None:
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.synchronize()


def _reset_vram() -> None:
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def _peak_vram_mb() -> float | None:
    import torch

    if not torch.cuda.is_available():
        return None
    return round(torch.cuda.max_memory_allocated() / 2**20, 1)


def _peak_rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def machine() -> dict[str, Any]:
    import torch

    described = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
    }
    if torch.cuda.is_available():
        described["gpu"] = torch.cuda.get_device_name()
    import diffusers

    described["diffusers"] = diffusers.__version__
    return described


# --- the raw diffusers baseline -------------------------------------------------------------


def load_raw_pipeline(models: dict[str, str], family: str, device: str) -> Any:
    """StableDiffusion(XL)ControlNetPipeline + IP-Adapter, loaded the way the docs show."""
    import torch
    from diffusers import (
        ControlNetModel,
        EulerAncestralDiscreteScheduler,
        StableDiffusionControlNetPipeline,
        StableDiffusionXLControlNetPipeline,
    )

    dtype = torch.float16 if device == "cuda" else torch.float32
    controlnet = ControlNetModel.from_pretrained(models["controlnet"], torch_dtype=dtype)
    if family == "sdxl":
        pipe = StableDiffusionXLControlNetPipeline.from_pretrained(
            models["checkpoint"], controlnet=controlnet, torch_dtype=dtype
        )
    else:
        pipe = StableDiffusionControlNetPipeline.from_pretrained(
            models["checkpoint"],
            controlnet=controlnet,
            torch_dtype=dtype,
            safety_checker=None,
            requires_safety_checker=False,
        )
    pipe.scheduler = EulerAncestralDiscreteScheduler.from_config(pipe.scheduler.config)
    pipe.load_ip_adapter(
        models["ipadapter"],
        subfolder=models["ipadapter_subfolder"],
        weight_name=models["ipadapter_weight_name"],
        image_encoder_folder=models.get("image_encoder_folder", "image_encoder"),
    )
    pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def raw_images(
    pipe: Any,
    prompts: list[str],
    negative: str,
    poses: list[Any],
    reference: Any,
    seeds: list[int],
    *,
    width: int,
    height: int,
    steps: int,
    guidance: float,
    ipadapter_weight: float,
    controlnet_strength: float,
) -> list[Any]:
    # No `clip_skip`: diffusers 0.42's clip-skip path fails with transformers 5 (CLIPTextModel
    # has no `.text_model`); the last layer costs the same compute as the penultimate one.
    import torch

    pipe.set_ip_adapter_scale(ipadapter_weight)
    return pipe(
        prompt=prompts,
        negative_prompt=[negative] * len(prompts),
        image=poses,
        ip_adapter_image=[[reference] * len(prompts)],
        num_inference_steps=steps,
        guidance_scale=guidance,
        controlnet_conditioning_scale=controlnet_strength,
        width=width,
        height=height,
        generator=[torch.Generator("cpu").manual_seed(seed) for seed in seeds],
    ).images


# --- CPU: a whole request, both ways ---------------------------------------------------------


def _reference_drawing() -> Any:
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (96, 128), (245, 235, 220))
    draw = ImageDraw.Draw(image)
    draw.ellipse((28, 10, 68, 50), fill=(250, 210, 180), outline=(60, 40, 30))
    draw.rectangle((22, 8, 74, 22), fill=(200, 40, 60))
    draw.rectangle((30, 52, 66, 100), fill=(40, 80, 200))
    return image


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
    _reference_drawing().save(reference_path)
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

        return _both(timed(into(wall[side])), timed(into(cpu[side]), time.process_time))

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
        with _skip() if warm_up else timed_both("raw", "image"):
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
        with _skip() if warm_up else timed_both("project", "image"):
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
        "raw": _timing_json(raw, wall["raw"]),
        "project": _timing_json(project, wall["project"]),
        "peak_rss_mb": _peak_rss_mb(),
        "per_image_ratio": round(project.per_image_s / raw.per_image_s, 3),
        "load_ratio": round(project.load_s / raw.load_s, 3),
        "overhead_ratio": round(project.total_s / raw.total_s, 3),
    }


@contextmanager
def _both(first: Any, second: Any):
    with first, second:
        yield


@contextmanager
def _skip():
    yield


def _timing_json(timing: Timing, wall: Timing | None = None) -> dict[str, Any]:
    described = {
        "load_s": round(timing.load_s, 3),
        "per_image_s": round(timing.per_image_s, 4),
        "total_s": round(timing.total_s, 3),
        "peak_vram_mb": timing.peak_vram_mb,
    }
    if wall is not None:
        described["wall_per_image_s"] = round(wall.per_image_s, 4)
        described["wall_total_s"] = round(wall.total_s, 3)
    return described


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
    _reference_drawing().save(reference_path)
    reference = Image.open(reference_path).convert("RGB")
    pose = Image.new("RGB", (width, height))
    guidance, clip_skip = 7.0, 2
    rows: list[dict[str, Any]] = []

    def measure(name: str, load: Callable[[], Any], draw: Callable[[Any, int, int], Any]) -> None:
        _reset_vram()
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
                    "peak_vram_mb": _peak_vram_mb(),
                }
            )
            print(_row_text(rows[-1]), file=sys.stderr, flush=True)
        del loaded
        _reset_vram()

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
    _reference_drawing().save(reference_path)
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


# --- reporting ---------------------------------------------------------------------------------


def _row_text(row: dict[str, Any]) -> str:
    vram = "-" if row.get("peak_vram_mb") is None else f"{row['peak_vram_mb']:.0f}"
    speedup = f"{row['speedup']:.2f}x" if "speedup" in row else ""
    return (
        f"{row['name']:<30} batch {row['batch']:<3} {row['per_image_s']:>8.3f} s/image "
        f"load {row['load_s']:>6.1f} s  VRAM {vram:>7} MB  {speedup}"
    )


def table(report: dict[str, Any]) -> str:
    lines = [f"# {report['mode']} bench, {datetime.now(UTC):%Y-%m-%d}"]
    lines.append("settings: " + json.dumps(report["settings"]))
    lines.append("machine: " + json.dumps(report["machine"]))
    if report["mode"] == "fast-quality":
        for side, means in report["sides"].items():
            scores = "  ".join(f"{name} {means[name]}" for name in SCORE_NAMES)
            lines.append(
                f"{side:<7} {means['steps']} steps  {scores}  first-try accepted "
                f"{means['accepted_first_try']}/{means['images']}  {means['seconds']} s"
            )
    elif report["mode"] == "cpu":
        for side in ("raw", "project"):
            t = report[side]
            lines.append(
                f"{side:<8} load {t['load_s']:>7.2f} s  {t['per_image_s']:>7.3f} s/image  "
                f"total {t['total_s']:>7.2f} s CPU  (wall {t['wall_per_image_s']:.3f} s/image)"
            )
        lines.append(
            f"per-image ratio {report['per_image_ratio']}  load ratio {report['load_ratio']}  "
            f"peak RSS {report['peak_rss_mb']} MB"
        )
    else:
        lines.extend(_row_text(row) for row in report["rows"])
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m evals.bench", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--gpu", action="store_true", help="full-size models on the GPU")
    parser.add_argument("--tiny", action="store_true", help="with --gpu: toy sizes, any device")
    parser.add_argument("--family", choices=["sd15", "sdxl"], default="sd15")
    parser.add_argument("--resolution", default=None, help="WxH (default 512x768; SDXL 832x1216)")
    parser.add_argument("--steps", type=int, default=None, help="default 25 (tiny: 4)")
    parser.add_argument("--batches", default="1,4", help="comma-separated batch sizes")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--variants", default=",".join(VARIANTS), help="engine settings to time")
    parser.add_argument("--images", type=int, default=8, help="CPU bench: images in the request")
    parser.add_argument("--threads", type=int, default=1, help="CPU bench: torch threads")
    parser.add_argument(
        "--fast-quality", action="store_true", help="gate scores with and without fast_lora"
    )
    parser.add_argument("--config", type=Path, default=None, help="--fast-quality: real models")
    parser.add_argument("--fast-lora", default=None, help="--fast-quality: the LoRA to judge")
    parser.add_argument("--workdir", type=Path, default=None, help="models and outputs go here")
    parser.add_argument("--json", type=Path, default=None, help="also write the report here")
    args = parser.parse_args(argv)

    workdir = args.workdir or Path(tempfile.gettempdir()) / "anime-chat-bench"
    workdir.mkdir(parents=True, exist_ok=True)
    if args.fast_quality:
        report = fast_quality_bench(args.images, workdir, args.config, args.fast_lora)
        last = f"fast_consistency_delta={report['consistency_delta']}"
    elif args.gpu:
        default_size = "832x1216" if args.family == "sdxl" else "512x768"
        resolution = args.resolution or ("128x192" if args.tiny else default_size)
        width, height = (int(side) for side in resolution.lower().split("x"))
        report = gpu_bench(
            family=args.family,
            size="tiny" if args.tiny else "full",
            width=width,
            height=height,
            steps=args.steps or (4 if args.tiny else 25),
            batches=[int(b) for b in args.batches.split(",")],
            repeats=args.repeats,
            variants=[v for v in args.variants.split(",") if v],
            workdir=workdir,
        )
        last = f"speedup={report['best']['speedup']}"
    else:
        report = cpu_bench(args.images, workdir, args.threads)
        last = f"overhead_ratio={report['overhead_ratio']}"
    text = json.dumps(report, indent=2)
    if args.json:
        args.json.write_text(text + "\n", encoding="utf-8")
    print(text)
    print(table(report))
    print(last)
    return 0


if __name__ == "__main__":
    sys.exit(main())
