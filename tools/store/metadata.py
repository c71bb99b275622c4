"""`ImageMetadata`: what one saved image records about itself.

It is the `anime-chat` PNG chunk (plus the `path` the store adds) and the `record` column of the
generation index, so the shape is contract: fields keep their names, and `record()` dumps exactly
the fields that were given, in the order they are declared here (the order the producer writes
them), followed by any others (later features' fields travel through untouched).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict


class PoseRecord(BaseModel):
    model_config = ConfigDict(extra="allow")

    id: str | None  # None: a plain image, drawn without a pose
    tags: list[str]


class LoraRecord(BaseModel):
    model_config = ConfigDict(extra="allow")

    name: str
    weight: float


class ImageMetadata(BaseModel):
    model_config = ConfigDict(extra="allow")

    key: str | None = None
    request_id: str | None = None
    character: str
    posture: str
    pose: PoseRecord
    prompt: str
    negative_prompt: str
    user_prompt: str | None = None
    seed: int
    steps: int
    sampler: str
    guidance_scale: float
    width: int
    height: int
    model: str
    clip_skip: int
    controlnet: str
    controlnet_strength: float
    ipadapter: str
    ipadapter_weight: float
    collection: str | None = None
    loras: list[LoraRecord] = []
    lora_hashes: dict[str, str] = {}
    embeddings: list[str] = []
    # {name: A1111's short hash} of the installed embeddings used (A1111's `TI hashes`).
    ti_hashes: dict[str, str] = {}
    vae: str | None = None
    # "epsilon" or "v_prediction" (and zero_snr) when known (tools/engine/prediction.py).
    prediction_type: str | None = None
    zero_snr: bool | None = None
    fast_lora: str | None = None
    # What drawing the image declined, one line each (e.g. A1111's `AND`: tools/engine/
    # prompt_schedule.py `prompt_warnings`); absent when nothing was.
    warnings: list[str] = []
    # The second passes' records (tools/engine/second_pass.py), read by tools/store/a1111_fields.
    hires: dict[str, Any] | None = None
    face_detail: dict[str, Any] | None = None
    scores: dict[str, float | None] = {}
    accepted: bool = True
    attempts: int | None = None

    @classmethod
    def of(cls, meta: ImageMetadata | Mapping[str, Any]) -> ImageMetadata:
        """`meta` itself, or the mapping validated (callers that still build dicts)."""
        return meta if isinstance(meta, ImageMetadata) else cls.model_validate(meta)

    def record(self, **extra: Any) -> dict[str, Any]:
        """The JSON-ready dict: the given fields, then `extra` (replacing a field keeps its
        place, a new one goes last)."""
        return {**self.model_dump(exclude_unset=True), **extra}
