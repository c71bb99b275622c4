"""Who may talk to the server and what it may serve.

- Every request carries the token: `Authorization: Bearer <token>` (the CLIs), HTTP Basic with
  any user name and the token as the password (A1111's `--api-auth` clients), or the gallery's
  session cookie. Its value is a random secret of this server (never the token: browsers send a
  host's cookies to every port of it) and its name carries the port (two homes' servers on one
  host keep separate logins). A cookie rides along with any request the browser makes, so a
  cookie-authenticated request that changes something (POST, ...) must also carry the CSRF
  header that only our own page can set; a bearer or Basic request needs none. Missing or
  wrong: 401.
- `Host` and `Origin` must be loopback (or the host the server was explicitly bound to): a DNS
  rebinding page or another site gets 403.
- `guard_path` resolves a path and refuses (404) anything outside the output, character and
  state folders.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from pathlib import Path
from urllib.parse import urlsplit

from fastapi import HTTPException, Request, Response

COOKIE_PREFIX = "anime_session_"
CSRF_HEADER = "X-Anime-CSRF"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "::1"})


def csrf_token(session: str) -> str:
    """The value the gallery page sends in `X-Anime-CSRF`; derived, so nothing else is stored."""
    return hmac.new(session.encode(), b"anime-gallery-csrf", hashlib.sha256).hexdigest()


def cookie_name(port: int) -> str:
    return f"{COOKIE_PREFIX}{port}"


def _request_port(request: Request) -> int:
    bound: int = getattr(request.app.state.studio, "port", 0)
    return bound or request.url.port or (443 if request.url.scheme == "https" else 80)


def set_session_cookie(request: Request, response: Response) -> None:
    """Log the browser in (the gallery's login route calls this once its code is redeemed)."""
    session: str = request.app.state.studio.gallery_session
    response.set_cookie(
        cookie_name(_request_port(request)), session, httponly=True, samesite="strict", path="/"
    )


def has_session(request: Request) -> bool:
    cookie = request.cookies.get(cookie_name(_request_port(request)))
    return bool(cookie) and _matches(cookie, request.app.state.studio.gallery_session)


def _matches(presented: str, expected: str) -> bool:
    """Constant-time compare of any header text (`compare_digest` raises on non-ASCII str)."""
    return secrets.compare_digest(
        presented.encode("utf-8", "surrogatepass"), expected.encode("utf-8", "surrogatepass")
    )


def _basic_password(credentials: str) -> str | None:
    """The password of HTTP Basic credentials (`base64(user:password)`), None if malformed."""
    try:
        decoded = base64.b64decode(credentials.strip(), validate=True).decode("utf-8")
    except ValueError:  # binascii.Error, UnicodeDecodeError, and non-ASCII text: all of them
        # (fastapi/security/http.py's HTTPBasic catches ValueError as well)
        return None
    _, colon, password = decoded.partition(":")
    return password if colon else None


def require_token(request: Request) -> None:
    """Bearer token, HTTP Basic (any user, the token as the password), or session cookie
    (+ CSRF header unless the method is safe); else 401.

    The app's middleware calls it before any route reads a body; it is also every router's
    dependency, so a route mounted outside the middleware is still guarded."""
    token: str = request.app.state.token
    scheme, _, presented = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and presented:
        if _matches(presented.strip(), token):
            return
        raise HTTPException(401, "wrong token (see <state>/server.token)")
    if scheme.lower() == "basic":
        password = _basic_password(presented)
        if password and _matches(password, token):
            return
        raise HTTPException(
            401,
            "wrong credentials: any user name, the token (<state>/server.token) as the password",
        )
    if has_session(request):
        if request.method in SAFE_METHODS:
            return
        header = request.headers.get(CSRF_HEADER, "")
        if header and _matches(header, csrf_token(request.app.state.studio.gallery_session)):
            return
        raise HTTPException(401, f"a cookie-authenticated {request.method} needs {CSRF_HEADER}")
    raise HTTPException(401, "missing token: send Authorization: Bearer <state>/server.token")


def _hostname(value: str) -> str | None:
    """The host name of a `Host` value (`name[:port]`), or None when it does not parse."""
    try:
        parts = urlsplit(f"//{value}")
        _ = parts.port  # a port that is not a number raises here
    except ValueError:
        return None
    return (parts.hostname or "").lower() or None


def allowed_host(value: str | None, bound_host: str, extra: frozenset[str] = frozenset()) -> bool:
    """Loopback, the host the server was bound to, or a name of `server.allowed_hosts`."""
    name = _hostname(value) if value else None
    return name is not None and (
        name in LOOPBACK_NAMES or name == bound_host.lower() or name in extra
    )


def allowed_origin(origin: str | None, scheme: str, host: str | None) -> bool:
    """No Origin (CLI, same-origin GET) is fine; a present one must be this server's exact
    origin (scheme, host and port: another local service on another port is another origin)."""
    if origin is None:
        return True
    return host is not None and origin.lower() == f"{scheme}://{host}".lower()


# Files of the output are served as images only; the page's own scripts and styles come from
# this origin; nothing may frame it (https://owasp.org/www-project-secure-headers/).
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline';"
    " img-src 'self' data: blob:; object-src 'none'; base-uri 'none'; frame-ancestors 'none';"
    " form-action 'self'"
)
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp"})


def with_security_headers(response: Response) -> Response:
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


def guard_path(path: str | Path, roots: list[Path]) -> Path:
    """The resolved path if it lies inside one of `roots` (symlinks followed); else 404."""
    try:
        resolved = Path(path).expanduser().resolve()
    except (OSError, RuntimeError, ValueError):
        raise HTTPException(404, "not found") from None
    for root in roots:
        if resolved.is_relative_to(root.resolve()):
            return resolved
    raise HTTPException(404, "not found")
