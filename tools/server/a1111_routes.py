"""AUTOMATIC1111's HTTP API (`/sdapi/v1/...`) on the studio server, so its clients drive the studio.

Routes and shapes follow A1111's `modules/api/api.py` and `modules/api/models.py`. A txt2img
request is a door like the others: its prompt is planned by our planner (a named character gets
its identity and a pose from the bank, `a1111_plan`), its fields become the job's settings
(`a1111_mapping`), the job goes through the journal (it survives a crash and lands in the output,
the index and the gallery), and the answer waits for it as A1111's does. Requests queue in the
journal; `progress` reports the running job. The router sits behind the app's token check (Bearer,
or HTTP Basic with the token as the password, A1111's `--api-auth` style).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from pydantic import BaseModel

from tools.errors import ConfigError, UserError
from tools.server import a1111_lists as lists
from tools.server.a1111_images import (
    decode_image,
    init_folder_locked,
    png_info_answer,
    save_init_image,
    sweep_after_request,
)
from tools.server.a1111_mapping import (
    A1111Img2ImgRequest,
    A1111Request,
    map_img2img,
    map_request,
)
from tools.server.a1111_progress import progress_of
from tools.server.a1111_results import txt2img_answer
from tools.server.studio import Studio, request_overrides, studio_of
from tools.settings import Settings
from tools.settings_sections import Resolution

a1111_router = APIRouter(prefix="/sdapi/v1")
LABEL = "a1111"
WAIT_POLL_SECONDS = 0.2
# What a settings key is called in the A1111 request, for a 422 that names the client's field.
A1111_FIELDS = {
    "output.steps": "steps",
    "output.guidance_scale": "cfg_scale",
    "output.resolution": "width/height",
    "output.sampler": "sampler_name",
    "output.hires": "hr_scale/denoising_strength/hr_second_pass_steps",
    "output.face_detail": "alwayson_scripts.ADetailer",
    "models.clip_skip": "CLIP_stop_at_last_layers",
    "models.checkpoint": "sd_model_checkpoint",
    "models.vae": "sd_vae",
}


class PngInfoBody(BaseModel):
    image: str


def _known(request: Request) -> dict[str, dict[str, str]]:
    return lists.known_names(studio_of(request).settings())


def _options(request: Request) -> dict[str, Any]:
    """This server's A1111 options (POST /options), applied to its later requests."""
    state = request.app.state
    if not hasattr(state, "a1111_options"):
        state.a1111_options = {}
    return state.a1111_options


def _settings(studio: Studio, request: Request, flags: dict[str, Any]) -> Settings:
    """The request's settings: our overrides header (if a client sends one) under its fields."""
    overrides = request_overrides(request)
    merged = {**(overrides.get("flags") or {})}
    for section, values in flags.items():
        merged[section] = {**merged.get(section, {}), **values}
    try:
        return studio.settings({"flags": merged, "env": overrides.get("env") or {}})
    except ConfigError as error:
        field = next((name for key, name in A1111_FIELDS.items() if key in error.message), None)
        detail = f"{field}: {error.message}" if field else error.message
        raise HTTPException(422, detail) from None


def _size(studio: Studio, request: Request) -> Resolution:
    """The resolution a request gets for a side it leaves out: the configured one."""
    return _settings(studio, request, {}).output.resolution


@a1111_router.post("/txt2img")
async def txt2img(body: A1111Request, request: Request) -> dict[str, Any]:
    return await _run(body, request, _queue_txt2img)


@a1111_router.post("/img2img")
async def img2img(body: A1111Img2ImgRequest, request: Request) -> dict[str, Any]:
    """The init image(s) redrawn with the prompt as written (image i starts from init image
    i modulo their number, as in A1111); characters are drawn by txt2img."""
    if not body.init_images:
        raise HTTPException(422, "init_images: give at least one base64 image")
    return await _run(body, request, _queue_img2img)


def _queue_txt2img(body: A1111Request, request: Request) -> _Queued:
    from tools.server.a1111_plan import plan_prompt

    studio = studio_of(request)
    mapping = map_request(body, _options(request), _known(request), _size(studio, request))
    settings = _settings(studio, request, mapping.flags)
    plan, specs = plan_prompt(
        studio.runtime(settings), body.prompt, body.count, body.fixed_seed, mapping.warnings.append
    )
    if not plan.characters:
        # Plain text-to-image: the ControlNet pipeline's blank pose map must weigh nothing.
        mapping.set("models", "controlnet_strength", 0.0)
        settings = _settings(studio, request, mapping.flags)
    return _submit(plan, specs, settings, mapping.warnings)


