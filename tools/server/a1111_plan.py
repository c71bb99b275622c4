"""An A1111 prompt planned into our image specs: who it names, which pose, or plain text-to-image.

A library character named in the prompt, as a word (`sakura sitting`) or as `<char:NAME>`, is
drawn as that character by the same planner as every other door (its reference through the
IP-Adapter, its LoRA and trigger words, its tags); posture or action words in the prompt choose a
pose from the bank, else each image gets one from its seed. Several characters: one run per
character, like `--all-characters`. A prompt that names none is plain text-to-image
(`tools/generation/plain.py`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tools.generation.runtime import Runtime
    from tools.generation.specs import ImageSpec

# A tag ends before the next `<`: an unclosed one takes no later tag with it (nor scans on).
CHARACTER_TAG = re.compile(r"<char(?:acter)?:([^:<>]+)(?::[^<>]*)?>", re.IGNORECASE)
ANY_TAG = re.compile(r"<[^<>]*>")


@dataclass(frozen=True)
class PromptPlan:
    characters: list[str]
    pose: str | None
    prompt: str


def read_prompt(runtime: Runtime, prompt: str, notice: Callable[[str], None]) -> PromptPlan:
    """The characters a prompt names (tags first, then words, each once, in order), the pose
    text when it asks for one, and the prompt without its `<char:...>` tags."""
    from posebank.lexicon import action_words, posture_of

    named: list[str] = []
    for match in CHARACTER_TAG.finditer(prompt):
        wanted = match.group(1).strip()
        character, corrected = runtime.characters.resolve(wanted)
        if corrected:
            notice(f"using '{character.name}' for '{wanted}'")
        named.append(character.name)
    text = " ".join(CHARACTER_TAG.sub(" ", prompt).split())
    # Names inside other tags (`<lora:sakura:0.7>`) are a file's name, not the character's.
    lowered = ANY_TAG.sub(" ", text).lower()
    found = []
    for name in runtime.characters.names():
        match = re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", lowered)
        if match:
            found.append((match.start(), name))
    named += [name for _, name in sorted(found)]
    characters = list(dict.fromkeys(named))
    pose_text = _without(ANY_TAG.sub(" ", text), characters)
    asks_for_pose = posture_of(pose_text) is not None or bool(action_words(pose_text))
    return PromptPlan(characters, pose_text if asks_for_pose else None, text)


def _without(text: str, names: list[str]) -> str:
    for name in names:
        text = re.sub(rf"(?<![\w-]){re.escape(name)}(?![\w-])", " ", text, flags=re.IGNORECASE)
    return " ".join(text.split())


def plan_prompt(
    runtime: Runtime,
    prompt: str,
    count: int,
    seed: int | None,
    notice: Callable[[str], None],
) -> tuple[PromptPlan, list[ImageSpec]]:
    """The specs of one txt2img request: `count` images per named character, else plain."""
    from tools.generation.library_runs import plan_all_characters
    from tools.generation.plain import plan_plain

    plan = read_prompt(runtime, prompt, notice)
    if not plan.characters:
        return plan, plan_plain(runtime.settings, plan.prompt, count, seed)
    specs = plan_all_characters(
        runtime,
        pose=plan.pose,
        prompt=plan.prompt,
        count=count,
        seed=seed,
        names=plan.characters,
    )
    return plan, specs


def describe(plan: PromptPlan, specs: list[Any]) -> dict[str, Any]:
    """What `info` says about the plan beyond A1111's fields."""
    return {
        "characters": plan.characters,
        "poses": [spec.pose.model_dump() for spec in specs],
    }
