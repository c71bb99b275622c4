"""A small fake Ollama server on 127.0.0.1 for tests: the real `ollama` client talks to it.

It speaks `/api/version`, `/api/tags`, `/api/chat` (with tools) and `/api/generate` (the
keep_alive unload). Chat answers are scripted: enqueue them with `reply_tool_calls`/`reply_text`;
every request body is recorded in `requests` so tests can check what the client sent.
`misbehave_on_chat("hang" | "drop")` makes the next chat hang (bounded by `HANG_SECONDS`) or
close the connection without an answer.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

HANG_SECONDS = 5.0


class FakeOllama:
    def __init__(self, models: tuple[str, ...] = ("qwen2.5:7b",)) -> None:
        self.models = list(models)
        self.chat_replies: deque[dict[str, Any]] = deque()
        self.requests: list[tuple[str, dict[str, Any]]] = []
        self.chat_faults: deque[str] = deque()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def host(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> FakeOllama:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def reply_tool_calls(self, *calls: tuple[str, dict[str, Any]], content: str = "") -> None:
        tool_calls = [{"function": {"name": name, "arguments": args}} for name, args in calls]
        self.chat_replies.append(
            {"role": "assistant", "content": content, "tool_calls": tool_calls}
        )

    def reply_text(self, content: str) -> None:
        self.chat_replies.append({"role": "assistant", "content": content})

    def misbehave_on_chat(self, fault: str) -> None:
        assert fault in ("hang", "drop")
        self.chat_faults.append(fault)

    def bodies(self, path: str) -> list[dict[str, Any]]:
        return [body for seen, body in self.requests if seen == path]

    def _answer(self, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if path == "/api/version":
            return 200, {"version": "0.6.0"}
        if path == "/api/tags":
            return 200, {"models": [{"name": m, "model": m, "size": 1} for m in self.models]}
        model = body.get("model", "")
        if path in ("/api/chat", "/api/generate") and model not in self.models:
            return 404, {"error": f'model "{model}" not found, try pulling it first'}
        if path == "/api/chat":
            message = self.chat_replies.popleft() if self.chat_replies else {
                "role": "assistant", "content": "I have nothing scripted."
            }  # fmt: skip
            return 200, {"model": model, "created_at": "2025-01-01T00:00:00Z",
                         "message": message, "done": True, "done_reason": "stop"}  # fmt: skip
        if path == "/api/generate":
            return 200, {"model": model, "created_at": "2025-01-01T00:00:00Z", "response": "",
                         "done": True, "done_reason": "unload"}  # fmt: skip
        return 404, {"error": f"no route {path}"}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _respond(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                body = json.loads(raw) if raw else {}
                fake.requests.append((self.path, body))
                if self.path == "/api/chat" and fake.chat_faults:
                    if fake.chat_faults.popleft() == "hang":
                        time.sleep(HANG_SECONDS)
                    self.close_connection = True
                    return
                status, payload = fake._answer(self.path, body)
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = _respond

            def log_message(self, *args: object) -> None:
                pass

        return Handler
