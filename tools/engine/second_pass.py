"""Second passes over a drawn image: A1111's hires fix, then ADetailer-style face detail.

`apply_second_passes` is the one call the producer makes between drawing an image and gating it:
each pass that `output.hires` / `output.face_detail` turns on runs on every image, with the
job's own prompt embeddings, LoRAs, seed and IP-Adapter reference, and records itself in the
image's metadata (`meta["hires"]`, `meta["face_detail"]`). The pipelines they use are built with
`from_pipe` from the engine's warm one: the same modules, no weights loaded twice.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tools.engine.face_detail import face_detail_pass
from tools.engine.hires import hires_pass

if TYPE_CHECKING:
    from PIL import Image

    from tools.engine.rendering import Engine, RenderJob, StepCallback
    from tools.settings import OutputSettings


def apply_second_passes(
    engine: Engine,
    output: OutputSettings,
    jobs: list[RenderJob],
    images: list[Image.Image],
    metas: list[dict[str, Any]],
    on_step: StepCallback | None = None,
) -> list[Image.Image]:
    """The images after the second passes `output` (the job's settings: a warm engine may
    have been loaded for another job's) turns on; each pass is recorded in the image's `meta`
    (updated in place). With neither pass on the images come back as they are."""
    if output.hires is None and output.face_detail is None:
        return images
    finished = []
    for job, image, meta in zip(jobs, images, metas, strict=True):
        if output.hires is not None:
            image, meta["hires"] = hires_pass(engine, job, image, output.hires, on_step)
        if output.face_detail is not None:
            image, meta["face_detail"] = face_detail_pass(
                engine, job, image, output.face_detail, on_step
            )
        finished.append(image)
    return finished