def _queue_img2img(body: A1111Img2ImgRequest, request: Request) -> _Queued:
    from tools.generation.plain import plan_plain
    from tools.generation.specs import InitImage
    from tools.jobs.client import queue_job, ready_to_submit
    from tools.server.a1111_plan import PromptPlan, read_prompt

    studio = studio_of(request)
    mapping = map_img2img(body, _options(request), _known(request), _size(studio, request))
    mapping.set("models", "controlnet_strength", 0.0)
    settings = _settings(studio, request, mapping.flags)
    named = read_prompt(studio.runtime(settings), body.prompt, mapping.warnings.append)
    if named.characters:
        mapping.warnings.append(
            f"img2img draws the prompt as written; {', '.join(named.characters)} are drawn as"
            " characters by txt2img"
        )
    # 0 is a denoise as any other (`or 0.75` made it 0.75); a null was the default already.
    denoise = 0.75 if body.denoising_strength is None else body.denoising_strength
    starts = [decode_image(data, "init_images") for data in body.init_images or []]
    plain = plan_plain(settings, named.prompt, body.count, body.fixed_seed)
    # Unlocked: a cold model download holds up no other request's files nor a sweep.
    journal = ready_to_submit(settings)
    # Locked from writing the files until the job is in the journal: no sweep between.
    with init_folder_locked(settings.paths.state) as folder:
        paths = [str(save_init_image(folder, *start)) for start in starts]
        specs = [
            spec.model_copy(
                update={"init_image": InitImage(path=paths[i % len(paths)], denoise=denoise)}
            )
            for i, spec in enumerate(plain)
        ]
        job_id = queue_job(journal, settings, specs, LABEL)
    return _Queued(job_id, PromptPlan([], None, named.prompt), specs, settings, mapping.warnings)


@dataclass(frozen=True)
class _Queued:
    """A request's job in the journal, and what its answer needs."""

    job: str
    plan: Any
    specs: list[Any]
    settings: Settings
    warnings: list[str]


def _submit(plan: Any, specs: list[Any], settings: Settings, warnings: list[str]) -> _Queued:
    from tools.jobs.client import submit_job

    _, job_id = submit_job(settings, specs, LABEL)
    return _Queued(job_id, plan, specs, settings, warnings)


async def _run(body: Any, request: Request, queue: Callable[[Any, Request], _Queued]) -> Any:
    """Queue the request as one journal job, wait for it as A1111 does, answer A1111's shape.

    The wait is async (as `/api/jobs/{id}/wait`): a render can take minutes, and a request
    holding a worker thread that long would starve the server's other routes when several
    clients wait at once. The server keeps a worker on queued jobs (`serve`)."""
    from tools.jobs.client import ensure_worker, raise_unless_done
    from tools.jobs.job import JobState
    from tools.jobs.journal import JobJournal

    queued = await asyncio.to_thread(queue, body, request)
    await asyncio.to_thread(ensure_worker, queued.settings)
    state = queued.settings.paths.state
    journal = JobJournal.for_state(state)
    try:
        job = await asyncio.to_thread(journal.get, queued.job)
        while not job.finished:
            await asyncio.sleep(WAIT_POLL_SECONDS)
            job = await asyncio.to_thread(journal.get, queued.job)
    finally:
        # The job ended (or this wait did, and the job goes on): the init images no queued or
        # running job needs any more go, its own among them once it has ended.
        await asyncio.to_thread(sweep_after_request, state)
    if job.state == JobState.CANCELLED:
        queued.warnings.append("interrupted: the images drawn before it are returned")
    else:
        raise_unless_done(job, state)
    return await asyncio.to_thread(
        txt2img_answer, body, job, queued.plan, queued.specs, queued.settings, queued.warnings
    )


@a1111_router.get("/options")
def get_options(request: Request) -> dict[str, Any]:
    flags = map_request(A1111Request(), _options(request), _known(request)).flags
    settings = _settings(studio_of(request), request, flags)
    return {
        **_options(request),
        "sd_model_checkpoint": lists.checkpoint_title(settings),
        "CLIP_stop_at_last_layers": settings.models.clip_skip,
        "sd_vae": settings.models.vae or "Automatic",
        "samples_format": "png",
        "outdir_txt2img_samples": str(settings.paths.output),
    }


