"""How long a front-end call takes with the studio server warm, against a bare typer `--help`.

    python -m evals.latency [--runs 5] [--home DIR]

In one run: a bare typer CLI's `--help` (the floor any typer CLI pays), the first (cold) call,
which starts the server and loads the pose embedder, and the median of `--runs` warm calls of
`anime-gen poses search --json`, `anime-gen NAME POSE --dry-run --json` and
`anime-chat -c ... --plan-only --json` (plus `anime-chat -c "who do I have" --json`, executed in
the server). Targets: each warm call <= 4x the bare `--help`, the plan-only call <= 1.5x
(issue 27), and the pose embedder <= 20 ms a request warm (timed here, in this process: one
request's query embedded, median of 20). `os.getloadavg()` is printed before and after, since
on a shared box the absolute times measure the neighbours; the ratios are side by side.
Uses a temporary home (no model weights needed: nothing is rendered); the server it started is
stopped at the end.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BARE_TYPER = """
import typer

app = typer.Typer(add_completion=False)


@app.command()
def main(name: str = "world") -> None:
    print(name)


app()
"""
TARGET_RATIO = 4.0
PLAN_ONLY_TARGET, EMBEDDER_TARGET_MS = 1.5, 20.0
PLAN_ONLY = "anime-chat -c --plan-only --json"


def _timed(command: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{result.stderr}")
    return elapsed


def _prepare_home(home: Path) -> None:
    from PIL import Image

    from tools.characters.library import CharacterLibrary
    from tools.settings import load_settings

    picture = Image.new("RGB", (96, 128), (240, 200, 210))
    CharacterLibrary(load_settings(home=home, env={}).paths).add(
        "sakura", picture, description="pink hair"
    )


def _load_average() -> str:
    return " ".join(f"{load:.2f}" for load in os.getloadavg())


def _embedder_ms(runs: int = 20) -> float:
    """Median milliseconds to embed one request's query with the warm pose embedder."""
    from posebank.index import embed_texts, load_embedder

    embedder = load_embedder()
    embed_texts(embedder, ["warm up"])
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        embed_texts(embedder, ["sakura sitting reading, 3 variations"])
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m evals.latency")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--home", type=Path, help="default: a temporary home")
    args = parser.parse_args(argv)
    home = args.home or Path(tempfile.mkdtemp(prefix="latency-home-"))
    home.mkdir(parents=True, exist_ok=True)
    _prepare_home(home)
    root = str(Path(__file__).resolve().parent.parent)
    env = {k: v for k, v in os.environ.items() if k != "ANIME_IN_PROCESS"}
    env.update(ANIME_HOME=str(home), ANIME_SERVER_PORT="0")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    python = sys.executable
    bare = Path(home) / "bare_typer.py"
    bare.write_text(BARE_TYPER)
    calls = {
        "anime-gen poses search --json": [
            python, "-m", "assistant.gen_cli", "poses", "search", "sitting reading", "--json",
        ],
        "anime-gen NAME POSE --dry-run --json": [
            python, "-m", "assistant.gen_cli", "sakura", "sitting reading book", "--dry-run",
            "--json",
        ],
        PLAN_ONLY: [
            python, "-m", "assistant.chat_cli", "-c", "draw sakura sitting reading, 3 variations",
            "--plan-only", "--json", "--planner", "rules",
        ],
        # Executed in the server (planned and run there; a request that draws nothing).
        "anime-chat -c --json (executed)": [
            python, "-m", "assistant.chat_cli", "-c", "who do I have", "--json",
            "--planner", "rules",
        ],
    }  # fmt: skip
    print(f"load average before: {_load_average()}")
    try:
        _timed([python, str(bare), "--help"], env)  # warm the file cache for the floor
        floor = statistics.median(
            _timed([python, str(bare), "--help"], env) for _ in range(args.runs)
        )
        first_name, first_command = next(iter(calls.items()))
        cold = _timed(first_command, env)
        print(f"bare typer --help (median of {args.runs}): {floor:6.2f} s")
        print(f"cold: first call, starts the server ({first_name}): {cold:6.2f} s")
        ratios = {}
        for name, command in calls.items():
            warm = statistics.median(_timed(command, env) for _ in range(args.runs))
            ratios[name] = warm / floor
            print(f"warm {name:<40} median of {args.runs}: {warm:6.2f} s  ({warm / floor:.2f}x)")
        embed_ms = _embedder_ms()
        print(f"load average after: {_load_average()}")
        print(f"pose embedder, warm, one query (median of 20): {embed_ms:.1f} ms")
        worst = max(ratios.values())
        verdict = "meets" if worst <= TARGET_RATIO else "misses"
        plan = ratios[PLAN_ONLY]
        print(
            f"slowest warm call {worst:.2f}x the bare --help: {verdict} the {TARGET_RATIO:g}x"
            f" target; plan-only {plan:.2f}x"
            f" ({'meets' if plan <= PLAN_ONLY_TARGET else 'misses'} {PLAN_ONLY_TARGET:g}x);"
            f" embedder {embed_ms:.1f} ms"
            f" ({'meets' if embed_ms <= EMBEDDER_TARGET_MS else 'misses'}"
            f" {EMBEDDER_TARGET_MS:g} ms)"
        )
    finally:
        from tools.jobs.processes import stop_worker
        from tools.server.files import stop_server

        stop_server(home / ".anime-chat")
        stop_worker(home / ".anime-chat")
        if args.home is None:
            shutil.rmtree(home, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
