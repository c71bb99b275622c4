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
import json
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from evals.bench_cpu import cpu_bench
from evals.bench_gpu import VARIANTS, gpu_bench, row_text
from evals.bench_quality import SCORE_NAMES, fast_quality_bench

# --- reporting ---------------------------------------------------------------------------------


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
        lines.extend(row_text(row) for row in report["rows"])
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
