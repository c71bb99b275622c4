"""Pose retrieval accuracy: top-1 posture (and action tag, where a case names one).

    python -m evals.pose_retrieval [--cases FILE] [--verbose]

Both case files are development sets (the search was tuned on them); tests gate every case
outside their known-miss lists. Runs in a temporary state dir (the index is built there). The
last line is the top-1 posture accuracy.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import yaml

CASES = Path(__file__).with_name("pose_retrieval_cases.yaml")


def run(cases_file: Path, verbose: bool, misses: list[str] | None = None) -> float:
    """The top-1 posture accuracy; the query of each case that misses goes into `misses`."""
    from posebank import PoseBank

    cases = yaml.safe_load(cases_file.read_text(encoding="utf-8"))
    misses = [] if misses is None else misses
    with tempfile.TemporaryDirectory() as state:
        bank = PoseBank(Path(state), Path(state) / "poses")
        posture_hits = action_hits = action_cases = 0
        for case in cases:
            top = bank.search(case["query"], k=1)[0].pose
            posture_ok = top.posture == case["posture"]
            posture_hits += posture_ok
            action = case.get("action")
            action_ok = None
            if action:
                action_cases += 1
                action_ok = any(action in tag for tag in top.tags)
                action_hits += action_ok
            if not posture_ok or action_ok is False:
                misses.append(case["query"])
            if verbose or not posture_ok or action_ok is False:
                mark = "ok " if posture_ok and action_ok is not False else "MISS"
                print(f"{mark} {case['query']!r} -> {top.id} {top.tags}", file=sys.stderr)
    print(f"cases: {len(cases)}")
    if action_cases:
        print(f"top-1 posture+action accuracy: {action_hits / action_cases:.3f} ({action_cases})")
    accuracy = posture_hits / len(cases)
    print(f"top-1 posture accuracy: {accuracy:.3f}")
    return accuracy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=Path, default=CASES)
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args()
    run(args.cases, args.verbose)


if __name__ == "__main__":
    main()
