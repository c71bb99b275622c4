"""The web gallery: browse, search, star, trash and re-run generations in the browser.

`catalog` (the generation index seen as a gallery: listing, marks, trash/restore), `listing`
(filters, full-text search, the image JSON), `reconcile` (index vs disk), `api` (the JSON
routes), `pages` (HTML + `static/`), `thumbs` (WebP cache), `png_record` (marks written into the
PNG's record), `auth` (the login code of the printed URL; stdlib only, so `anime-gen gallery`
stays a thin client).
"""

from __future__ import annotations

from typing import Any


def gallery_routers() -> tuple[Any, Any]:
    """The routers behind the token check: the JSON API and the pages."""
    from tools.gallery.api import gallery_api
    from tools.gallery.pages import gallery_pages

    return gallery_api, gallery_pages


def login_router() -> Any:
    """The one route that checks its own credential (the login code), not the token."""
    from tools.gallery.pages import login_router as router

    return router
