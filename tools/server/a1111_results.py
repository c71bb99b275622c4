"""A finished txt2img job in A1111's answer shape: `{"images", "parameters", "info"}`.

`images` are the saved PNG files themselves, base64 (so each carries its `parameters` text, as
A1111's do); `info` is a JSON string with A1111's `Processed.js()` fields (seed, all_seeds,
prompt, infotexts, ...) read from the images' own records, plus ours: the job, each image's
path, character, pose and quality scores, and the warnings for what was declined.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tools.engine.samplers import a1111_sampler_and_schedule

if TYPE_CHECKING:
    from tools.jobs.job import Job
    from tools.server.a1111_mapping import A1111Request
    from tools.server.a1111_plan import PromptPlan
    from tools.settings import Settings


def _a1111_sampler(label: str) -> tuple[str, str]:
    """Our sampler label as A1111's sampler name and (API, lower case) schedule type."""
    base, schedule = a1111_sampler_and_schedule(label)
    return base, schedule.lower()


def _image(path: str) -> tuple[str, dict[str, Any], str]:
    """(base64 PNG, our record, A1111 infotext) of a saved image."""
    from PIL import Image

    from tools.store.png_info import OUR_METADATA_KEY

    data = Path(path).read_bytes()
    with Image.open(path) as image:
        text = dict(getattr(image, "text", {}))
    record = json.loads(text.get(OUR_METADATA_KEY, "{}"))
    return base64.b64encode(data).decode("ascii"), record, text.get("parameters", "")


def txt2img_answer(
    body: A1111Request,
    job: Job,
    plan: PromptPlan,
    specs: list[Any],
    settings: Settings,
    warnings: list[str],
) -> dict[str, Any]:
    from tools.jobs.client import job_records

    outputs = [record for record in job_records(job) if record.path]
    images, records, infotexts = [], [], []
    for output in outputs:
        encoded, record, infotext = _image(output.path or "")
        images.append(encoded)
        records.append(record)
        infotexts.append(infotext)
    rejected = [Path(output.path or "").name for output in outputs if not output.accepted]
    if rejected:
        warnings.append(f"the quality gate rejected {', '.join(rejected)} (kept in rejected/)")
    first = records[0] if records else {}
    sampler, schedule = _a1111_sampler(first.get("sampler") or settings.output.sampler)
    seeds = [output.seed for output in outputs] or [spec.seed for spec in specs[:1]]
    resolution = settings.output.resolution
    info = {
        "prompt": first.get("prompt", plan.prompt),
        "all_prompts": [record.get("prompt", "") for record in records],
        "negative_prompt": first.get("negative_prompt", ""),
        "all_negative_prompts": [record.get("negative_prompt", "") for record in records],
        "seed": seeds[0] if seeds else -1,
        "all_seeds": seeds,
        "subseed": seeds[0] if seeds else -1,
        "all_subseeds": seeds,
        "subseed_strength": 0,
        "width": first.get("width", resolution.width),
        "height": first.get("height", resolution.height),
        "sampler_name": sampler,
        "scheduler": schedule,
        "cfg_scale": first.get("guidance_scale", settings.output.guidance_scale),
        "steps": first.get("steps", settings.output.steps),
        "batch_size": body.batch_size,
        "restore_faces": False,
        "face_restoration_model": None,
        "sd_model_name": first.get("model"),
        "sd_model_hash": None,
        "sd_vae_name": first.get("vae"),
        "sd_vae_hash": None,
        "seed_resize_from_w": -1,
        "seed_resize_from_h": -1,
        # The hires pass's, or img2img's own (A1111 reports both as denoising_strength).
        "denoising_strength": body.denoising_strength
        if body.enable_hr or getattr(body, "init_images", None)
        else None,
        "extra_generation_params": {},
        "index_of_first_image": 0,
        "infotexts": infotexts,
        "styles": [],
        "job_timestamp": str(int(job.created)),
        "clip_skip": first.get("clip_skip", settings.models.clip_skip),
        "is_using_inpainting_conditioning": False,
        "version": "anime-chat",
        # Ours, beyond A1111's fields.
        "job": job.id,
        "paths": [output.path for output in outputs],
        "characters": plan.characters,
        "poses": [output.pose.model_dump() for output in outputs],
        "scores": [output.scores.model_dump() for output in outputs],
        "accepted": [output.accepted for output in outputs],
        "warnings": warnings,
    }
    return {
        "images": images if body.send_images else [],
        # As A1111 (without include_init_images): the init images are not sent back.
        "parameters": body.model_dump(mode="json", exclude={"init_images", "mask"}),
        "info": json.dumps(info, ensure_ascii=False),
    }
