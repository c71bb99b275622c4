"""The MCP tools' argument models, built on the chat toolbox's `Args` models (one source).

Fields shared with the planner's tools keep the toolbox's definitions (types, bounds and
descriptions), so the MCP input schemas and the Ollama tool schemas cannot drift apart; only what
MCP adds (several characters in one `draw`, a reference image, the gallery query, job ids) is new.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from tools.generation.toolbox import (
    CreateCharacterArgs,
    FindPoseArgs,
    GenerateArgs,
    ListCharactersArgs,
    ShowResultsArgs,
    _Args,
)


class DrawArgs(_Args):
    character: str | None = Field(
        None, min_length=1, description="one character name from the library"
    )
    characters: list[str] | Literal["all"] | None = Field(
        None, description='several character names from the library, or "all" (as `batch`)'
    )
    pose: str | None = GenerateArgs.model_fields["pose"]
    prompt: str = GenerateArgs.model_fields["prompt"]
    count: int = GenerateArgs.model_fields["count"]
    seed: int | None = GenerateArgs.model_fields["seed"]

    @model_validator(mode="after")
    def _one_way_to_name(self) -> DrawArgs:
        if (self.character is None) == (self.characters is None):
            raise ValueError('give either character or characters (a list, or "all")')
        return self


class CreateCharacterFromArgs(CreateCharacterArgs):
    description: str = Field(
        "", description="what the character looks like (required without an image)"
    )
    image: str | None = Field(
        None,
        description="absolute path of a reference image on this machine; with it, the "
        "character is added from the image (name required) instead of drawn from the text",
    )

    @model_validator(mode="after")
    def _description_or_image(self) -> CreateCharacterFromArgs:
        if not self.image and not self.description.strip():
            raise ValueError("give a description (a new character sheet) or an image path")
        if self.image and not self.name:
            raise ValueError("a character added from an image needs a name")
        return self


class SearchImagesArgs(ShowResultsArgs):
    q: str = Field(
        "",
        description="words every image must match (prompt, pose tags, character, seed, model); "
        "empty = all",
    )
    starred: bool | None = Field(None, description="true = only starred images")


JOB_ID = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$", description="a job id")


class JobArgs(_Args):
    job: str = JOB_ID


class ChatArgs(_Args):
    text: str = Field(min_length=1, description="the person's request in their own words")
    session: str | None = Field(
        None,
        max_length=64,
        description="a session id from an earlier chat reply, so follow-ups ('3 more of "
        "that') know what came before; null = this connection's conversation",
    )


def schema(model: type[_Args]) -> dict[str, Any]:
    """The tool's MCP `inputSchema`: the model's own JSON schema (MCP clients read JSON Schema
    whole, so, unlike Ollama's, nothing is flattened)."""
    parameters = model.model_json_schema()
    parameters.pop("title", None)
    return parameters


__all__ = [
    "ChatArgs",
    "CreateCharacterFromArgs",
    "DrawArgs",
    "FindPoseArgs",
    "JobArgs",
    "ListCharactersArgs",
    "SearchImagesArgs",
    "schema",
]
