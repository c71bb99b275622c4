"""The fields every image record (`tools.store.metadata.ImageMetadata`) ends with, whichever
producer drew it (a character image, a plain one): the embeddings' A1111 hashes, what the engine
was loaded with, and the warnings for what drawing the prompt declined."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tools.engine.lora_hashes import embedding_hashes
from tools.engine.prompt_schedule import prompt_warnings

if TYPE_CHECKING:
    from tools.engine.rendering import Engine
    from tools.settings import Paths


def finish_record(meta: dict[str, Any], engine: Engine, paths: Paths) -> dict[str, Any]:
    """`meta` (the drawing settings, in the record's order) with the closing fields added;
    `warnings` only when there is one, so a record without any keeps its old shape."""
    meta["ti_hashes"] = embedding_hashes(meta["embeddings"], paths)
    meta.update(engine.loaded_with())
    warnings = prompt_warnings(meta["prompt"])
    if warnings:
        meta["warnings"] = warnings
    return meta
