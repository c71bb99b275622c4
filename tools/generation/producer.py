"""From `ImageSpec`s to saved, scored images: the worker's half.

`Producer.produce_batch` draws `batch_size` specs per engine call, gates each image, re-rolls
rejects and saves through the output store; it is idempotent on each spec's key (a key already
saved returns the saved record), which is what lets the worker retry after a crash without
duplicates. Character-sheet specs (`spec.sheet`) are drawn one per engine call from their tags
into the sheet's staging folder; plain specs (`spec.plain`) by `tools.generation.plain`. Every
image is drawn in `draw`."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prompts import load_prompt
from tools.engine.extra_networks import default_negative_prompt, embeddings_named, vae_label
from tools.engine.lora_hashes import lora_hashes
from tools.engine.prompt_syntax import LoraRequest
from tools.engine.rendering import RenderJob, StepCallback
from tools.engine.second_pass import apply_second_passes
from tools.generation.image_record import finish_record
from tools.generation.plain import produce_plain
from tools.generation.specs import SEED_LIMIT, ImageSpec, OutputRecord
from tools.quality.gate import Scores

if TYPE_CHECKING:
    from PIL import Image

    from posebank import Pose, PoseBank
    from tools.characters.library import Character, CharacterLibrary
    from tools.engine.rendering import Engine
    from tools.quality.gate import QualityGate
    from tools.settings import Settings
    from tools.store.gen_index import GenerationIndex
    from tools.store.output_store import OutputStore

# A re-roll after a rejection moves the seed by a large odd stride so it never meets S+i.
REROLL_STRIDE = 1_000_003


@dataclass(frozen=True)
class _Draft:
    """One spec's inputs, looked up once for its first try and any re-rolls."""

    spec: ImageSpec
    character: Character
    pose: Pose
    pose_image: Image.Image


def character_loras(character: Character) -> tuple[LoraRequest, ...]:
    return tuple(LoraRequest(lora.name, lora.weight) for lora in character.loras)


def reroll_seed(seed: int, attempt: int) -> int:
    return (seed + (attempt - 1) * REROLL_STRIDE) % SEED_LIMIT


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


def save_png(path: Path, image: Image.Image, parameters: str) -> None:
    """Write a PNG with its `parameters` text chunk, atomically."""
    from PIL.PngImagePlugin import PngInfo

    from tools.atomic import write_atomic

    info = PngInfo()
    info.add_text("parameters", parameters)
    write_atomic(path, lambda handle: image.save(handle, format="PNG", pnginfo=info))


