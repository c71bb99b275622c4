"""From a request ("sakura, sitting reading, 3 images") to images on disk.

`Generator.plan` resolves the character, a pose per image and a seed per image (seed S+i, so the
same request with the same seed gives the same pixels) into `ImageSpec`s, which are plain data the
job journal can store. `Generator.produce_batch` turns specs into saved, scored images, drawing
`batch_size` of them per engine call (`produce` is the one-spec case); it is idempotent on each
spec's key.
"""

from __future__ import annotations

import random
import secrets
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel, Field

from prompts import load_prompt
from tools.engine.extra_networks import default_negative_prompt, embeddings_named, vae_label
from tools.engine.lora_hashes import lora_hashes
from tools.engine.prompt_syntax import LoraRequest
from tools.engine.rendering import RenderJob, StepCallback
from tools.engine.second_pass import apply_second_passes
from tools.errors import UserError
from tools.quality.gate import Scores

if TYPE_CHECKING:
    from PIL import Image

    from posebank import Pose
    from tools.characters.library import Character
    from tools.generation.runtime import Runtime

T = TypeVar("T")

SEED_LIMIT = 2**32
# A re-roll after a rejection moves the seed by a large odd stride so it never meets S+i.
REROLL_STRIDE = 1_000_003


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
    id: str
    tags: list[str]


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


ImageCallback = Callable[[OutputRecord], None]


@dataclass(frozen=True)
class _Draft:
    """One spec's inputs, looked up once for its first try and any re-rolls."""

    spec: ImageSpec
    character: Character
    pose: Pose
    pose_image: Image.Image


def character_loras(character: Character) -> tuple[LoraRequest, ...]:
    return tuple(LoraRequest(lora.name, lora.weight) for lora in character.loras)


def chunked(items: list[T], size: int) -> list[list[T]]:
    return [items[start : start + size] for start in range(0, len(items), size)]


def reroll_seed(seed: int, attempt: int) -> int:
    return (seed + (attempt - 1) * REROLL_STRIDE) % SEED_LIMIT


def _check_count(count: int, limit: int) -> None:
    if count < 1:
        raise UserError(f"count must be at least 1 (got {count})", "e.g. --batch 3")
    if count > limit:
        raise UserError(
            f"count {count} is more than output.max_batch ({limit})",
            "split the request, or raise output.max_batch in the config",
        )


def _check_seed(seed: int | None) -> None:
    if seed is not None and not 0 <= seed < SEED_LIMIT:
        raise UserError(f"seed must be between 0 and {SEED_LIMIT - 1} (got {seed})")


def compose_prompt(
    character_tags: str, character_name: str, pose: Pose, user_prompt: str, trigger: str = ""
) -> str:
    """Quality tags, the character (its LoRA's trigger words first), the pose in words, then
    what the user asked for. Every part may use A1111 syntax: the engine parses the whole."""
    pose_words = ", ".join(tag.replace("_", " ") for tag in pose.tags)
    parts = [
        load_prompt("quality_tags"),
        trigger.strip(),
        character_tags or character_name,
        pose_words,
        user_prompt.strip(),
    ]
    return ", ".join(part for part in parts if part)


