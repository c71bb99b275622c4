"""The gallery's way in: a login code for the URL that `anime-gen gallery` prints.

The code is derived from the server's token (which changes at every server start), so the URL
works as often as it is opened while that server lives and never again after; it is exchanged
for the HttpOnly, SameSite=Strict token cookie, and the token itself never appears in a URL or
in the browser's history. Standard library only: the CLI computes it too.
"""

from __future__ import annotations

import hashlib
import hmac

LOGIN_PATH = "/gallery/login"


def login_code(token: str) -> str:
    return hmac.new(token.encode(), b"anime-gallery-login", hashlib.sha256).hexdigest()


def login_url(base_url: str, token: str) -> str:
    return f"{base_url}{LOGIN_PATH}?code={login_code(token)}"


def valid_login_code(code: str, token: str) -> bool:
    return hmac.compare_digest(code.encode(), login_code(token).encode())