class Producer:
    """Renders, gates and saves specs, given its components (as a diffusers pipeline is given
    its own): the engine that draws, the gate that scores, the store and index that keep the
    results, and the character library and pose bank that the specs name."""

    def __init__(
        self,
        settings: Settings,
        *,
        engine: Engine,
        gate: QualityGate,
        store: OutputStore,
        index: GenerationIndex,
        characters: CharacterLibrary,
        poses: PoseBank,
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.gate = gate
        self.store = store
        self.index = index
        self.characters = characters
        self.poses = poses

    def metadata(self, spec: ImageSpec, seed: int) -> dict[str, Any]:
        character = self.characters.get(spec.character)
        pose = self.poses.get(spec.pose.id)
        models, output, engine = self.settings.models, self.settings.output, self.engine
        sampling, labels = engine.sampling, engine.labels()
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
            "model": labels["model"],
            "clip_skip": models.clip_skip,
            "controlnet": labels["controlnet"],
            "controlnet_strength": models.controlnet_strength,
            "ipadapter": labels["ipadapter"],
            "ipadapter_weight": models.ipadapter_weight,
            "collection": spec.collection,
            "loras": [lora.as_dict() for lora in loras],
            "lora_hashes": lora_hashes(loras, self.settings.paths),
            "embeddings": embeddings_named(f"{prompt}, {negative}", self.settings.paths),
            "vae": vae_label(models.vae),
        }
        return finish_record(meta, engine, self.settings.paths)

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
            if spec.calibration_only:
                self.gate.baseline(self.characters.get(spec.character))
                records[spec.key] = OutputRecord(
                    path=None, character=spec.character, pose=spec.pose, seed=spec.seed
                )
                continue
            if spec.sheet is not None or spec.plain:
                draw = produce_plain if spec.plain else Producer._produce_sheet_image
                records[spec.key] = draw(self, spec, on_step)
                continue
            saved = self.saved(spec)
            if saved is None:
                pending.append(spec)
            else:
                records[spec.key] = saved
        size = self.batch_size
        for chunk in (pending[start : start + size] for start in range(0, len(pending), size)):
            for record, spec in zip(self._produce_chunk(chunk, on_step), chunk, strict=True):
                records[spec.key] = record
        return [records[spec.key] for spec in specs]

    def saved(self, spec: ImageSpec) -> OutputRecord | None:
        saved = self.index.by_key(spec.key)
        if saved and saved["status"] == "saved" and Path(saved["path"]).exists():
            return OutputRecord.model_validate({**saved["record"]["output"], "path": saved["path"]})
        return None

    def _draft(self, spec: ImageSpec) -> _Draft:
        from posebank.export import write_pose_files
        from posebank.render import render_pose

        character = self.characters.get(spec.character)
        pose = self.poses.get(spec.pose.id)
        resolution = self.settings.output.resolution
        pose_image = render_pose(pose, resolution.width, resolution.height)
        # The character folder keeps every pose it was drawn in, as data and as the skeleton.
        if not (character.folder / "poses" / f"{pose.id}.json").exists():
            write_pose_files(pose, character.folder / "poses", resolution.width, resolution.height)
        return _Draft(spec, character, pose, pose_image)

    def draw(
        self, jobs: list[RenderJob], ipadapter_weight: float, on_step: StepCallback | None
    ) -> list[Image.Image]:
        """The one engine call for every image; `_render` adds the second passes (hires fix,
        face detail) to library images (and `plain` to its own); sheet images never had them."""
        resolution = self.settings.output.resolution
        return self.engine.render(
            jobs,
            width=resolution.width,
            height=resolution.height,
            ipadapter_weight=ipadapter_weight,
            controlnet_strength=self.settings.models.controlnet_strength,
            on_step=on_step,
        )

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
        images = self.draw(jobs, self.settings.models.ipadapter_weight, on_step)
        # Hires fix and face detail, when configured, before the gate sees the image.
        return apply_second_passes(self.engine, self.settings.output, jobs, images, metas, on_step)

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
        started, spec = time.perf_counter() - spent, draft.spec
        max_attempts = self.settings.quality.max_attempts
        rejected: list[str] = []
        reasons: list[str] = []
        for attempt in range(1, max_attempts + 1):
            if attempt > 1:
                meta = self.metadata(spec, reroll_seed(spec.seed, attempt))
                image = self._render([draft], [meta], on_step)[0]
            seed = meta["seed"]
            verdict = self.gate.evaluate(image, draft.character, list(draft.pose.tags))
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
            path = self.store.save(
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

    def _produce_sheet_image(self, spec: ImageSpec, on_step: StepCallback | None) -> OutputRecord:
        """Draw one sheet image from its tags into its sheet path (a retry writes the same pixels
        again); a candidate (no reference yet) is scored by face and looks to pick the reference."""
        from posebank.render import render_pose
        from tools.quality.gate import face_score

        sheet = spec.sheet
        assert sheet is not None
        started = time.perf_counter()
        pose = self.poses.get(spec.pose.id)
        resolution = self.settings.output.resolution
        width, height = resolution.width, resolution.height
        prompt = compose_prompt(sheet.tags, spec.character, pose, spec.user_prompt)
        negative = load_prompt("negative_tags")
        reference = Path(sheet.reference) if sheet.reference else None
        weight = self.settings.models.ipadapter_weight if reference else 0.0
        job = RenderJob(prompt, negative, render_pose(pose, width, height), reference, spec.seed)
        image = self.draw([job], weight, on_step)[0]
        parameters = (
            f"{prompt}\nNegative prompt: {negative}\nSeed: {spec.seed}, Size: {width}x{height}, "
            f"Pose: {pose.id}, IP-Adapter weight: {weight if reference else 0}"
        )
        save_png(Path(sheet.path), image, parameters)
        scores = Scores()
        if reference is None:
            scores = Scores(face=face_score(image), aesthetic=self.gate.aesthetic.score(image))
        return OutputRecord(
            path=sheet.path,
            character=spec.character,
            pose=spec.pose,
            seed=spec.seed,
            scores=scores,
            seconds=round(time.perf_counter() - started, 3),
        )
