"""The gallery's pages: server-rendered HTML, with `static/gallery.js` and `gallery.css` from this
package (no CDN: it works offline).

`/gallery/login?code=...` (the URL `anime-gen gallery` prints) is the one route without the
token: it checks the login code, sets the token cookie (HttpOnly, SameSite=Strict) and
redirects to the grid. Every other page needs that cookie; each carries the CSRF value its
script sends in `X-Anime-CSRF` on POST.
"""

from __future__ import annotations

import json
from html import escape
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse

from tools.gallery.api import catalog_of, filters_of, parameters_of
from tools.gallery.auth import LOGIN_PATH
from tools.gallery.listing import Filters, NotFound, image_json
from tools.server.security import CSRF_HEADER, csrf_token, has_session, set_session_cookie
from tools.server.studio import request_settings, studio_of
from tools.settings import Settings

STATIC = Path(__file__).parent / "static"
STATIC_FILES = {"gallery.js": "text/javascript", "gallery.css": "text/css"}
FILTER_NAMES = ("q", "character", "collection", "starred", "rejected", "day", "posture")

login_router = APIRouter()
gallery_pages = APIRouter(prefix="/gallery")


@login_router.get(LOGIN_PATH)
def login(request: Request, code: str = "") -> RedirectResponse:
    studio = studio_of(request)
    if not (code and studio.login_codes.redeem(code, studio.token)):
        if has_session(request):  # the spent link again, from history: already logged in
            return RedirectResponse("/gallery", status_code=303)
        raise HTTPException(
            401, "this gallery link was used already or is not valid: run `anime-gen gallery`"
        )
    response = RedirectResponse("/gallery", status_code=303)
    set_session_cookie(request, response)
    return response


@gallery_pages.get("/static/{name}")
def static(name: str) -> FileResponse:
    if name not in STATIC_FILES:
        raise HTTPException(404, "not found")
    return FileResponse(STATIC / name, media_type=STATIC_FILES[name])


def _page(request: Request, page: str, title: str, body: str, data: dict[str, Any]) -> str:
    # The CSRF value travels in the JSON data block: the CSP allows no inline script.
    csrf = {"csrf": csrf_token(studio_of(request).gallery_session), "csrf_header": CSRF_HEADER}
    page_data = {**data, **csrf}
    links = [
        ("/gallery", "Images"),
        ("/gallery/rejected", "Rejected"),
        ("/gallery/jobs", "Jobs"),
        ("/gallery/characters", "Characters"),
        ("/gallery/trash", "Trash"),
    ]
    nav = "".join(
        f'<a href="{href}"{" class=here" if href == request.url.path else ""}>{label}</a>'
        for href, label in links
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(title)} · anime-chat gallery</title>
<link rel="stylesheet" href="/gallery/static/gallery.css">
</head><body data-page="{page}">
<header><strong>anime-chat</strong><nav>{nav}</nav>
<button id="rescan" title="Pick up images added, moved or deleted by hand">Rescan</button></header>
<main>{body}</main>
<script id="page-data" type="application/json">{_json_for_script(page_data)}</script>
<script src="/gallery/static/gallery.js"></script>
</body></html>"""


def _json_for_script(data: Any) -> str:
    return json.dumps(data).replace("<", "\\u003c")


def _options(name: str, values: list[str], chosen: str | None, empty: str) -> str:
    items = [f'<option value="">{escape(empty)}</option>']
    items += [
        f'<option value="{escape(v)}"{" selected" if v == chosen else ""}>{escape(v)}</option>'
        for v in values
    ]
    return f'<select name="{name}" aria-label="{name}">{"".join(items)}</select>'


def _filter_form(request: Request, rejected: bool) -> str:
    facets = catalog_of(request).facets()
    chosen = request.query_params
    starred = " checked" if chosen.get("starred") in ("1", "true") else ""
    return f"""<form id="filters" role="search">
<input type="search" name="q" placeholder="Search prompt, pose, character, seed, model"
 value="{escape(chosen.get("q", ""))}" aria-label="search" autocomplete="off">
{_options("day", facets["days"], chosen.get("day"), "any day")}
{_options("character", facets["characters"], chosen.get("character"), "any character")}
{_options("collection", facets["collections"], chosen.get("collection"), "any collection")}
{_options("posture", facets["postures"], chosen.get("posture"), "any posture")}
<label><input type="checkbox" name="starred" value="1"{starred}> starred</label>
<input type="hidden" name="rejected" value="{"1" if rejected else ""}">
</form>"""


def _grid(request: Request, page: str, title: str, filters: dict[str, str], intro: str) -> str:
    form = _filter_form(request, rejected=filters.get("rejected") == "1")
    bulk = """<div id="bulk" hidden><span id="selected-count"></span>
<button data-action="star">★ Star</button><button data-action="unstar">☆ Unstar</button>
<button data-action="collection">Add to collection…</button>
<button data-action="trash" class="danger">Trash</button>
<button id="clear-selection">Clear</button></div>"""
    if filters.get("trashed"):
        form = bulk = ""
    body = f"""<h1>{escape(title)}</h1>{intro}{form}{bulk}