@a1111_router.post("/options")
def set_options(body: dict[str, Any], request: Request) -> None:
    """Keep the options for this server's later requests; a value we cannot use is a 422 now
    (a checkpoint or VAE that is not there too: it would fail every later request)."""
    from tools.engine.comfyui_folders import setting_dirs
    from tools.engine.model_sources import resolve_source
    from tools.engine.vae import find_vae

    options = {**_options(request), **body}
    flags = map_request(A1111Request(), options, _known(request)).flags
    settings = _settings(studio_of(request), request, flags)
    models, folder, root = settings.models, settings.paths.models, settings.comfyui.root
    checks = {
        "sd_model_checkpoint": lambda: resolve_source(
            models.checkpoint, folder, "checkpoint", setting_dirs(root, "checkpoint")
        ),
        "sd_vae": lambda: models.vae and find_vae(models.vae, folder, setting_dirs(root, "vae")),
    }
    for field, check in checks.items():
        try:
            if field in body:
                check()
        except UserError as error:
            raise HTTPException(422, f"{field}: {error.message}") from None
    _options(request).update(body)


@a1111_router.get("/cmd-flags")
def cmd_flags() -> dict[str, Any]:
    return {"api": True, "api_auth": "token", "nowebui": True}


@a1111_router.get("/scripts")
def scripts() -> dict[str, list[str]]:
    """ADetailer is our face detail pass; clients check this list before sending its args."""
    return {"txt2img": ["adetailer"], "img2img": []}


@a1111_router.get("/sd-models")
def sd_models(request: Request) -> list[dict[str, Any]]:
    return lists.sd_models(studio_of(request).settings())


@a1111_router.get("/samplers")
def samplers() -> list[dict[str, Any]]:
    return lists.samplers()


@a1111_router.get("/schedulers")
def schedulers() -> list[dict[str, Any]]:
    return lists.schedulers()


@a1111_router.get("/upscalers")
def upscalers() -> list[dict[str, Any]]:
    return lists.upscalers()


@a1111_router.get("/latent-upscale-modes")
def latent_upscale_modes() -> list[dict[str, str]]:
    return lists.latent_upscale_modes()


@a1111_router.get("/sd-vae")
def sd_vae(request: Request) -> list[dict[str, str]]:
    return lists.sd_vae(studio_of(request).settings())


@a1111_router.get("/loras")
def loras(request: Request) -> list[dict[str, Any]]:
    return lists.loras(studio_of(request).settings())


@a1111_router.get("/embeddings")
def embeddings(request: Request) -> dict[str, Any]:
    return lists.embeddings(studio_of(request).settings())


@a1111_router.post("/refresh-checkpoints")
def refresh_checkpoints() -> None:
    """Our lists are read from the folders on every request: nothing to refresh."""


@a1111_router.post("/refresh-loras")
def refresh_loras() -> None:
    """As refresh-checkpoints."""


@a1111_router.get("/progress")
def progress(request: Request, skip_current_image: bool = False) -> dict[str, Any]:
    from tools.jobs.journal import JobJournal

    journal = JobJournal.for_state(studio_of(request).state)
    return progress_of(journal, skip_current_image)


def _interrupt(request: Request) -> dict[str, Any]:
    """Cancel the running jobs this door queued (another door's, a CLI run, is not A1111's to
    stop): the worker stops at its next step, the waiting request answers with the images
    already drawn. SillyTavern sends this when its own request is closed."""
    from tools.jobs.journal import JobJournal

    journal = JobJournal.for_state(studio_of(request).state)
    ours = [job for job in journal.running() if job.request.get("label") == LABEL]
    return {"cancelled": [job.id for job in ours if journal.cancel(job.id)]}


@a1111_router.post("/interrupt")
def interrupt(request: Request) -> dict[str, Any]:
    return _interrupt(request)


@a1111_router.post("/skip")
def skip(request: Request) -> dict[str, Any]:
    """A job's images are one unit in our journal: skip stops the running job as interrupt does."""
    return _interrupt(request)


@a1111_router.post("/png-info")
def png_info(body: PngInfoBody) -> dict[str, Any]:
    image, _ = decode_image(body.image, "image")
    return png_info_answer(image)
