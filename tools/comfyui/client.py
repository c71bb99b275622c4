"""ComfyUI's HTTP and WebSocket API, as its `server.py` serves it (comfyanonymous/ComfyUI).

Stdlib HTTP plus the `websockets` sync client; nothing heavy. Every answer is checked before use
(a ComfyUI answering garbage is a `ComfyUIError`, never a KeyError), and downloads are capped.
"""

from __future__ import annotations

import http.client
import json
import math
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from typing import Any

from tools.text import one_line

MAX_JSON_BYTES = 64 * 1024 * 1024  # /object_info of a big install is a few MB
MAX_IMAGE_BYTES = 256 * 1024 * 1024
MAX_PIXELS = 4096 * 4096  # an output over this is refused from its PNG header, unread
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_HEAD_BYTES = 24  # the signature and IHDR up to its width and height
CHUNK_BYTES = 1024 * 1024


class ComfyUIError(RuntimeError):
    """ComfyUI answered, but not as its API says (or with an error of its own)."""


class Unreachable(ComfyUIError):
    """Nothing answers at the URL (not started, restarting, or gone mid-prompt)."""


class ComfyUIClient:
    def __init__(self, url: str, timeout: float = 30.0, client_id: str | None = None) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.client_id = client_id or uuid.uuid4().hex

    # -- plain HTTP -----------------------------------------------------------------------------
    def _request(
        self, method: str, path: str, body: bytes | None = None, headers: dict | None = None,
        read: Callable[[Any], bytes] | None = None,
    ) -> tuple[int, bytes]:  # fmt: skip
        """(status, body); `read` reads a 200's body (default: JSON-sized, capped)."""
        request = urllib.request.Request(
            self.url + path, data=body, method=method, headers=headers or {}
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
                if read is not None:
                    return response.status, read(response)
                return response.status, _read_capped(response, MAX_JSON_BYTES, path)
        except urllib.error.HTTPError as error:
            return error.code, _read_capped(error, MAX_JSON_BYTES, path)
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError) as error:
            raise Unreachable(f"ComfyUI at {self.url} does not answer ({_reason(error)})") from None
        except http.client.HTTPException as error:
            raise self._not_http(path, error) from None

    def get_json(self, path: str) -> Any:
        status, data = self._request("GET", path)
        if status != 200:
            raise ComfyUIError(f"ComfyUI {path}: HTTP {status}")
        return _json(data, path)

    def post_json(self, path: str, payload: Any) -> tuple[int, Any]:
        body = json.dumps(payload).encode()
        status, data = self._request("POST", path, body, {"Content-Type": "application/json"})
        return status, (_json(data, path) if data.strip() else None)

    # -- the API --------------------------------------------------------------------------------
    def answers(self) -> bool:
        """Whether a server answers at the URL at all (any HTTP status: an older ComfyUI may
        lack `/system_stats`)."""
        try:
            self._request("GET", "/system_stats")
        except Unreachable:
            return False
        except ComfyUIError:
            pass  # an oversized answer is still an answer
        return True

    def system_stats(self) -> dict[str, Any]:
        return _mapping(self.get_json("/system_stats"), "/system_stats")

    def object_info(self) -> dict[str, Any]:
        return _mapping(self.get_json("/object_info"), "/object_info")

    def upload_image(self, name: str, png: bytes) -> str:
        """`/upload/image` with overwrite: the name ComfyUI stored it under (LoadImage's value)."""
        boundary = uuid.uuid4().hex
        parts = [
            f'--{boundary}\r\nContent-Disposition: form-data; name="overwrite"\r\n\r\ntrue\r\n',
            f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="{name}"'
            "\r\nContent-Type: image/png\r\n\r\n",
        ]
        body = parts[0].encode() + parts[1].encode() + png + f"\r\n--{boundary}--\r\n".encode()
        headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
        status, data = self._request("POST", "/upload/image", body, headers)
        answer = _json(data, "/upload/image") if status == 200 else None
        if not isinstance(answer, dict) or not isinstance(answer.get("name"), str):
            raise ComfyUIError(f"ComfyUI /upload/image: HTTP {status}, no file name")
        subfolder = answer.get("subfolder") or ""
        return f"{subfolder}/{answer['name']}" if subfolder else answer["name"]

    def queue_prompt(self, graph: dict[str, Any], prompt_id: str | None = None) -> tuple[int, Any]:
        """POST /prompt with our client id (and our prompt id, which a ComfyUI older than
        `prompt_id` support ignores: its answer names the one it chose): (status, answer)."""
        payload = {"prompt": graph, "client_id": self.client_id}
        return self.post_json("/prompt", payload | ({"prompt_id": prompt_id} if prompt_id else {}))

    def history(self, prompt_id: str) -> dict[str, Any] | None:
        """The prompt's history entry, or None while it is queued, running, or unknown."""
        answer = _mapping(self.get_json(f"/history/{urllib.parse.quote(prompt_id)}"), "/history")
        entry = answer.get(prompt_id)
        if entry is None:
            return None
        return _mapping(entry, "/history entry")

    def view(self, filename: str, subfolder: str, kind: str, deadline: float = math.inf) -> bytes:
        """An output file, streamed: its PNG header's size is checked before the rest is read
        (at most what a PNG of that size can hold), so a huge or endless answer stops early;
        one that trickles in (each byte within the socket timeout) stops at `deadline`
        (`time.monotonic()`)."""
        query = urllib.parse.urlencode({"filename": filename, "subfolder": subfolder, "type": kind})

        def read(response: Any) -> bytes:
            head = response.read(PNG_HEAD_BYTES)
            cap = png_byte_cap(head, filename)
            return head + _read_capped(response, cap, "/view", deadline)

        status, data = self._request("GET", f"/view?{query}", read=read)
        if status != 200:
            raise ComfyUIError(f"ComfyUI /view {filename}: HTTP {status}")
        return data

    def _not_http(self, path: str, error: http.client.HTTPException) -> ComfyUIError:
        """A chunked answer cut short is a ComfyUI gone mid-answer (retried when it is back);
        a status line or header no HTTP server sends is something else at the URL."""
        if isinstance(error, http.client.IncompleteRead):
            return Unreachable(f"ComfyUI at {self.url} broke off its answer to {path}")
        return ComfyUIError(
            f"what answers at {self.url} is no HTTP server ({type(error).__name__}: "
            f"{one_line(str(error), 80)})"
        )

    def interrupt(self, prompt_id: str | None = None) -> None:
        """Stop the running prompt (`/interrupt`) and take ours out of the queue (`/queue`)."""
        self.post_json("/interrupt", {"prompt_id": prompt_id} if prompt_id else {})
        if prompt_id:
            self.post_json("/queue", {"delete": [prompt_id]})

    # -- the WebSocket --------------------------------------------------------------------------
    def messages(self, idle: float) -> Iterator[dict[str, Any] | None]:
        """`/ws?clientId=` messages as dicts; None after `idle` seconds without one. Ends when
        the socket closes. Binary frames (previews) are skipped."""
        from websockets.exceptions import WebSocketException
        from websockets.sync.client import connect

        ws_url = "ws" + self.url.removeprefix("http") + f"/ws?clientId={self.client_id}"
        try:
            socket = connect(ws_url, open_timeout=self.timeout, max_size=MAX_JSON_BYTES)
        except (OSError, WebSocketException, TimeoutError) as error:
            raise Unreachable(f"ComfyUI at {self.url} does not answer ({_reason(error)})") from None
        with socket:
            while True:
                try:
                    frame = socket.recv(timeout=idle)
                except TimeoutError:
                    yield None
                    continue
                except (OSError, WebSocketException):
                    return
                if isinstance(frame, str):
                    message = _json(frame.encode(), "/ws")
                    if isinstance(message, dict) and isinstance(message.get("data"), dict):
                        yield message


