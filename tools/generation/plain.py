"""Plain text-to-image: a prompt that names no character, drawn as the prompt alone.

Doors that speak other tools' protocols (the A1111 API) need what those tools do by default: the
prompt as written, no reference, no pose. Such an image is still one `ImageSpec` of a journal
job (`spec.plain`), saved by the output store, indexed and listed in the gallery like any other;
it has no character (`""`) and no pose (`PoseRef(id=None, tags=[])`); with `spec.init_image` it
is A1111's img2img (`tools/engine/img2img.py`). Its job's settings set
`models.controlnet_strength` to 0, so the blank pose map the ControlNet pipeline is handed
changes nothing, here or in the hires pass. There is no character to be consistent with, so the
gate's face and aesthetic scores are recorded and the image is kept: re-rolling would change the
seed the client asked for.
"""

from __future__ import annotations

import time
import uuid
from typing import TYPE_CHECKING, Any, Protocol

from tools.engine.extra_networks import embeddings_named, vae_label
from tools.engine.lora_hashes import lora_hashes
from tools.engine.rendering import RenderJob
from tools.engine.second_pass import apply_second_passes
from tools.generation.image_record import finish_record
from tools.generation.planner import check_count, check_seed, new_seed
from tools.generation.specs import SEED_LIMIT, ImageSpec, InitImage, OutputRecord, PoseRef
from tools.quality.gate import Scores

if TYPE_CHECKING:
    from PIL import Image

    from tools.engine.rendering import Engine, StepCallback
    from tools.quality.gate import QualityGate
    from tools.settings import Settings
    from tools.store.output_store import OutputStore

PLAIN_POSTURE = "txt2img"
NO_POSE = PoseRef(id=None, tags=[])


class Producer(Protocol):
    """What of `tools.generation.producer.Producer` a plain image uses (that module imports
    this one, so the type is spelled here)."""

    settings: Settings
    engine: Engine
    gate: QualityGate
    store: OutputStore

    def negative_prompt(self) -> str: ...

    def saved(self, spec: ImageSpec) -> OutputRecord | None: ...

    def draw(
        self, jobs: list[RenderJob], ipadapter_weight: float, on_step: StepCallback | None
    ) -> list[Image.Image]: ...


def plan_plain(
    settings: Settings, prompt: str, count: int, seed: int | None, request_id: str | None = None
) -> list[ImageSpec]:
    """`count` plain images of `prompt`, seeds S+i (as the planner numbers them)."""
    check_count(count, settings.output.max_batch)
    check_seed(seed)
    base_seed = seed if seed is not None else new_seed()
    request_id = request_id or uuid.uuid4().hex[:12]
    return [
        ImageSpec(
            key=f"{request_id}:{index}",
            request_id=request_id,
            index=index,
            character="",
            pose=NO_POSE,
            posture=PLAIN_POSTURE,
            user_prompt=prompt,
            seed=(base_seed + index) % SEED_LIMIT,
            plain=True,
        )
        for index in range(count)
    ]


def plain_metadata(producer: Producer, spec: ImageSpec) -> dict[str, Any]:
    """The image's record, in the producer's field order, without character or pose."""
    settings, engine = producer.settings, producer.engine
    models, output = settings.models, settings.output
    negative = producer.negative_prompt()
    loras = engine.lora_set(spec.user_prompt, negative)
    labels = engine.labels()
    meta = {
        "key": spec.key,
        "request_id": spec.request_id,
        "character": "",
        "posture": spec.posture,
        "pose": spec.pose.model_dump(),
        "prompt": spec.user_prompt,
        "negative_prompt": negative,
        "user_prompt": spec.user_prompt,
        "seed": spec.seed,
        "steps": engine.sampling.steps,
        "sampler": engine.sampling.sampler,
        "guidance_scale": engine.sampling.guidance_scale,
        "width": output.resolution.width,
        "height": output.resolution.height,
        "model": labels["model"],
        "clip_skip": models.clip_skip,
        "controlnet": labels["controlnet"],
        "controlnet_strength": models.controlnet_strength,
        "ipadapter": labels["ipadapter"],
        "ipadapter_weight": 0.0,
        "collection": spec.collection,
        "loras": [lora.as_dict() for lora in loras],
        "lora_hashes": lora_hashes(loras, settings.paths),
        "embeddings": embeddings_named(f"{spec.user_prompt}, {negative}", settings.paths),
        "vae": vae_label(models.vae),
    }
    return finish_record(meta, engine, settings.paths)


def plain_scores(producer: Producer, image: Image.Image) -> Scores:
    from tools.quality.gate import face_score

    if not producer.settings.quality.enabled:
        return Scores()
    aesthetic = producer.gate.aesthetic.score(image)
    return Scores(
        face=face_score(image), aesthetic=None if aesthetic is None else round(aesthetic, 4)
    )


def _img2img(
    producer: Producer,
    job: RenderJob,
    init: InitImage,
    size: tuple[int, int],
    on_step: StepCallback | None,
) -> Image.Image:
    from pathlib import Path

    from PIL import Image

    from tools.engine.img2img import img2img_pass
    from tools.errors import UserError

    if not Path(init.path).is_file():
        # The server removes an init image once its job has ended (a retried failed job).
        raise UserError(
            f"the img2img init image {init.path} is gone (removed when its job ended)",
            "send the img2img request again",
        )
    with Image.open(init.path) as start:
        start.load()
        return img2img_pass(producer.engine, job, start, init.denoise, size, on_step)


def produce_plain(
    producer: Producer, spec: ImageSpec, on_step: StepCallback | None = None
) -> OutputRecord:
    """Draw, score and save one plain spec; a spec already saved returns its record."""
    from PIL import Image

    saved = producer.saved(spec)
    if saved is not None:
        return saved
    started = time.perf_counter()
    resolution = producer.settings.output.resolution
    meta = plain_metadata(producer, spec)
    blank = Image.new("RGB", (resolution.width, resolution.height))
    job = RenderJob(meta["prompt"], meta["negative_prompt"], blank, None, spec.seed)
    if spec.init_image is None:
        image = producer.draw([job], 0.0, on_step)[0]
    else:
        image = _img2img(producer, job, spec.init_image, blank.size, on_step)
        meta["init_image"] = spec.init_image.model_dump()
    image = apply_second_passes(
        producer.engine, producer.settings.output, [job], [image], [meta], on_step
    )[0]
    scores = plain_scores(producer, image)
    record = OutputRecord(
        path=None,
        character="",
        pose=spec.pose,
        seed=spec.seed,
        scores=scores,
        seconds=round(time.perf_counter() - started, 3),
    )
    path = producer.store.save(
        image,
        {
            **meta,
            "scores": scores.model_dump(),
            "accepted": True,
            "attempts": 1,
            "output": record.model_dump(mode="json"),
        },
        key=spec.key,
    )
    record.path = str(path)
    return record
