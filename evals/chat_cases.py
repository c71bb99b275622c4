"""Score a planner on the development cases in `evals/chat_cases/`; the pass rate is the last line.

    python -m evals.chat_cases [--cases FILE_OR_DIR] [--planner rules|ollama] [--model NAME]
                               [--verbose]

Cases are JSON lines (`*.jsonl`) or a YAML list (`*.yaml`), each {"text", "expect",
"previous"?, "characters"?}. `expect` keys on the first call: tool, calls (how many),
character, characters, count, seed, pose (null = random), posture, tags, prompt_has,
prompt_lacks, reply_has, name, description_has, query_has. Keys on the whole plan: `tools` (the
tools of the calls, in order), `each` ({character: {count, posture, tags, pose, prompt_has,
prompt_lacks}}: exactly these characters are drawn, and each one's calls carry its own count,
posture and scene words) and `create` ({name, description_has, description_lacks} on the
create_character call). A case's `class` groups it in the per-class report (else its file
does). The library defaults to `LIBRARY`, and poses resolve to their own words
so the score measures the planner, not the pose bank.

These are development sets: the planner was tuned on them. Generalisation is measured on cases
written after a change, never on these.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import yaml

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


def load_cases(where: Path = CASES_DIR) -> list[dict[str, Any]]:
    """The cases of one file, or of every `*.jsonl` and `*.yaml` file in a folder."""
    found = [*where.glob("*.jsonl"), *where.glob("*.yaml")] if where.is_dir() else [where]
    paths = sorted(found)
    cases = []
    for path in paths:
        text = path.read_text(encoding="utf-8")
        if path.suffix == ".yaml":
            for number, case in enumerate(yaml.safe_load(text) or [], start=1):
                cases.append({**case, "where": f"{path.name}#{number}"})
            continue
        for number, line in enumerate(text.splitlines(), start=1):
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


def _drawn(call: PlannedCall) -> list[str]:
    if call.tool == "generate":
        return [call.args["character"]]
    if call.tool == "batch":
        return list((call.resolved or {}).get("characters") or [])
    return []


def check_each(plan: Plan, each: dict[str, dict[str, Any]]) -> list[str]:
    """Exactly the characters of `each` are drawn, each with its own count, pose and scene."""
    problems = []
    drawn = {name for call in plan.calls for name in _drawn(call)}
    if drawn != set(each):
        problems.append(f"drawn {sorted(drawn)}, expected {sorted(each)}")
    for name, want in each.items():
        calls = [call for call in plan.calls if name in _drawn(call)]
        if not calls:
            continue
        count = sum(call.args["count"] for call in calls)
        if "count" in want and count != want["count"]:
            problems.append(f"{name}: count {count}, expected {want['count']}")
        seeds = [call.args.get("seed") for call in calls]
        if "seed" in want and seeds != [want["seed"]]:
            problems.append(f"{name}: seeds {seeds}, expected [{want['seed']}]")
        for call in calls:
            pose = call.args.get("pose") or ""
            prompt = str(call.args.get("prompt") or "").lower()
            if "pose" in want and want["pose"] is None and call.args.get("pose") is not None:
                problems.append(f"{name}: pose {pose!r}, expected random (null)")
            wanted = ([want["posture"]] if "posture" in want else []) + want.get("tags", [])
            problems += [f"{name}: pose {pose!r} lacks {t!r}" for t in wanted if t not in pose]
            problems += [
                f"{name}: prompt {prompt!r} lacks {w!r}"
                for w in want.get("prompt_has", [])
                if w.lower() not in prompt
            ]
            problems += [
                f"{name}: prompt {prompt!r} has {w!r}"
                for w in want.get("prompt_lacks", [])
                if w.lower() in prompt
            ]
    return problems


def check_create(plan: Plan, want: dict[str, Any]) -> list[str]:
    created = [call for call in plan.calls if call.tool == "create_character"]
    if not created:
        return ["no create_character call"]
    args = created[0].args
    problems = []
    if "name" in want and args.get("name") != want["name"]:
        problems.append(f"name: expected {want['name']!r}, got {args.get('name')!r}")
    description = str(args.get("description", "")).lower()
    problems += [
        f"description {description!r} lacks {w!r}"
        for w in want.get("description_has", [])
        if w.lower() not in description
    ]
    problems += [
        f"description {description!r} has {w!r}"
        for w in want.get("description_lacks", [])
        if w.lower() in description
    ]
    return problems


def check(plan: Plan, expect: dict[str, Any]) -> list[str]:
    """What is wrong with the plan; empty when it passes."""
    if "calls" in expect and len(plan.calls) != expect["calls"]:
        return [f"expected {expect['calls']} calls, got {len(plan.calls)}"]
    problems = []
    if "tools" in expect and [call.tool for call in plan.calls] != expect["tools"]:
        problems.append(f"tools {[call.tool for call in plan.calls]}, expected {expect['tools']}")
    if "each" in expect:
        problems += check_each(plan, expect["each"])
    if "create" in expect:
        problems += check_create(plan, expect["create"])
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


def failures(planner: Planner, cases: list[dict[str, Any]], verbose: bool = False) -> list[str]:
    """Run every case, print the failing ones (all with `verbose`); the `where` of each failure."""
    failed = []
    for case in cases:
        plan = planner.plan(case["text"], context_for(case))
        problems = check(plan, case["expect"])
        if problems:
            failed.append(case["where"])
        if problems or verbose:
            status = "FAIL" if problems else "ok"
            print(f"{status} {case['where']} {case['text']!r}: {'; '.join(problems)}")
    return failed


def case_class(case: dict[str, Any]) -> str:
    """The class a case belongs to: its `class`, else the file it is in."""
    return case.get("class") or case["where"].split(":")[0].split("#")[0]


def score(planner: Planner, cases: list[dict[str, Any]], verbose: bool = False) -> float:
    """Print the pass rate of each class, then of all cases (the last line); return the latter."""
    failed = set(failures(planner, cases, verbose))
    classes: dict[str, list[bool]] = {}
    for case in cases:
        classes.setdefault(case_class(case), []).append(case["where"] not in failed)
    for name, results in classes.items():
        print(f"  {name}: {sum(results) / len(results):.3f} ({sum(results)}/{len(results)})")
    passed = len(cases) - len(failed)
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
