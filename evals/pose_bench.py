"""Pose search latency: warm search (index loaded) and the cold `anime-gen poses search` command.

    python -m evals.pose_bench [--runs 50] [--cold-runs 3]

Cold runs are fresh processes against an index that is already built (the first, which also
builds the index, is reported separately). Pin to 2 cores with `taskset -c 0,1` to match the
target machine.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

QUERIES = ("sitting reading", "waving hello", "asleep in bed", "knight on one knee", "jumping")


def warm_latency(state: Path, runs: int) -> float:
    from posebank import PoseBank

    bank = PoseBank(state, state / "poses")
    bank.search("warm up")
    times = []
    for i in range(runs):
        start = time.perf_counter()
        bank.search(QUERIES[i % len(QUERIES)] + f" {i}", k=3)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def cold_command(home: Path) -> float:
    cli = Path(sys.executable).with_name("anime-gen")
    start = time.perf_counter()
    subprocess.run(
        [str(cli), "poses", "search", "sitting reading", "-k", "3", "--json"],
        check=True,
        capture_output=True,
        env={**os.environ, "ANIME_HOME": str(home)},
    )
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--cold-runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as home_dir:
        home = Path(home_dir)
        first = cold_command(home)
        cold = [cold_command(home) for _ in range(args.cold_runs)]
        warm = warm_latency(home / ".anime-chat", args.runs)
    print(f"cores: {len(os.sched_getaffinity(0))}")
    print(f"first command (builds the index): {first:.2f} s")
    print(f"cold command, index built: median {statistics.median(cold):.2f} s")
    print(f"warm search: median {warm:.1f} ms")


if __name__ == "__main__":
    main()