def _read_capped(response: Any, limit: int, path: str, deadline: float = math.inf) -> bytes:
    """The answer's body, in chunks, up to `limit` bytes (more is an error, read no further)
    and until `deadline` (read1: a chunk is what has arrived, so the clock is looked at)."""
    chunks, size = [], 0
    while chunk := response.read1(min(CHUNK_BYTES, limit + 1 - size)):
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            raise ComfyUIError(f"ComfyUI {path}: answer over {limit / (1024 * 1024):g} MB")
        if time.monotonic() > deadline:
            raise ComfyUIError(f"ComfyUI {path}: the answer still trickles in at the deadline")
    if getattr(response, "length", None):  # http.client reads a short Content-Length as the end
        raise Unreachable(f"ComfyUI {path}: the answer ended {response.length} bytes short")
    return b"".join(chunks)


def png_byte_cap(head: bytes, filename: str) -> int:
    """How many more bytes a PNG starting with `head` (signature, then the IHDR chunk's length,
    type, width and height: the PNG spec puts IHDR first) may have: its pixels uncompressed at
    16-bit RGBA plus a filter byte a row, and room for text chunks (ComfyUI's `prompt` and
    `workflow`); a header that is no PNG's, or a size over MAX_PIXELS, is refused unread."""
    shown = one_line(filename)
    if len(head) < PNG_HEAD_BYTES or head[:8] != PNG_SIGNATURE or head[12:16] != b"IHDR":
        raise ComfyUIError(f"ComfyUI's output {shown} is not a PNG")
    width, height = int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
    if width * height > MAX_PIXELS:
        raise ComfyUIError(f"ComfyUI's output {shown} is {width}x{height}: too large")
    return min(MAX_IMAGE_BYTES, width * height * 8 + height + MAX_JSON_BYTES)


def _json(data: bytes, path: str) -> Any:
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise ComfyUIError(f"ComfyUI {path}: the answer is not JSON") from None


def _mapping(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ComfyUIError(f"ComfyUI {what}: expected an object, got {type(value).__name__}")
    return value


def _reason(error: BaseException) -> str:
    reason = getattr(error, "reason", None) or error
    return str(reason).splitlines()[0][:200] if str(reason) else type(error).__name__