class Generator:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.settings = runtime.settings

    # -- planning ------------------------------------------------------------------------------
    def plan(self, request: GenerationRequest) -> list[ImageSpec]:
        _check_count(request.count, self.settings.output.max_batch)
        _check_seed(request.seed)
        character, _ = self.runtime.characters.resolve(request.character)
        base_seed = request.seed if request.seed is not None else secrets.randbelow(SEED_LIMIT)
        poses = self._poses_for(request, base_seed)
        request_id = request.request_id or uuid.uuid4().hex[:12]
        return [
            ImageSpec(
                key=f"{request_id}:{index}",
                request_id=request_id,
                index=index,
                character=character.name,
                pose=PoseRef(id=pose.id, tags=list(pose.tags)),
                posture=pose.posture,
                user_prompt=request.prompt,
                seed=(base_seed + index) % SEED_LIMIT,
                collection=request.collection,
            )
            for index, pose in enumerate(poses)
        ]

    def _poses_for(self, request: GenerationRequest, base_seed: int) -> list[Pose]:
        bank = self.runtime.poses
        if request.pose and not request.random_pose:
            exact = self._pose_by_id(request.pose)
            if exact is not None:
                return [exact] * request.count
            match = bank.search(request.pose, k=1, posture=request.posture)
            if not match:
                raise UserError(f"no pose matches '{request.pose}'", "see `anime-gen poses list`")
            return [match[0].pose] * request.count
        rng = random.Random(base_seed)
        return bank.variations(request.count, rng, posture=request.posture)

    def _pose_by_id(self, text: str) -> Pose | None:
        """A recorded pose id (from a previous image) reproduces that exact skeleton."""
        from posebank.errors import PoseBankError

        if " " in text.strip():
            return None
        try:
            return self.runtime.poses.get(text.strip())
        except PoseBankError:
            return None

    # -- producing -----------------------------------------------------------------------------
    def metadata(self, spec: ImageSpec, seed: int) -> dict[str, Any]:
        character = self.runtime.characters.get(spec.character)
        pose = self.runtime.poses.get(spec.pose.id)
        models, output = self.settings.models, self.settings.output
        engine = self.runtime.engine
        sampling = engine.sampling
        prompt = compose_prompt(
            character.prompt_tags, character.name, pose, spec.user_prompt, character.trigger
        )
        negative = self.negative_prompt()
        loras = engine.lora_set(prompt, negative, character_loras(character))
        meta = {
            "key": spec.key,
            "request_id": spec.request_id,
            "character": spec.character,
            "posture": spec.posture,
            "pose": spec.pose.model_dump(),
            "prompt": prompt,
            "negative_prompt": negative,
            "user_prompt": spec.user_prompt,
            "seed": seed,
            "steps": sampling.steps,
            "sampler": sampling.sampler,
            "guidance_scale": sampling.guidance_scale,
            "width": output.resolution.width,
            "height": output.resolution.height,
            "model": engine.checkpoint.label,
            "clip_skip": models.clip_skip,
            "controlnet": engine.controlnet_source.label,
            "controlnet_strength": models.controlnet_strength,
            "ipadapter": f"{engine.ipadapter_source.label}/{engine.models.ipadapter_weight_name}",
            "ipadapter_weight": models.ipadapter_weight,
            "collection": spec.collection,
            "loras": [lora.as_dict() for lora in loras],
            "lora_hashes": lora_hashes(loras, self.settings.paths),
            "embeddings": embeddings_named(f"{prompt}, {negative}", self.settings.paths),
            "vae": vae_label(models.vae),
        }
        if engine.fast_lora_source is not None:
            meta["fast_lora"] = engine.fast_lora_source.label
        return meta

    def negative_prompt(self) -> str:
        configured = self.settings.output.negative_prompt
        if configured is not None:
            return configured
        return default_negative_prompt(self.settings.paths)

    @property
    def batch_size(self) -> int:
        """Images per engine call (`tools.engine.rendering.batch_size_for`)."""
        from tools.engine.rendering import batch_size_for

        return batch_size_for(self.settings)

    def produce(self, spec: ImageSpec, on_step: StepCallback | None = None) -> OutputRecord:
        """Render, score, re-roll rejects and save one image. Safe to call again after a crash."""
        return self.produce_batch([spec], on_step)[0]

    def produce_batch(
        self, specs: list[ImageSpec], on_step: StepCallback | None = None
    ) -> list[OutputRecord]:
        """`produce` for several specs, `batch_size` of them per engine call; re-rolls of
        rejected images are drawn one at a time. Specs already saved are skipped, so this too
        is safe to call again after a crash. Records come back in the order of `specs`."""
        records: dict[str, OutputRecord] = {}
        pending = []
        for spec in specs:
            saved = self._saved(spec)
            if saved is None:
                pending.append(spec)
            else:
                records[spec.key] = saved
        for chunk in chunked(pending, self.batch_size):
            for record, spec in zip(self._produce_chunk(chunk, on_step), chunk, strict=True):
                records[spec.key] = record
        return [records[spec.key] for spec in specs]

    def _saved(self, spec: ImageSpec) -> OutputRecord | None:
        saved = self.runtime.index.by_key(spec.key)
        if saved and saved["status"] == "saved" and Path(saved["path"]).exists():
            return OutputRecord.model_validate({**saved["record"]["output"], "path": saved["path"]})
        return None

    def _draft(self, spec: ImageSpec) -> _Draft:
        from posebank.export import write_pose_files
        from posebank.render import render_pose

        character = self.runtime.characters.get(spec.character)
        pose = self.runtime.poses.get(spec.pose.id)
        resolution = self.settings.output.resolution
        pose_image = render_pose(pose, resolution.width, resolution.height)
        # The character folder keeps every pose it was drawn in, as data and as the skeleton.
        if not (character.folder / "poses" / f"{pose.id}.json").exists():
            write_pose_files(pose, character.folder / "poses", resolution.width, resolution.height)
        return _Draft(spec, character, pose, pose_image)

    def _render(
        self, drafts: list[_Draft], metas: list[dict[str, Any]], on_step: StepCallback | None
    ) -> list[Image.Image]:
        """One engine call for the drafts, each with the metadata of its current try."""
        jobs = [
            RenderJob(
                prompt=meta["prompt"],
                negative_prompt=meta["negative_prompt"],
                pose_image=draft.pose_image,
                reference=draft.character.reference_path,
                seed=meta["seed"],
                loras=character_loras(draft.character),
            )
            for draft, meta in zip(drafts, metas, strict=True)
        ]
        resolution = self.settings.output.resolution
        images = self.runtime.engine.render(
            jobs,
            width=resolution.width,
            height=resolution.height,
            ipadapter_weight=self.settings.models.ipadapter_weight,
            controlnet_strength=self.settings.models.controlnet_strength,
            on_step=on_step,
        )
        # Hires fix and face detail, when configured, before the gate sees the image.
        return apply_second_passes(
            self.runtime.engine, self.settings.output, jobs, images, metas, on_step
        )

    def _produce_chunk(
        self, specs: list[ImageSpec], on_step: StepCallback | None
    ) -> list[OutputRecord]:
        started = time.perf_counter()
        drafts = [self._draft(spec) for spec in specs]
        metas = [self.metadata(draft.spec, draft.spec.seed) for draft in drafts]
        images = self._render(drafts, metas, on_step)
        # Each image is charged an equal share of the batch, then its own gating and re-rolls.
        share = (time.perf_counter() - started) / len(drafts)
        return [
            self._settle(draft, image, meta, share, on_step)
            for draft, image, meta in zip(drafts, images, metas, strict=True)
        ]

    def _settle(
        self,
        draft: _Draft,
        image: Image.Image,
        meta: dict[str, Any],
        spent: float,
        on_step: StepCallback | None,
    ) -> OutputRecord:
        """Gate and save a first try; re-roll and save until accepted or out of attempts."""
        started = time.perf_counter() - spent
        spec, runtime = draft.spec, self.runtime
        max_attempts = self.settings.quality.max_attempts
        rejected: list[str] = []
        reasons: list[str] = []
        for attempt in range(1, max_attempts + 1):
            if attempt > 1:
                meta = self.metadata(spec, reroll_seed(spec.seed, attempt))
                image = self._render([draft], [meta], on_step)[0]
            seed = meta["seed"]
            verdict = runtime.gate.evaluate(image, draft.character, list(draft.pose.tags))
            last = attempt == max_attempts
            record = OutputRecord(
                path=None,
                character=spec.character,
                pose=spec.pose,
                seed=seed,
                scores=verdict.scores,
                accepted=verdict.accepted,
                attempts=attempt,
                reasons=reasons + verdict.reasons,
                rejected=list(rejected),
                seconds=round(time.perf_counter() - started, 3),
            )
            key = spec.key if verdict.accepted or last else f"{spec.key}#rejected{attempt}"
            path = runtime.store.save(
                image,
                {
                    **meta,
                    "scores": verdict.scores.model_dump(),
                    "accepted": verdict.accepted,
                    "attempts": attempt,
                    "output": record.model_dump(mode="json"),
                },
                key=key,
            )
            record.path = str(path)
            if verdict.accepted or last:
                return record
            rejected.append(str(path))
            reasons.extend(verdict.reasons)
        raise AssertionError("unreachable: the last attempt always returns")

    def run(
        self, request: GenerationRequest, on_image: ImageCallback | None = None
    ) -> list[OutputRecord]:
        records = []
        for chunk in chunked(self.plan(request), self.batch_size):
            for record in self.produce_batch(chunk):
                records.append(record)
                if on_image is not None:
                    on_image(record)
        return records
