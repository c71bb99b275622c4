"""Score a planner on the requests in `evals/chat_cases/*.jsonl`; the pass rate is the last line.

    python -m evals.chat_cases [--planner rules|ollama] [--model NAME] [--verbose]

Each case is {"text", "expect", "previous"?, "characters"?}. `expect` keys: tool, calls (how
many), character, characters, count, seed, pose (null = random), posture, tags, prompt_has,
prompt_lacks, reply_has, name, description_has, query_has. The library defaults to `LIBRARY`,
and poses resolve to their own words so the score measures the planner, not the pose bank.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from assistant.planners.base import (
    Plan,
    PlannedCall,
    Planner,
    PlannerContext,
    PoseRef,
    PreviousImage,
    PreviousTurn,
)

CASES_DIR = Path(__file__).with_name("chat_cases")
LIBRARY = ["yuki", "sakura", "momo", "rin", "aoi", "hinata", "kaede", "mei"]


def load_cases(folder: Path = CASES_DIR) -> list[dict[str, Any]]:
    cases = []
    for path in sorted(folder.glob("*.jsonl")):
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if line.strip():
                cases.append({**json.loads(line), "where": f"{path.name}:{number}"})
    return cases


def words_as_pose(query: str) -> PoseRef:
    return PoseRef(id=None, tags=query.split())


def context_for(case: dict[str, Any]) -> PlannerContext:
    previous = None
    if "previous" in case:
        spec = case["previous"]
        images = [
            PreviousImage(seed, pose_id, tags, spec["args"].get("character", LIBRARY[0]))
            for seed, pose_id, tags in spec.get("images", [])
        ]
        previous = PreviousTurn(PlannedCall(tool=spec["tool"], args=spec["args"]), images)
    return PlannerContext(
        characters=case.get("characters", LIBRARY), find_pose=words_as_pose, previous=previous
    )


def _has_all(text: str, needles: list[str]) -> bool:
    return all(needle.lower() in (text or "").lower() for needle in needles)


def check(plan: Plan, expect: dict[str, Any]) -> list[str]:
    """What is wrong with the plan; empty when it passes."""
    if "calls" in expect and len(plan.calls) != expect["calls"]:
        return [f"expected {expect['calls']} calls, got {len(plan.calls)}"]
    problems = []
    if "reply_has" in expect and not _has_all(plan.reply, expect["reply_has"]):
        problems.append(f"reply lacks {expect['reply_has']}: {plan.reply!r}")
    if "tool" not in expect:
        return problems
    if not plan.calls or plan.calls[0].tool != expect["tool"]:
        got = plan.calls[0].tool if plan.calls else "no call"
        return [*problems, f"expected {expect['tool']}, got {got}"]
    args = plan.calls[0].args
    pose = args.get("pose") or ""
    for key in ("character", "count", "seed", "name"):
        if key in expect and args.get(key) != expect[key]:
            problems.append(f"{key}: expected {expect[key]!r}, got {args.get(key)!r}")
    if "characters" in expect:
        got, want = args.get("characters"), expect["characters"]
        if (sorted(got) if isinstance(got, list) else got) != (
            sorted(want) if isinstance(want, list) else want
        ):
            problems.append(f"characters: expected {want!r}, got {got!r}")
    if "pose" in expect and expect["pose"] is None and args.get("pose") is not None:
        problems.append(f"pose: expected random (null), got {args.get('pose')!r}")
    for tag in ([expect["posture"]] if "posture" in expect else []) + expect.get("tags", []):
        if tag not in pose:
            problems.append(f"pose {pose!r} lacks {tag!r}")
    for key, field in (("prompt_has", "prompt"), ("description_has", "description"),
                       ("query_has", "query")):  # fmt: skip
        if key in expect and not _has_all(args.get(field, ""), expect[key]):
            problems.append(f"{field} {args.get(field)!r} lacks {expect[key]}")
    prompt = str(args.get("prompt", "")).lower()
    for word in expect.get("prompt_lacks", []):
        if word.lower() in prompt:
            problems.append(f"prompt {prompt!r} should not contain {word!r}")
    return problems


def score(planner: Planner, cases: list[dict[str, Any]], verbose: bool = False) -> float:
    passed = 0
    for case in cases:
        plan = planner.plan(case["text"], context_for(case))
        problems = check(plan, case["expect"])
        passed += not problems
        if problems or verbose:
            status = "FAIL" if problems else "ok"
            print(f"{status} {case['where']} {case['text']!r}: {'; '.join(problems)}")
    rate = passed / len(cases) if cases else 0.0
    print(f"pass rate: {rate:.3f} ({passed}/{len(cases)})")
    return rate


def _planner(kind: str, model: str | None) -> Planner:
    if kind == "rules":
        from assistant.planners.rules import RulePlanner

        return RulePlanner()
    from assistant.planners import choose_planner
    from tools.settings import load_settings

    settings = load_settings(overrides={"llm": {"model": model}} if model else None)
    return choose_planner("ollama", settings.ollama_host(), settings.llm.model, print)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--planner", choices=("rules", "ollama"), default="rules")
    parser.add_argument("--model")
    parser.add_argument("--cases", type=Path, default=CASES_DIR)
    parser.add_argument("--verbose", action="store_true")
    options = parser.parse_args()
    score(_planner(options.planner, options.model), load_cases(options.cases), options.verbose)


if __name__ == "__main__":
    main()
