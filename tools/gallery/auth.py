"""The gallery's way in: a single-use login code for the URL that `anime-gen gallery` prints.

Each code is a fresh nonce and its HMAC under the server's token (which changes at every server
start), so only a holder of the token (the CLI) can mint one, and the server accepts each nonce
once: the URL in the browser's history is spent. It is exchanged for the session cookie, whose
value is a separate random secret of this server, never the token. Standard library only: the
CLI mints codes too.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
from collections import OrderedDict

LOGIN_PATH = "/gallery/login"
# Spent nonces remembered per server life; far more than anyone opens links in one session.
REMEMBERED_CODES = 10_000


def _signature(token: str, nonce: str) -> str:
    return hmac.new(
        token.encode(), f"anime-gallery-login:{nonce}".encode(), hashlib.sha256
    ).hexdigest()


def login_code(token: str) -> str:
    nonce = secrets.token_hex(12)
    return f"{nonce}.{_signature(token, nonce)}"


def login_url(base_url: str, token: str) -> str:
    return f"{base_url}{LOGIN_PATH}?code={login_code(token)}"


class LoginCodes:
    """The server's side: a code is valid once, if the token signed it."""

    def __init__(self) -> None:
        self._spent: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()

    def redeem(self, code: str, token: str) -> bool:
        nonce, _, signature = code.partition(".")
        expected = _signature(token, nonce).encode()
        if not nonce or not hmac.compare_digest(signature.encode("utf-8", "replace"), expected):
            return False
        with self._lock:
            if nonce in self._spent:
                return False
            self._spent[nonce] = None
            while len(self._spent) > REMEMBERED_CODES:
                self._spent.popitem(last=False)
        return True
