"""Soak: many jobs through the real worker while random faults hit it; nothing lost or doubled.

    python -m evals.soak [--jobs 100] [--fault-rate 0.08] [--budget 900] [--models DIR]
    python -m evals.soak --ray [--slots 2] --jobs 30    # the same on a local Ray cluster

Builds (or reuses) the tiny models, makes a fresh home with one character, submits the jobs
(every tenth has three images, the rest one), and runs a background worker whose environment
injects a random fault (crash, hang, raise, CUDA OOM) before an image with the given probability.
At the end every job must be done, or failed with a reason, and every done image must exist
exactly once on disk, with no other accepted image beside them. Prints the counts; exit 1 when
a check fails or the time budget runs out. With `--ray` the render workers are Ray actors
(`anime-gen worker --ray local --slots N`, one torch thread each) and the faults hit them.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from tools.jobs.faults import InjectedFault, InjectedOutOfMemory

# How each recovered fault shows in the worker's log.
FAULT_PATTERNS = {
    "crash": r"died \(SIGKILL\) -> ",
    "hang": r"worker hung .* -> ",
    # The traceback's last line names the class by module (tools.faults moved to tools.jobs).
    "raise": rf"^{re.escape(InjectedFault.__module__)}\.InjectedFault: ",
    "oom": rf"^{re.escape(InjectedOutOfMemory.__module__)}\.InjectedOutOfMemory: ",
}
# The same, in the Ray head's log.
RAY_FAULT_PATTERNS = {
    "crash": r"ray actor \S+ died \(",
    "hang": r"worker hung .* -> ",
    "raise": r" InjectedFault: ",
    "oom": r" InjectedOutOfMemory: ",
}


def prepare_home(models: Path, root: Path) -> Path:
    from PIL import Image, ImageDraw

    from evals.tiny_models import CONFIG_NAME, build_tiny_models
    from tools.settings import CONFIG_FILENAME

    build_tiny_models(models)
    home = root / "home"
    home.mkdir(parents=True)
    shutil.copyfile(models / CONFIG_NAME, home / CONFIG_FILENAME)
    reference = Image.new("RGB", (96, 128), (245, 235, 220))
    ImageDraw.Draw(reference).ellipse((28, 10, 68, 50), fill=(250, 210, 180))
    reference.save(root / "reference.png")
    return home


def configure(home: Path, fault_rate: float, seed: int, hang_timeout: str = "8s") -> None:
    """The environment the background worker inherits."""
    os.environ.update(
        {
            "ANIME_HOME": str(home),
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "ANIME_WORKER_HANG_TIMEOUT": hang_timeout,
            "ANIME_WORKER_RETRY_BACKOFF": "0.2s",
            "ANIME_WORKER_MAX_ATTEMPTS": "3",
            "ANIME_WORKER_KEEP_ALIVE": "30s",
            "ANIME_WORKER_FAULTS": f"random:{fault_rate}:{seed}",
        }
    )


def submit_all(jobs: int) -> tuple[object, list[str]]:
    from PIL import Image

    from tools.generation.runtime import Runtime
    from tools.generation.specs import GenerationRequest
    from tools.jobs.client import submit_job
    from tools.settings import load_settings

    settings = load_settings()
    runtime = Runtime(settings)
    runtime.characters.add("sakura", Image.open(settings.home.parent / "reference.png"))
    ids = []
    for number in range(jobs):
        count = 3 if number % 10 == 0 else 1
        request = GenerationRequest(
            character="sakura", count=count, seed=number * 10, posture="standing"
        )
        ids.append(submit_job(settings, runtime.planner.plan(request), f"soak {number}")[1])
    return settings, ids


def start_ray_head(settings: object, slots: int) -> subprocess.Popen[bytes]:
    """`anime-gen worker --ray local --slots N`, logging where the soak reads faults."""
    from tools.jobs.processes import log_path

    log = log_path(settings.paths.state)
    log.parent.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "assistant.gen_cli", "worker", "--ray", "local"]
    with open(log, "ab") as output:
        return subprocess.Popen(
            [*command, "--slots", str(slots)], stdout=output, stderr=subprocess.STDOUT
        )


def wait_all(settings: object, ids: list[str], budget: float, ray: bool = False) -> bool:
    from tools.jobs.client import ensure_worker
    from tools.jobs.job import JobState
    from tools.jobs.journal import JobJournal
    from tools.jobs.processes import worker_running

    journal = JobJournal.for_state(settings.paths.state)
    deadline = time.monotonic() + budget
    if not ray:
        ensure_worker(settings)
    last_line = ""
    while time.monotonic() < deadline:
        states = Counter(journal.get(job_id).state for job_id in ids)
        line = ", ".join(f"{state} {count}" for state, count in sorted(states.items()))
        if line != last_line:
            print(f"  [{time.strftime('%H:%M:%S')}] {line}", flush=True)
            last_line = line
        if states[JobState.QUEUED] + states[JobState.RUNNING] == 0:
            return True
        if not ray and not worker_running(settings.paths.state):
            ensure_worker(settings)
        time.sleep(1.0)
    return False


def check(settings: object, ids: list[str], ray: bool = False) -> tuple[dict[str, int], list[str]]:
    from tools.jobs.job import ImageState, JobState
    from tools.jobs.journal import JobJournal
    from tools.jobs.processes import log_path

    journal = JobJournal.for_state(settings.paths.state)
    jobs = [journal.get(job_id) for job_id in ids]
    problems = []
    done_paths = []
    for job in jobs:
        if job.state == JobState.FAILED and not job.error:
            problems.append(f"job {job.id} failed without a reason")
        elif job.state not in (JobState.DONE, JobState.FAILED):
            problems.append(f"job {job.id} ended {job.state}")
        done_paths += [image.path for image in job.images if image.state == ImageState.DONE]
    on_disk = sorted(str(p) for p in settings.paths.output.glob("*/sakura_*.png"))
    if len(done_paths) != len(set(done_paths)):
        problems.append("two done images share one file")
    if sorted(done_paths) != on_disk:
        extra = set(on_disk) - set(done_paths)
        missing = set(done_paths) - set(on_disk)
        problems.append(f"disk and journal differ: {len(extra)} extra, {len(missing)} missing")
    log = log_path(settings.paths.state).read_text(encoding="utf-8", errors="replace")
    patterns = RAY_FAULT_PATTERNS if ray else FAULT_PATTERNS
    faults = {kind: len(re.findall(p, log, flags=re.M)) for kind, p in patterns.items()}
    counts = {
        "jobs": len(jobs),
        "done": sum(job.state == JobState.DONE for job in jobs),
        "failed": sum(job.state == JobState.FAILED for job in jobs),
        "images_done": len(done_paths),
        "images_on_disk": len(on_disk),
        "retries": sum(max(job.attempts - 1, 0) for job in jobs),
        "workers": len({worker for job in jobs for worker in job.workers}),
        **{f"fault_{kind}": count for kind, count in faults.items()},
    }
    return counts, problems


def reasons(settings: object, ids: list[str]) -> Counter[str]:
    """The failed jobs' reasons, with image and job details cut so that alike ones group."""
    from tools.jobs.job import JobState
    from tools.jobs.journal import JobJournal

    journal = JobJournal.for_state(settings.paths.state)
    errors = [job.error or "" for job in map(journal.get, ids) if job.state == JobState.FAILED]
    return Counter(re.sub(r"image \d+", "image N", error) for error in errors)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=100)
    parser.add_argument("--fault-rate", type=float, default=0.08)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--budget", type=float, default=900.0, help="seconds for the whole run")
    parser.add_argument("--models", type=Path, default=None, help="tiny models dir (reused)")
    parser.add_argument("--ray", action="store_true", help="render on a local Ray cluster")
    parser.add_argument("--slots", type=int, default=2, help="CPU actors with --ray")
    args = parser.parse_args(argv)

    from tools.jobs.processes import stop_worker

    with tempfile.TemporaryDirectory(prefix="anime-soak-") as scratch:
        root = Path(scratch)
        models = args.models or root / "models"
        home = prepare_home(models, root)
        # Ray actors report no steps, only whole images: a loaded machine needs more slack.
        configure(home, args.fault_rate, args.seed, "20s" if args.ray else "8s")
        started = time.monotonic()
        settings, ids = submit_all(args.jobs)
        where = f", ray with {args.slots} slots" if args.ray else ""
        print(f"soak: {len(ids)} jobs, fault rate {args.fault_rate} per image{where}", flush=True)
        head = start_ray_head(settings, args.slots) if args.ray else None
        try:
            finished = wait_all(settings, ids, args.budget, ray=args.ray)
        finally:
            if head is not None:
                head.terminate()
                head.wait(timeout=120)
        stop_worker(settings.paths.state)
        counts, problems = check(settings, ids, ray=args.ray)
        counts["seconds"] = round(time.monotonic() - started, 1)
        print(" ".join(f"{key}={value}" for key, value in counts.items()))
        if not finished:
            problems.append(f"time budget of {args.budget:g} s ran out")
        for reason, count in reasons(settings, ids).most_common():
            print(f"  failed x{count}: {reason}")
        for problem in problems:
            print(f"FAIL: {problem}")
        if not problems:
            print("OK: every job done or failed with a reason; every done image exists once")
        return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