<div id="grid" class="grid"></div><div id="sentinel"></div>
<p id="empty" hidden>No images here yet.</p>"""
    return _page(request, page, title, body, {"fixed": filters})


@gallery_pages.get("", response_class=HTMLResponse)
def grid(request: Request) -> str:
    return _grid(request, "grid", "Images", {}, "")


@gallery_pages.get("/rejected", response_class=HTMLResponse)
def rejected(request: Request) -> str:
    intro = "<p>Images the quality gate turned down, with its reasons.</p>"
    return _grid(request, "rejected", "Rejected images", {"rejected": "1"}, intro)


@gallery_pages.get("/trash", response_class=HTMLResponse)
def trash(request: Request) -> str:
    intro = (
        "<p>Trashed images lie in <code>anime-output/.trash/</code> until the trash is emptied."
        ' <button id="empty-trash" class="danger">Empty trash…</button></p>'
    )
    return _grid(request, "trash", "Trash", {"trashed": "1"}, intro)


@gallery_pages.get("/jobs", response_class=HTMLResponse)
def jobs(request: Request) -> str:
    body = """<h1>Jobs</h1><table id="jobs"><thead><tr><th>job</th><th>what</th><th>queued</th>
<th>state</th><th>progress</th><th></th></tr></thead><tbody></tbody></table>"""
    return _page(request, "jobs", "Jobs", body, {})


@gallery_pages.get("/characters", response_class=HTMLResponse)
def characters(request: Request, settings: Settings = Depends(request_settings)) -> str:
    from tools.characters.library import CharacterLibrary

    catalog = catalog_of(request)
    cards = []
    for character in CharacterLibrary(settings.paths).list():
        rows, _ = catalog.page(Filters(character=character.name), limit=8)
        strip = "".join(
            f'<a href="/gallery/image/{row["id"]}"><img src="/api/images/{row["id"]}/thumb"'
            f' alt="image {row["id"]}" loading="lazy"></a>'
            for row in rows
        )
        reference = urlencode({"path": str(character.reference_path)})
        name = escape(character.name)
        cards.append(
            f"""<section class="character"><img class="reference" src="/api/file?{reference}"
 alt="{name} reference"><div><h2><a href="/gallery?character={name}">{name}</a></h2>
<p>{escape(character.description)}</p>
<div class="strip">{strip or "<em>no images yet</em>"}</div></div></section>"""
        )
    body = "<h1>Characters</h1>" + ("".join(cards) or "<p>No characters yet.</p>")
    return _page(request, "characters", "Characters", body, {})


@gallery_pages.get("/image/{image_id}", response_class=HTMLResponse)
def image(image_id: str, request: Request, filters: Filters = Depends(filters_of)) -> str:
    catalog = catalog_of(request)
    try:
        row = catalog.get(image_id)
    except NotFound:
        raise HTTPException(404, "not found") from None
    shown = image_json(row)
    around = catalog.neighbours(image_id, filters)
    query = urlencode({k: v for k, v in request.query_params.items() if k in FILTER_NAMES})
    suffix = f"?{query}" if query else ""

    def step(name: str, label: str, key: str) -> str:
        target = around[name]
        if target is None:
            return f'<span class="step disabled">{label}</span>'
        return (
            f'<a id="{name}" class="step" href="/gallery/image/{target}{suffix}"'
            f' aria-keyshortcuts="{key}">{label}</a>'
        )

    scores = "".join(
        f"<tr><th>{name}</th><td>{'—' if value is None else f'{value:.3f}'}</td></tr>"
        for name, value in shown["scores"].items()
    )
    picture = (
        '<p class="missing">The file of this image is missing on disk.</p>'
        if shown["missing"]
        else f'<img id="picture" src="/api/images/{row["id"]}/file" alt="image {row["id"]}">'
    )
    reasons = "".join(f"<li>{escape(reason)}</li>" for reason in shown["reasons"])
    star = "★ starred" if shown["starred"] else "☆ star"
    tags = ", ".join(shown["pose"]["tags"])
    body = f"""<div class="viewer">
<div class="picture">{step("newer", "← newer", "ArrowLeft")}{picture}
{step("older", "older →", "ArrowRight")}</div>
<aside>
<h1>{escape(shown["character"])} · {escape(shown["posture"])} · seed {shown["seed"]}</h1>
<p class="path">{escape(shown["path"])}</p>
<div class="actions">
<button id="star" aria-pressed="{str(shown["starred"]).lower()}">{star}</button>
<button id="again" title="The same seed again">Again</button>
<button id="variations">Variations…</button>
<button id="same-but">Same but…</button>
<button id="collect">Add to collection…</button>
{_trash_button(shown)}
</div>
<div id="job" hidden><p id="job-progress"></p><div id="job-images" class="strip"></div></div>
<table class="scores">{scores}</table>
{f"<h2>Rejected because</h2><ul>{reasons}</ul>" if reasons else ""}
<p>Pose <code>{escape(shown["pose"]["id"] or "")}</code> ({escape(tags)})
{f"· collection <code>{escape(shown['collection'])}</code>" if shown["collection"] else ""}</p>
<img class="skeleton" src="/api/gallery/poses/{escape(shown["pose"]["id"] or "none")}/skeleton"
 alt="pose skeleton">
<h2>parameters</h2><pre id="parameters">{escape(parameters_of(row))}</pre>
</aside></div>"""
    return _page(request, "image", f"image {row['id']}", body, {"image": shown})


def _trash_button(shown: dict[str, Any]) -> str:
    if shown["trashed"]:
        return '<button id="restore">Restore</button>'
    keep = "" if shown["accepted"] else '<button id="keep">Keep anyway</button>'
    return f'{keep}<button id="trash" class="danger">Trash</button>'
