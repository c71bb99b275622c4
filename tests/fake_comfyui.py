"""A fake ComfyUI on 127.0.0.1 for tests: the routes and message shapes of ComfyUI's own
`server.py` and `execution.py` (comfyanonymous/ComfyUI), run by aiohttp as ComfyUI is, in a
thread. It "renders" a deterministic PNG from the KSampler seed, with ComfyUI's `prompt` chunk.

Faults (`FakeComfyUI.faults`, each taken by the next prompt that runs): "die" (the server goes
away after the first step, losing its queue and history as a killed process does, and listens
again on the same port), "hang" (no message after the first step until `/interrupt`), "error"
(an `execution_error`), "drop" (its WebSocket closes after the first step, the prompt runs on),
"drop+error" (both: the error reaches only `/history`), "hold" (silent after the first step
until `release` is set: a long prompt of another client's, whose messages server.py sends to
that client's socket only);
`drop_sockets` closes the next WebSockets at once. `packs` leaves IPAdapter_plus out of
`/object_info` when it lacks "ipadapter".
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from tests.fake_comfyui_nodes import (  # noqa: F401  (the tests import the names from here)
    CHECKPOINTS,
    CONTROLNETS,
    LORAS,
    object_info,
    render_png,
    validate_prompt,
)


@dataclass
class Received:
    """What reached the fake: every prompt queued (by id), uploads by name, interrupts."""

    prompts: dict[str, dict[str, Any]] = field(default_factory=dict)
    uploads: dict[str, bytes] = field(default_factory=dict)
    interrupts: int = 0


class FakeComfyUI:
    def __init__(self, root: Path, packs: tuple[str, ...] = ("ipadapter",), port: int = 0) -> None:
        self.root = root
        self.input_dir, self.output_dir = root / "input", root / "output"
        self.input_dir.mkdir(parents=True, exist_ok=True)
        self.output_dir.mkdir(parents=True, exist_ok=True)
        self.packs = set(packs)
        self.received = Received()
        self.faults: list[str] = []
        self.port = port
        self.deaths = 0
        self.died = threading.Event()
        self.hanging = threading.Event()  # set when a "hang" fault starts its silence
        self.release = threading.Event()  # ends a "hold" fault's silence
        self.drop_sockets = 0  # the next N WebSockets close before ComfyUI's `status` message
        self.lose_answers = 0  # the next N POST /prompt queue the prompt but never answer
        self.without_system_stats = False  # as a ComfyUI older than `/system_stats`
        self.disable_metadata = False  # as `main.py --disable-metadata`: no `prompt` chunk
        self.huge_view: tuple[int, int] | None = None  # /view: a PNG header of (w, h), no end
        self.view_sent = 0  # bytes of that endless answer written before the client hung up
        self.abort_views = 0  # the next N /view connections break unanswered
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._counter = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- life ---------------------------------------------------------------------------------
    def __enter__(self) -> FakeComfyUI:
        self._thread.start()
        self._call(self._start())
        return self

    def __exit__(self, *_: object) -> None:
        self._call(self._stop())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    def _call(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout=30)

    async def _start(self) -> None:
        # Fresh state, as a ComfyUI process that just started: no queue, no history, no sockets.
        self.queue: asyncio.Queue = asyncio.Queue()
        self.history: dict[str, Any] = {}
        self.sockets: dict[str, web.WebSocketResponse] = {}
        self.running: str | None = None
        self.interrupted = asyncio.Event()
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.add_routes([
            web.get("/object_info", self._object_info),
            web.get("/system_stats", self._system_stats),
            web.post("/upload/image", self._upload),
            web.post("/prompt", self._post_prompt),
            web.get("/history/{prompt_id}", self._history),
            web.get("/view", self._view),
            web.post("/interrupt", self._interrupt),
            web.get("/queue", self._get_queue),
            web.post("/queue", self._post_queue),
            web.get("/ws", self._ws),
        ])  # fmt: skip
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", self.port, reuse_address=True)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self._executor = asyncio.ensure_future(self._execute_loop())

    async def _stop(self, executor: bool = True) -> None:
        if executor:
            self._executor.cancel()
        for ws in list(self.sockets.values()):
            await ws.close()
        await self.runner.cleanup()

    # -- routes (server.py) -------------------------------------------------------------------
    async def _object_info(self, _request: web.Request) -> web.Response:
        uploads = sorted(os.listdir(self.input_dir))
        return web.json_response(object_info(self.packs, uploads))

    async def _system_stats(self, _request: web.Request) -> web.Response:
        if self.without_system_stats:
            return web.Response(status=404)
        system = {"os": "posix", "comfyui_version": "0.3.99-fake", "python_version": "3"}
        return web.json_response({"system": system, "devices": []})

    async def _upload(self, request: web.Request) -> web.Response:
        # server.py `image_upload`: a taken name becomes "name (1).png" unless overwrite=true.
        post = await request.post()
        image = post.get("image")
        if not isinstance(image, web.FileField) or not image.filename:
            return web.Response(status=400)
        filepath = (self.input_dir / image.filename).resolve()
        if filepath.parent != self.input_dir.resolve():
            return web.Response(status=400)
        data = image.file.read()
        if post.get("overwrite") not in ("true", "1"):
            stem, suffix, i = filepath.stem, filepath.suffix, 1
            while filepath.exists() and filepath.read_bytes() != data:
                filepath = self.input_dir / f"{stem} ({i}){suffix}"
                i += 1
        filepath.write_bytes(data)
        self.received.uploads[filepath.name] = data
        return web.json_response({"name": filepath.name, "subfolder": "", "type": "input"})

    async def _post_prompt(self, request: web.Request) -> web.Response:
        data = await request.json()
        if "prompt" not in data:
            return web.json_response({"error": "no prompt", "node_errors": []}, status=400)
        uploads = sorted(os.listdir(self.input_dir))
        ok, error, node_errors = validate_prompt(data["prompt"], object_info(self.packs, uploads))
        if not ok:
            return web.json_response({"error": error, "node_errors": node_errors}, status=400)
        prompt_id = str(data.get("prompt_id", uuid.uuid4()))  # server.py: the client may choose
        self._counter += 1
        self.received.prompts[prompt_id] = data["prompt"]
        await self.queue.put((self._counter, prompt_id, data["prompt"], data.get("client_id")))
        if self.lose_answers:  # queued, but the connection breaks before the answer
            self.lose_answers -= 1
            assert request.transport is not None
            request.transport.abort()
        return web.json_response({"prompt_id": prompt_id, "number": self._counter,
                                  "node_errors": {}})  # fmt: skip

    async def _history(self, request: web.Request) -> web.Response:
        prompt_id = request.match_info["prompt_id"]
        entry = self.history.get(prompt_id)
        return web.json_response({prompt_id: entry} if entry else {})

    async def _view(self, request: web.Request) -> web.StreamResponse:
        if self.huge_view is not None:
            return await self._endless_png(request, *self.huge_view)
        if self.abort_views:
            self.abort_views -= 1
            assert request.transport is not None
            request.transport.abort()
        # server.py `view_image`: no absolute names or "..", the subfolder stays inside the dir.
        filename = request.rel_url.query.get("filename", "")
        if not filename or filename[0] == "/" or ".." in filename:
            return web.Response(status=400)
        kind = request.rel_url.query.get("type", "output")
        base = {"output": self.output_dir, "input": self.input_dir}.get(kind)
        if base is None:
            return web.Response(status=400)
        folder = (base / request.rel_url.query.get("subfolder", "")).resolve()
        if os.path.commonpath((folder, base.resolve())) != str(base.resolve()):
            return web.Response(status=403)
        file = folder / os.path.basename(filename)
        if not file.is_file():
            return web.Response(status=404)
        return web.FileResponse(file)

    async def _endless_png(
        self, request: web.Request, width: int, height: int
    ) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "image/png"})
        await response.prepare(request)
        size = width.to_bytes(4, "big") + height.to_bytes(4, "big")
        await response.write(b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR" + size + bytes(5))
        chunk = bytes(1024 * 1024)
        with contextlib.suppress(ConnectionError):  # the client hung up: what it should do
            while self.view_sent < 1024**3:  # a client that reads on forever fails its test
                await response.write(chunk)
                self.view_sent += len(chunk)
        return response

    async def _interrupt(self, _request: web.Request) -> web.Response:
        self.received.interrupts += 1
        self.interrupted.set()
        return web.Response(status=200)

    async def _get_queue(self, _request: web.Request) -> web.Response:
        pending = [list(item) for item in self.queue._queue]  # type: ignore[attr-defined]
        running = [[0, self.running, {}, {}, []]] if self.running else []
        return web.json_response({"queue_running": running, "queue_pending": pending})

    async def _post_queue(self, request: web.Request) -> web.Response:
        # server.py `post_queue`: "clear" wipes the pending queue, "delete" takes ids out of it.
        data = await request.json()
        doomed = set(data.get("delete", []))
        kept = [
            item
            for item in self.queue._queue  # type: ignore[attr-defined]
            if item[1] not in doomed and not data.get("clear")
        ]
        self.queue._queue.clear()  # type: ignore[attr-defined]
        self.queue._queue.extend(kept)  # type: ignore[attr-defined]
        return web.Response(status=200)

    async def _ws(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        if self.drop_sockets:
            self.drop_sockets -= 1
            await ws.close()
            return ws
        sid = request.rel_url.query.get("clientId") or uuid.uuid4().hex
        self.sockets[sid] = ws
        status = {"exec_info": {"queue_remaining": self.queue.qsize()}}
        await ws.send_json({"type": "status", "data": {"status": status, "sid": sid}})
        try:
            async for _ in ws:
                pass
        finally:
            self.sockets.pop(sid, None)
        return ws

    # -- execution (execution.py's message order) ---------------------------------------------
    async def _send(self, sid: str | None, event: str, data: dict[str, Any]) -> None:
        ws = self.sockets.get(sid or "")
        if ws is not None and not ws.closed:
            await ws.send_json({"type": event, "data": data})

    async def _execute_loop(self) -> None:
        while True:
            _number, prompt_id, prompt, sid = await self.queue.get()
            self.running = prompt_id
            self.interrupted.clear()
            fault = self.faults.pop(0) if self.faults else None
            if not await self._execute(prompt_id, prompt, sid, fault):
                return  # this process died: the one that started in its place runs its own loop
            self.running = None

    async def _execute(self, prompt_id: str, prompt: dict[str, Any], sid: str | None,
                       fault: str | None) -> bool:  # fmt: skip
        """Run one prompt; False when the server died during it."""
        send = lambda event, **data: self._send(sid, event, {**data, "prompt_id": prompt_id})  # noqa: E731
        await send("execution_start", timestamp=0)
        await send("execution_cached", nodes=[])
        outputs: dict[str, Any] = {}
        for node_id, node in prompt.items():
            await send("executing", node=node_id, display_node=node_id)
            kind = node["class_type"]
            if kind in ("KSampler", "KSamplerAdvanced"):
                steps = int(node["inputs"]["steps"])
                for value in range(1, steps + 1):
                    await send("progress", value=value, max=steps, node=node_id)
                    if value == 1 and fault == "die":
                        self.deaths += 1
                        await self._stop(executor=False)
                        await self._start()
                        self.died.set()
                        return False
                    if value == 1 and fault in ("drop", "drop+error") and sid in self.sockets:
                        await self.sockets[sid].close()  # the socket goes; the prompt runs on
                    if value == 1 and fault == "hang":
                        self.hanging.set()
                        await self.interrupted.wait()
                    while value == 1 and fault == "hold" and not self.release.is_set():
                        await asyncio.sleep(0.02)
                    if self.interrupted.is_set():
                        await send("execution_interrupted", node_id=node_id, node_type=kind,
                                   executed=[])  # fmt: skip
                        self._record(prompt_id, prompt, {}, "error")
                        return True
                if fault in ("error", "drop+error"):
                    error = {"prompt_id": prompt_id, "node_id": node_id, "node_type": kind,
                             "executed": [], "exception_message": "CUDA out of memory (fake)",
                             "exception_type": "torch.OutOfMemoryError", "traceback": [],
                             "current_inputs": {}, "current_outputs": {}}  # fmt: skip
                    await send("execution_error", **error)
                    self._record(prompt_id, prompt, {}, "error", [["execution_error", error]])
                    return True
            if kind == "SaveImage":
                outputs[node_id] = {"images": [self._save(prompt, node)]}
                await send("executed", node=node_id, display_node=node_id,
                           output=outputs[node_id])  # fmt: skip
        self._record(prompt_id, prompt, outputs, "success")
        await send("execution_success", timestamp=0)
        await send("executing", node=None)
        return True

    def _save(self, prompt: dict[str, Any], node: dict[str, Any]) -> dict[str, str]:
        sampler = next(n for n in prompt.values() if n["class_type"].startswith("KSampler"))
        latent = next(n for n in prompt.values() if n["class_type"] == "EmptyLatentImage")
        seed = sampler["inputs"].get("seed", sampler["inputs"].get("noise_seed", 0))
        size = latent["inputs"]["width"], latent["inputs"]["height"]
        png = render_png(seed, *size, None if self.disable_metadata else prompt)
        prefix = str(node["inputs"].get("filename_prefix", "ComfyUI"))
        name = f"{prefix}_{len(os.listdir(self.output_dir)) + 1:05}_.png"
        (self.output_dir / name).write_bytes(png)
        return {"filename": name, "subfolder": "", "type": "output"}

    def _record(self, prompt_id: str, prompt: dict[str, Any], outputs: dict[str, Any],
                status: str, messages: list | None = None) -> None:  # fmt: skip
        # execution.py's history entry: the queue item, the outputs, a status whose messages
        # are the [event, data] pairs `PromptExecutor.add_message` kept (main.py `task_done`).
        self.history[prompt_id] = {
            "prompt": [0, prompt_id, prompt, {}, list(outputs)],
            "outputs": outputs,
            "status": {
                "status_str": status,
                "completed": status == "success",
                "messages": messages or [],
            },  # fmt: skip
            "meta": {},
        }
