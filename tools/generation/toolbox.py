"""The tools a planner can call: one pydantic `Args` model per tool, and its implementation.

The `Args` models are the single source of truth: the JSON schema the LLM sees is generated from
them (descriptions from `prompts/tool_<name>.txt`), both planners validate with them, and the
executor runs them. Implementations take a `Runtime` and touch the heavy services only when run.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from prompts import load_prompt
from tools.errors import UserError
from tools.text import plural

if TYPE_CHECKING:
    from tools.generation.runtime import Runtime

MAX_COUNT = 100


class _Args(BaseModel):
    # Small models add stray keys; ignoring them beats failing a good call.
    model_config = ConfigDict(extra="ignore")


class GenerateArgs(_Args):
    character: str = Field(min_length=1, description="a character name from the library")
    pose: str | None = Field(
        None, description='posture and action words, e.g. "sitting reading"; null = random pose'
    )
    prompt: str = Field("", description="scene, outfit, expression, background; may be empty")
    count: int = Field(1, ge=1, le=MAX_COUNT, description="how many images")
    seed: int | None = Field(None, description="seed to reproduce a result; null = new seeds")


class BatchArgs(_Args):
    characters: list[str] | Literal["all"] = Field(
        description='character names from the library, or "all"'
    )
    pose: str | None = Field(None, description="posture and action words; null = random pose")
    prompt: str = Field("", description="scene, outfit, expression, background; may be empty")
    count: int = Field(1, ge=1, le=MAX_COUNT, description="how many images per character")


class CreateCharacterArgs(_Args):
    name: str | None = Field(None, description="the new character's name, if the person gave one")
    description: str = Field(min_length=1, description="what the character looks like")


class ListCharactersArgs(_Args):
    pass


class FindPoseArgs(_Args):
    query: str = Field(min_length=1, description="posture and action words")
    k: int = Field(3, ge=1, le=20, description="how many poses to return")


class ShowResultsArgs(_Args):
    character: str | None = Field(None, description="only this character's images; null = all")
    limit: int = Field(8, ge=1, le=100, description="how many recent images")


@dataclass
class ToolResult:
    """What one executed call produced: a line for the reply, images made, and raw data."""

    text: str
    outputs: list[Any] = field(default_factory=list)
    data: Any = None
    seconds: float = 0.0


OnImage = Callable[[Any], None]


@dataclass(frozen=True)
class Tool:
    name: str
    args_model: type[_Args]
    run: Callable[[Runtime, Any, OnImage | None], ToolResult]

    @property
    def description(self) -> str:
        return load_prompt(f"tool_{self.name}")

    def schema(self) -> dict[str, Any]:
        """The function schema in the shape Ollama (and OpenAI) tool calling expects."""
        parameters = self.args_model.model_json_schema()
        parameters.pop("title", None)
        parameters["properties"] = {
            name: flat_property(prop) for name, prop in parameters.get("properties", {}).items()
        }
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": parameters,
            },
        }


def flat_property(prop: dict[str, Any]) -> dict[str, Any]:
    """One argument's schema without `anyOf`: ollama-python's `Tool` model keeps only `type`
    (a name or a list of names), `items`, `description` and `enum`, so an optional field would
    reach the model untyped and its bounds would vanish. Bounds are also said in words."""
    options = prop.get("anyOf", [prop])
    types: list[str] = []
    flat: dict[str, Any] = {}
    constants: list[Any] = []
    for option in options:
        if option.get("type") not in types:
            types.append(option["type"])
        if "items" in option:
            flat["items"] = option["items"]
        if "const" in option:
            constants.append(option["const"])
        constants.extend(option.get("enum", []))
        for bound in ("minimum", "maximum", "minLength", "maxLength"):
            if bound in option:
                flat[bound] = option[bound]
    flat["type"] = types[0] if len(types) == 1 else types
    if constants and len(types) == 1:
        flat["enum"] = constants
    words = [prop.get("description", "")]
    unsaid = [json.dumps(c) for c in constants if json.dumps(c) not in words[0]]
    if unsaid and len(types) > 1:
        words.append("or " + " or ".join(unsaid))
    if "minimum" in flat and "maximum" in flat:
        words.append(f"({flat['minimum']} to {flat['maximum']})")
    elif "minimum" in flat:
        words.append(f"(at least {flat['minimum']})")
    flat["description"] = " ".join(word for word in words if word)
    return flat


def _generation_request(character: str, pose: str | None, prompt: str, count: int, seed):
    from tools.generation.specs import GenerationRequest

    return GenerationRequest(
        character=character,
        pose=pose,
        random_pose=pose is None,
        prompt=prompt,
        count=count,
        seed=seed,
        collection=None,
    )


def _render(runtime: Runtime, request: Any, on_image: OnImage | None) -> list[Any]:
    """Images are drawn by the warm worker (one process owns the GPU), never in the chat."""
    from tools.jobs.client import run_in_worker

    specs = runtime.planner.plan(request)
    return run_in_worker(runtime.settings, specs, on_image, cancel_on_interrupt=True)


def _summary(records: list[Any], what: str, seconds: float) -> str:
    accepted = sum(1 for record in records if record.accepted)
    return f"{what}: {accepted} accepted, {len(records) - accepted} rejected in {seconds:.1f} s"


def run_generate(runtime: Runtime, args: GenerateArgs, on_image: OnImage | None) -> ToolResult:
    started = time.monotonic()
    request = _generation_request(args.character, args.pose, args.prompt, args.count, args.seed)
    records = _render(runtime, request, on_image)
    seconds = time.monotonic() - started
    return ToolResult(_summary(records, args.character, seconds), records, seconds=seconds)


def _batch_names(runtime: Runtime, characters: list[str] | Literal["all"]) -> list[str]:
    if characters == "all":
        names = [character.name for character in runtime.characters.list()]
        if not names:
            raise UserError(
                "the character library is empty",
                "add one with `anime-gen characters add NAME --image PATH`",
            )
        return names
    return list(characters)


def run_batch(runtime: Runtime, args: BatchArgs, on_image: OnImage | None) -> ToolResult:
    started = time.monotonic()
    records: list[Any] = []
    for name in _batch_names(runtime, args.characters):
        request = _generation_request(name, args.pose, args.prompt, args.count, None)
        records.extend(_render(runtime, request, on_image))
    seconds = time.monotonic() - started
    return ToolResult(_summary(records, "batch", seconds), records, seconds=seconds)


def run_create_character(
    runtime: Runtime, args: CreateCharacterArgs, on_image: OnImage | None
) -> ToolResult:
    from tools.generation.character_sheet import create_character_sheet

    character = create_character_sheet(runtime, args.description, args.name)
    return ToolResult(
        f"created character {character.name} (reference and turnaround sheet in "
        f"{character.folder})",
        data=character,
    )


def run_list_characters(
    runtime: Runtime, args: ListCharactersArgs, on_image: OnImage | None
) -> ToolResult:
    characters = runtime.characters.list()
    if not characters:
        return ToolResult(
            "no characters yet: add one with `anime-gen characters add NAME --image PATH`", data=[]
        )
    lines = [f"  {c.name}" + (f": {c.description}" if c.description else "") for c in characters]
    return ToolResult(
        f"{plural(len(characters), 'character')}:\n" + "\n".join(lines), data=characters
    )


def run_find_pose(runtime: Runtime, args: FindPoseArgs, on_image: OnImage | None) -> ToolResult:
    matches = runtime.poses.search(args.query, k=args.k)
    lines = [f"  {m.pose.id}  {', '.join(m.pose.tags)}  (score {m.score:.2f})" for m in matches]
    return ToolResult(f"poses for '{args.query}':\n" + "\n".join(lines), data=matches)


def run_show_results(
    runtime: Runtime, args: ShowResultsArgs, on_image: OnImage | None
) -> ToolResult:
    from tools.generation.specs import OutputRecord

    rows = runtime.index.recent(limit=args.limit, character=args.character)
    records = [OutputRecord.model_validate(row["record"]) for row in rows]
    if not records:
        return ToolResult("nothing made yet", data=[])
    return ToolResult(plural(len(records), "recent image"), outputs=records, data=records)


TOOLS: dict[str, Tool] = {
    tool.name: tool
    for tool in (
        Tool("generate", GenerateArgs, run_generate),
        Tool("batch", BatchArgs, run_batch),
        Tool("create_character", CreateCharacterArgs, run_create_character),
        Tool("list_characters", ListCharactersArgs, run_list_characters),
        Tool("find_pose", FindPoseArgs, run_find_pose),
        Tool("show_results", ShowResultsArgs, run_show_results),
    )
}


def tool_schemas() -> list[dict[str, Any]]:
    return [tool.schema() for tool in TOOLS.values()]


def validate_args(name: str, arguments: dict[str, Any]) -> _Args:
    """Validated `Args` for a call; raises `KeyError` for an unknown tool, pydantic's error else."""
    return TOOLS[name].args_model.model_validate(arguments)
