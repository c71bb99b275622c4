"""Resident memory of a long-lived engine over many jobs with ever-changing LoRAs and prompts
(issue 23): the LRU bounds (`tools/engine/lru.py`) on against unbounded, side by side in one run.

`python -m evals.rss_bench [--jobs 200] [--loras 60] [--every 20] [--workdir DIR]`

Each side runs in a fresh child process (RSS is per process), both at once, on the same tiny
models (CPU): job i draws one image with LoRA `style{i % loras}` at weight 1 and the prompt
`1girl, hat {i}`, so each job is a new prompt and, until the LoRAs cycle, a new LoRA. Each child
reports its RSS at the start (engine loaded, one draw without a LoRA done), every `--every` jobs
and at the end; the parent prints both sides in one table, the ratio of their growth, and the
load average (the machine is shared).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

UNBOUNDED = 10**9
SIDES = ("bounded", "unbounded")


def rss_mb() -> float:
    """This process's resident set now (not the peak), in MiB."""
    with open("/proc/self/statm") as statm:
        pages = int(statm.read().split()[1])
    return round(pages * os.sysconf("SC_PAGE_SIZE") / 2**20, 1)


def prepare(workdir: Path, loras: int) -> Path:
    """Tiny models, a home using them and `loras` distinct tiny LoRAs in its LoRA folder."""
    from evals.tiny_lora import build_tiny_lora
    from evals.tiny_models import CONFIG_NAME, build_tiny_models
    from tools.settings import CONFIG_FILENAME

    models = workdir / "tiny-models"
    build_tiny_models(models)
    home = workdir / "home"
    shutil.rmtree(home, ignore_errors=True)
    (home / "models" / "lora").mkdir(parents=True)
    shutil.copyfile(models / CONFIG_NAME, home / CONFIG_FILENAME)
    for seed in range(loras):
        build_tiny_lora(
            models / "sd15" / "unet", home / "models" / "lora" / f"style{seed}.safetensors", seed
        )
    return home


Mark = tuple[int, float, int, float, int]  # jobs done, RSS MiB, adapters, LoRA KiB, prompts


def lora_kib(pipe: Any) -> float:
    """The LoRA weights the pipeline's UNet and text encoder hold (peft's `lora_` parameters)."""
    held = 0
    for model in (pipe.unet, pipe.text_encoder):
        for name, parameter in model.named_parameters():
            if "lora_" in name:
                held += parameter.numel() * parameter.element_size()
    return round(held / 2**10, 1)


def run_side(home: Path, side: str, jobs: int, loras: int, every: int) -> list[Mark]:
    """(jobs done, RSS MiB, adapters loaded, their weights in KiB, prompt embeddings cached) at
    the start, every `every` jobs and at the end, in this process."""
    import torch
    from PIL import Image

    from tools.engine import conditioning
    from tools.engine.prompt_syntax import LoraRequest
    from tools.engine.rendering import Engine, RenderJob
    from tools.settings import load_settings

    torch.set_num_threads(1)
    engine = Engine(load_settings(home=home, env={}))
    engine.ensure_loaded()
    if side == "unbounded":
        engine.loras.limit = UNBOUNDED
        conditioning.PROMPT_CACHE_SIZE = UNBOUNDED
    pose = Image.new("RGB", (128, 192))

    def draw(prompt: str, seed: int, loras: tuple[LoraRequest, ...]) -> None:
        job = RenderJob(prompt, "lowres", pose, None, seed, loras)
        engine.render([job], width=128, height=192, ipadapter_weight=0.0, controlnet_strength=0.5)

    def mark(done: int) -> None:
        gc.collect()
        held = len(engine.ensure_loaded()._prompts)
        adapters = len(engine.loras.loaded)
        marks.append((done, rss_mb(), adapters, lora_kib(engine.pipe), held))
        print(f"{side}: {marks[-1]}", file=sys.stderr, flush=True)

    # One draw without a LoRA first: the allocator's and the kernels' first-use growth is then
    # in the start figure, and what follows is what the jobs keep.
    draw("1girl", 0, ())
    marks: list[Mark] = []
    mark(0)
    for number in range(jobs):
        draw(f"1girl, hat {number}", number, (LoraRequest(f"style{number % loras}", 1.0),))
        if (number + 1) % every == 0 or number + 1 == jobs:
            mark(number + 1)
    return marks


def growth_ratio(bounded: list[Mark], unbounded: list[Mark]) -> float:
    """How many times the unbounded side grew what the bounded side grew, start to end."""
    grown = bounded[-1][1] - bounded[0][1]
    return round((unbounded[-1][1] - unbounded[0][1]) / max(grown, 0.1), 2)


def table(sides: dict[str, list[Mark]]) -> str:
    """The two sides at each mark as a Markdown table (bounded / unbounded in each cell), then
    the RSS growth of each."""
    lines = [
        "| jobs | RSS (MiB) | LoRA adapters | their weights (KiB) | prompt embeddings |",
        "|---|---|---|---|---|",
    ]
    for bounded, unbounded in zip(*(sides[side] for side in SIDES), strict=True):
        cells = [f"{a} / {b}" for a, b in zip(bounded[1:], unbounded[1:], strict=True)]
        lines.append(f"| {bounded[0]} | " + " | ".join(cells) + " |")
    grown = [round(sides[side][-1][1] - sides[side][0][1], 1) for side in SIDES]
    lines.append(f"| RSS growth | {grown[0]} / {grown[1]} | | | |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--loras", type=int, default=60)
    parser.add_argument("--every", type=int, default=20)
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--side", choices=SIDES, help=argparse.SUPPRESS)  # the child's part
    args = parser.parse_args(argv)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="rss-bench-"))
    if args.side:
        marks = run_side(workdir / "home", args.side, args.jobs, args.loras, args.every)
        print(json.dumps(marks))
        return 0
    prepare(workdir, args.loras)
    load_before = os.getloadavg()
    children = {}
    for side in SIDES:  # both at once: RSS does not depend on speed, and the run takes half
        child = [sys.executable, "-m", "evals.rss_bench", "--side", side, "--workdir", str(workdir)]
        child += ["--jobs", str(args.jobs), "--loras", str(args.loras), "--every", str(args.every)]
        children[side] = subprocess.Popen(child, stdout=subprocess.PIPE, text=True)
    sides: dict[str, Any] = {}
    for side, child in children.items():
        output, _ = child.communicate()
        if child.returncode:
            raise SystemExit(f"the {side} side failed (exit {child.returncode})")
        sides[side] = [tuple(mark) for mark in json.loads(output.splitlines()[-1])]
    print(table(sides))
    print(f"unbounded/bounded growth: {growth_ratio(sides['bounded'], sides['unbounded'])}x")
    load_after = os.getloadavg()
    print(f"load average (1/5/15 min): before {load_before}, after {load_after}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
