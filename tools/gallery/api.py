"""The gallery's JSON API (`/api/images...`, shapes as in docs/CONTRACT.md and docs/API.md).

Mounted by `tools.server.app.create_app` behind the server's token check (bearer, or the
cookie plus the CSRF header on POST). An id that is not a row, or a path that leaves the
output and character folders, is 404.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import FileResponse, Response
from pydantic import BaseModel, Field

from tools.gallery.catalog import Catalog
from tools.gallery.listing import Filters, NotFound, image_json
from tools.server.security import guard_path
from tools.server.studio import request_settings, studio_of
from tools.settings import Settings

gallery_api = APIRouter(prefix="/api")


class StarBody(BaseModel):
    starred: bool = True


class CollectionBody(BaseModel):
    collection: str | None = None


class BulkBody(BaseModel):
    ids: list[str] = Field(min_length=1, max_length=1000)
    action: Literal["star", "unstar", "trash", "collection"]
    collection: str | None = None


class RerunBody(BaseModel):
    count: int | None = Field(None, ge=1)
    prompt: str | None = None
    seed: int | None = None


def catalog_of(request: Request) -> Catalog:
    """The studio's catalog, made once on first use (however many ask at once); it reconciles
    the index with the disk then (the server's start), and again on `POST
    /api/gallery/reconcile`."""
    studio = studio_of(request)

    def build() -> Catalog:
        settings = studio.settings()
        catalog = Catalog(
            settings.paths.output, settings.paths.state, settings.output.organize_by_date
        )
        catalog.reconcile()
        return catalog

    return studio.warm("gallery_catalog", build)


def _flag(value: str | None) -> bool | None:
    if value is None or value == "":
        return None
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise HTTPException(422, f"expected 1/true or 0/false, got '{value}'")


def filters_of(
    q: str = "",
    character: str | None = None,
    collection: str | None = None,
    starred: str | None = None,
    rejected: str | None = None,
    trashed: str | None = None,
    day: str | None = None,
    posture: str | None = None,
) -> Filters:
    return Filters(
        q=q,
        character=character or None,
        collection=collection or None,
        starred=_flag(starred),
        rejected=bool(_flag(rejected)),
        trashed=bool(_flag(trashed)),
        day=day or None,
        posture=posture or None,
    )


def _row(catalog: Catalog, image_id: str) -> Any:
    try:
        return catalog.get(image_id)
    except NotFound:
        raise HTTPException(404, "not found") from None


@gallery_api.get("/images")
def images(
    request: Request,
    filters: Filters = Depends(filters_of),
    cursor: str | None = None,
    limit: int = Query(100, ge=1, le=1000),
) -> dict[str, Any]:
    rows, following = catalog_of(request).page(filters, cursor or None, limit)
    return {"images": [image_json(row) for row in rows], "next": following}


@gallery_api.get("/images/{image_id}")
def image(
    image_id: str, request: Request, filters: Filters = Depends(filters_of)
) -> dict[str, Any]:
    """One image with its `parameters`, and its neighbours under the grid's filters."""
    catalog = catalog_of(request)
    row = _row(catalog, image_id)
    return {
        **image_json(row),
        "parameters": parameters_of(row),
        **catalog.neighbours(image_id, filters),
    }


def parameters_of(row: Any) -> str:
    """The PNG's `parameters` text; from the record when the file is gone or has none."""
    import json

    from tools.store.metadata import ImageMetadata
    from tools.store.output_store import png_parameters, read_png_metadata

    try:
        text = read_png_metadata(Path(row["path"])).get("parameters")
    except (OSError, ValueError):  # gone, or damaged since it was indexed
        text = None
    if text:
        return text
    try:
        return png_parameters(ImageMetadata.of(json.loads(row["record"])))
    except (KeyError, TypeError, ValueError):  # a pydantic ValidationError is a ValueError
        return ""


@gallery_api.get("/images/{image_id}/thumb")
def thumb(image_id: str, request: Request) -> Response:
    from tools.gallery.thumbs import thumbnail

    catalog = catalog_of(request)
    row = _row(catalog, image_id)
    path = guard_path(row["path"], studio_of(request).roots())
    try:
        cached = thumbnail(catalog.state, path)
    except OSError:
        raise HTTPException(404, "the image file is missing") from None
    return FileResponse(cached, media_type="image/webp")


@gallery_api.get("/images/{image_id}/file")
def image_file(image_id: str, request: Request) -> FileResponse:
    row = _row(catalog_of(request), image_id)
    path = guard_path(row["path"], studio_of(request).roots())
    if not path.is_file():
        raise HTTPException(404, "the image file is missing")
    return FileResponse(path, media_type="image/png")


def _changed(request: Request, image_id: str, change: str, *args: Any) -> dict[str, Any]:
    catalog = catalog_of(request)
    _row(catalog, image_id)
    return image_json(getattr(catalog, change)(image_id, *args))


@gallery_api.post("/images/{image_id}/star")
def star(image_id: str, body: StarBody, request: Request) -> dict[str, Any]:
    return _changed(request, image_id, "set_starred", body.starred)


@gallery_api.post("/images/{image_id}/trash")
def trash(image_id: str, request: Request) -> dict[str, Any]:
    return _changed(request, image_id, "trash_image")


@gallery_api.post("/images/{image_id}/restore")
def restore(image_id: str, request: Request) -> dict[str, Any]:
    return _changed(request, image_id, "restore")


@gallery_api.post("/images/{image_id}/keep")
def keep(image_id: str, request: Request) -> dict[str, Any]:
    """ "Keep anyway": a rejected image joins the accepted ones."""
    return _changed(request, image_id, "keep")


@gallery_api.post("/images/{image_id}/collection")
def collection(image_id: str, body: CollectionBody, request: Request) -> dict[str, Any]:
    return _changed(request, image_id, "set_collection", body.collection)


@gallery_api.post("/gallery/bulk")
def bulk(body: BulkBody, request: Request) -> dict[str, Any]:
    """One action on the grid's selection. Every id is checked first: one that is not a row
    is 404 and nothing changes."""
    catalog = catalog_of(request)
    for image_id in body.ids:
        _row(catalog, image_id)
    change, args = {
        "star": ("set_starred", (True,)),
        "unstar": ("set_starred", (False,)),
        "trash": ("trash_image", ()),
        "collection": ("set_collection", (body.collection,)),
    }[body.action]
    images = [image_json(getattr(catalog, change)(i, *args)) for i in dict.fromkeys(body.ids)]
    return {"images": images}


@gallery_api.post("/images/{image_id}/rerun")
def rerun(
    image_id: str,
    body: RerunBody,
    request: Request,
    settings: Settings = Depends(request_settings),
) -> dict[str, Any]:
    """The image again as a job: its character, pose and prompt, the same seed unless `seed`
    is given (`null`: new seeds), `count` images, `prompt` replacing what the user asked."""
    import json

    from tools.jobs.client import ensure_worker, submit_job
    from tools.server.generation import GenerateBody, plan_generation

    row = _row(catalog_of(request), image_id)
    record = json.loads(row["record"])
    seed = body.seed if "seed" in body.model_fields_set else row["seed"]
    wanted = GenerateBody(
        character=row["character"],
        pose=row["pose_id"],
        prompt=record.get("user_prompt", "") if body.prompt is None else body.prompt,
        count=body.count or 1,
        seed=seed,
        collection=row["collection"],
        label=f"again: image {row['id']}",
    )
    notices: list[str] = []
    specs = plan_generation(studio_of(request).runtime(settings), wanted, notices.append)
    _, job_id = submit_job(settings, specs, wanted.label)
    ensure_worker(settings)
    return {"job": job_id, "notices": notices}


@gallery_api.post("/gallery/reconcile")
def reconcile(request: Request) -> dict[str, Any]:
    """Rescan the output folder now (files added, moved or deleted by hand)."""
    report = catalog_of(request).reconcile()
    return {
        "added": report.added,
        "moved": report.moved,
        "missing": report.missing,
        "found_again": report.found_again,
        "foreign": report.foreign,
    }


@gallery_api.post("/gallery/empty-trash")
def empty_trash(request: Request) -> dict[str, Any]:
    """Delete every trashed image for good (the page asks first)."""
    return {"deleted": catalog_of(request).empty_trash()}


@gallery_api.get("/gallery/facets")
def facets(request: Request) -> dict[str, list[str]]:
    return catalog_of(request).facets()


@gallery_api.get("/gallery/poses/{pose_id}/skeleton")
def skeleton(pose_id: str, request: Request, settings: Settings = Depends(request_settings)) -> Any:
    """The pose as ControlNet saw it (drawn at the configured resolution), PNG."""
    import io

    from posebank.errors import PoseBankError
    from posebank.render import render_pose

    try:
        pose = studio_of(request).poses.get(pose_id)
    except PoseBankError:
        raise HTTPException(404, "no such pose") from None
    resolution = settings.output.resolution
    buffer = io.BytesIO()
    render_pose(pose, resolution.width, resolution.height).save(buffer, format="PNG")
    return Response(buffer.getvalue(), media_type="image/png")
