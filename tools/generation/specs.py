"""The plain data that flows from a front end's plan to the worker and back.

A `GenerationRequest` is what a person asked for; the planner turns it into `ImageSpec`s (one per
image, everything needed to draw it again exactly; the job journal stores them as JSON); the
producer turns each spec into an `OutputRecord`, one entry of the contract's `outputs` list.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from tools.quality.gate import Scores

SEED_LIMIT = 2**32


class GenerationRequest(BaseModel):
    character: str
    pose: str | None = None
    random_pose: bool = False
    posture: str | None = None
    prompt: str = ""
    count: int = 1
    seed: int | None = None
    collection: str | None = None
    request_id: str | None = None


class PoseRef(BaseModel):
    """A pose as plans and records report it: the bank's id (None when no bank answered, in a
    chat plan) and its tags."""

    model_config = ConfigDict(frozen=True)

    id: str | None
    tags: list[str]


class SheetImage(BaseModel):
    """What makes a spec a character-sheet image: the character is not in the library yet, so
    it is drawn from its prompt tags (with `reference` through the IP-Adapter when given) and
    written to `path` in the sheet's staging folder, not to the output store."""

    tags: str
    reference: str | None = None
    path: str


class InitImage(BaseModel):
    """An img2img start (A1111's `init_images`): a PNG the server wrote under the state folder,
    redrawn with `denoise` of the steps (0: no step, the image itself)."""

    path: str
    denoise: float = Field(0.75, ge=0.0, le=1.0)


class ImageSpec(BaseModel):
    """Everything needed to draw one image again, exactly."""

    key: str
    request_id: str
    index: int
    character: str
    pose: PoseRef
    posture: str
    user_prompt: str = ""
    seed: int
    collection: str | None = None
    sheet: SheetImage | None = None
    # Nothing to draw: the worker only calibrates the character (a new one, made by a sheet).
    calibration_only: bool = False
    # No character and no pose: the user's prompt alone (tools/generation/plain.py).
    plain: bool = False
    init_image: InitImage | None = None


class OutputRecord(BaseModel):
    """One entry of the contract's `outputs` list."""

    path: str | None
    character: str
    pose: PoseRef
    seed: int
    scores: Scores = Field(default_factory=Scores)
    accepted: bool = True
    attempts: int = 1
    reasons: list[str] = Field(default_factory=list)
    rejected: list[str] = Field(default_factory=list)
    seconds: float | None = None
