"""Throughput of one render worker against two, on the same 16-image job, in one run.

    python -m evals.scale_bench [--images 16] [--models DIR] [--ray]

Each run gets a fresh home (same tiny models, same character, same seed) and a warm worker pool:
a warm-up job of one image per worker is drawn first, so model loading is not timed. Then the
job is planned, submitted, and timed from submission to its last image committed. Local runs
use `worker.cpu_workers`, `--ray` uses `anime-gen worker --ray local --slots N`; either way one
torch thread per worker. Prints seconds and images/s for each, and the ratio.
On a machine with fewer free cores than workers the ratio stays near 1: the workers then share
the same cores, and the figure measures the scheduling overhead, not the scaling.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from evals.soak import prepare_home


def run_once(models: Path, root: Path, workers: int, images: int, ray: bool) -> dict[str, float]:
    from PIL import Image

    from tools.generation.runtime import Runtime
    from tools.generation.specs import GenerationRequest
    from tools.jobs.client import ensure_worker, submit_job, wait_for_job
    from tools.jobs.job import JobState
    from tools.jobs.processes import stop_worker
    from tools.settings import load_settings

    home = prepare_home(models, root)
    os.environ.update(
        {
            "ANIME_HOME": str(home),
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "ANIME_WORKER_KEEP_ALIVE": "120s",
            "ANIME_WORKER_CPU_WORKERS": str(workers),
        }
    )
    settings = load_settings()
    runtime = Runtime(settings)
    character = runtime.characters.add("sakura", Image.open(root / "reference.png"))
    runtime.characters.update(character.model_copy(update={"consistency_baseline": 0.99}))

    def plan(count: int, seed: int):
        request = GenerationRequest(character="sakura", count=count, seed=seed, posture="standing")
        return runtime.planner.plan(request)

    head = None
    if ray:
        command = [sys.executable, "-m", "assistant.gen_cli", "worker", "--ray", "local"]
        head = subprocess.Popen(
            [*command, "--slots", str(workers)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    try:
        # Warm every worker: one image each, drawn at once.
        _, warm = submit_job(settings, plan(workers, 1000), "warm-up")
        if not ray:
            ensure_worker(settings)
        warmed = wait_for_job(settings, warm, timeout=600)
        assert warmed.state == JobState.DONE, warmed.error
        specs = plan(images, 1)  # planning (pose search) is the front end's time, not theirs
        started = time.perf_counter()
        _, job_id = submit_job(settings, specs, "bench")
        job = wait_for_job(settings, job_id, poll=0.05, timeout=1800)
        seconds = time.perf_counter() - started
        assert job.state == JobState.DONE, job.error
        return {"seconds": seconds, "rate": images / seconds, "workers": len(job.workers)}
    finally:
        if head is not None:
            head.terminate()
            head.wait(timeout=120)
        stop_worker(settings.paths.state)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--models", type=Path, default=None, help="tiny models dir (reused)")
    parser.add_argument("--ray", action="store_true", help="Ray CPU slots, not local workers")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="anime-scale-bench-") as scratch:
        models = args.models or Path(scratch) / "models"
        results = {}
        for workers in (1, 2):
            root = Path(scratch) / f"run{workers}"
            root.mkdir()
            results[workers] = run_once(models, root, workers, args.images, args.ray)
            row = results[workers]
            print(
                f"{workers} worker(s): {args.images} images in {row['seconds']:.1f} s"
                f" = {row['rate']:.2f} images/s (drawn by {row['workers']})",
                flush=True,
            )
    ratio = results[2]["rate"] / results[1]["rate"]
    kind = "ray slots" if args.ray else "local CPU workers"
    print(f"ratio 2/1 ({kind}, {os.cpu_count()} cores): {ratio:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
