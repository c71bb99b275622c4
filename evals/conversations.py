"""Score a planner on scripted conversations: the plan expected after each turn.

    python -m evals.conversations [--cases FILE] [--planner rules|ollama] [--model NAME]
                                  [--verbose]

Each conversation in `evals/conversations_dev.yaml` is {"name", "characters"?, "turns": [{"text",
"expect"}]}; `expect` takes the keys of `evals.chat_cases` (plus `seed` under `each`). Nothing is
rendered: every generating call "makes" its images (image i of turn t has seed t*100+i and its
call's pose tags), and a created character joins the library, so the session memory is the one
the REPL keeps. The pass rate over all turns is the last line. A development set: tuned on.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import yaml

from assistant.planners.base import Plan, Planner, PlannerContext, PoseRef
from assistant.session import Session
from evals.chat_cases import LIBRARY, _planner, check, words_as_pose

CASES = Path(__file__).with_name("conversations_dev.yaml")


def load_conversations(path: Path = CASES) -> list[dict[str, Any]]:
    return yaml.safe_load(path.read_text(encoding="utf-8")) or []


def made_images(plan: Plan, turn: int) -> list[tuple[Any, list[Any]]]:
    """What each call of the plan would have made, as the output records the session reads."""
    made, number = [], 0
    for call in plan.calls:
        if call.tool not in ("generate", "batch"):
            made.append((call, []))
            continue
        pose = (call.resolved or {}).get("pose") or {"id": None, "tags": []}
        names = (call.resolved or {}).get("characters") or []
        records = []
        for name in names:
            for _ in range(call.args["count"]):
                number += 1
                records.append(SimpleNamespace(
                    seed=turn * 100 + number,
                    pose=PoseRef(id=pose["id"], tags=list(pose["tags"])),
                    character=name,
                ))  # fmt: skip
        made.append((call, records))
    return made


def failures(
    planner: Planner, conversations: list[dict[str, Any]], verbose: bool = False
) -> tuple[list[str], int]:
    """Run every conversation; the `name#turn` of each failing turn, and how many turns ran."""
    failed, turns = [], 0
    for conversation in conversations:
        session = Session()
        characters = list(conversation.get("characters", LIBRARY))
        for number, turn in enumerate(conversation["turns"], start=1):
            turns += 1
            context = PlannerContext(
                characters=list(characters),
                find_pose=words_as_pose,
                previous=session.previous,
                mentioned=list(session.mentioned),
            )
            plan = planner.plan(turn["text"], context)
            problems = check(plan, turn["expect"])
            where = f"{conversation['name']}#{number}"
            if problems:
                failed.append(where)
            if problems or verbose:
                status = "FAIL" if problems else "ok"
                print(f"{status} {where} {turn['text']!r}: {'; '.join(problems)}")
            made = made_images(plan, number)
            characters += [
                call.args["name"]
                for call, _ in made
                if call.tool == "create_character" and call.args.get("name")
            ]
            session.remember_turn(made)
    return failed, turns


def score(planner: Planner, conversations: list[dict[str, Any]], verbose: bool = False) -> float:
    failed, turns = failures(planner, conversations, verbose)
    rate = (turns - len(failed)) / turns if turns else 0.0
    print(f"pass rate: {rate:.3f} ({turns - len(failed)}/{turns} turns)")
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--planner", choices=("rules", "ollama"), default="rules")
    parser.add_argument("--model")
    parser.add_argument("--cases", type=Path, default=CASES)
    parser.add_argument("--verbose", action="store_true")
    options = parser.parse_args()
    score(
        _planner(options.planner, options.model), load_conversations(options.cases), options.verbose
    )


if __name__ == "__main__":
    main()
