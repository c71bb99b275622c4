"""Running one image on ComfyUI: upload, queue, follow, fetch; restart detection and retry.

Follows ComfyUI's own client example (`script_examples/websockets_api_example.py`): open `/ws`
with our client id first, then `POST /prompt`, read `executing` / `progress` / `executed` /
`execution_success` / `execution_error` / `execution_interrupted`, then read the outputs from
`/history/{id}` (written by `main.py`'s prompt worker after `execution_success`, so it is polled)
and download them with `/view`.

- ComfyUI unreachable: wait (the phase says "waiting for ComfyUI at URL"), bounded by
  `comfyui.timeout`, then one line.
- ComfyUI gone mid-prompt (the socket closed): wait for it again; a prompt it still has in its
  history is fetched, a lost one is submitted again. Nothing is saved here, so nothing twice.
- No message for `worker.hang_timeout` while ours runs: interrupt it and raise `ComfyUIHang` (a
  failed attempt). Queued behind other clients' prompts, ours waits (bounded by
  `comfyui.timeout`); deleted from the queue by someone else, it is submitted again.
- Our job cancelled (the step or phase callback raises): interrupt / dequeue our prompt.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tools.comfyui.client import ComfyUIClient, ComfyUIError, Unreachable
from tools.comfyui.graph import check_graph
from tools.errors import UserError
from tools.text import one_line

POLL_SECONDS = 0.5


class Lost(Unreachable):
    """ComfyUI answers but has our prompt neither queued nor in its history (another client
    deleted it or cleared the queue): it is submitted again, as after a restart."""


class ComfyUIHang(ComfyUIError):
    """ComfyUI sent nothing for `worker.hang_timeout` during our prompt (interrupted)."""


@dataclass(frozen=True)
class Output:
    """One ComfyUI output, byte for byte, and the graph that made it."""

    png: bytes
    graph: dict[str, Any]
    prompt_id: str


GraphMaker = Callable[[dict[str, str]], tuple[dict[str, Any], set[str], str]]


class PromptRunner:
    """Runs prompts on one ComfyUI. `phase(text)` reports what it waits for (and beats);
    `on_step(step, steps)` reports the sampler's steps."""

    def __init__(
        self,
        client: ComfyUIClient,
        *,
        timeout: float,
        hang_timeout: float,
        phase: Callable[[str], None],
    ) -> None:
        self.client = client
        self.timeout = timeout
        self.hang_timeout = hang_timeout
        self.phase = phase
        self._info: dict[str, Any] | None = None
        self.pending: str | None = None  # our prompt id while ComfyUI has (or had) it

    def object_info(self) -> dict[str, Any]:
        if self._info is None:
            self._info = self.client.object_info()
        return self._info

    def wait_until_up(self, deadline: float) -> None:
        while not self.client.answers():
            if time.monotonic() > deadline:
                raise UserError(
                    f"ComfyUI at {self.client.url} did not answer within {self.timeout:.0f} s",
                    "start ComfyUI (python main.py --listen 127.0.0.1), or set comfyui.url",
                )
            self._info = None  # a ComfyUI that comes back may have other nodes or models
            self.phase(f"waiting for ComfyUI at {self.client.url}")
            time.sleep(POLL_SECONDS)

    def run(
        self,
        make_graph: GraphMaker,
        uploads: dict[str, tuple[str, bytes]],
        on_step: Callable[[int, int], None] | None,
    ) -> Output:
        """`uploads`: slot -> (file name, PNG); `make_graph(names)` gets the names ComfyUI
        stored them under and returns (graph, the node ids we filled, the save node id)."""
        deadline = time.monotonic() + self.timeout
        self.pending = None
        while True:
            self.wait_until_up(deadline)
            try:
                names = {
                    slot: self.client.upload_image(*upload) for slot, upload in uploads.items()
                }
                graph, filled, save_node = make_graph(names)
                check_graph(graph, self.object_info(), filled)
                return self._run_once(graph, save_node, deadline, on_step)
            except Unreachable as error:
                # Gone mid-prompt: when it answers again, see what it kept. A ComfyUI that
                # answers /system_stats but keeps breaking off (/view, /ws) is bounded too.
                if time.monotonic() > deadline:
                    raise ComfyUIError(
                        f"ComfyUI kept breaking off for over {self.timeout:.0f} s "
                        f"(comfyui.timeout): {error}"
                    ) from None
                time.sleep(POLL_SECONDS)

    def _run_once(
        self,
        graph: dict[str, Any],
        save_node: str,
        deadline: float,
        on_step: Callable[[int, int], None] | None,
    ) -> Output:
        messages = self.client.messages(idle=POLL_SECONDS)
        # The `status` message: the socket is ours before the prompt runs.
        if next(messages, None) is None:
            raise Unreachable(f"ComfyUI at {self.client.url} closed its WebSocket at once")
        entry = self.client.history(self.pending) if self.pending else None
        if entry is None and not (self.pending and self._queued(self.pending)):
            # A restarted ComfyUI lost the prompt (it is neither in its history nor queued).
            self.pending = self._submit(graph)
        prompt_id = self.pending
        assert prompt_id is not None
        try:
            if entry is None:
                self._follow(prompt_id, messages, deadline, on_step)
                entry = self._history(prompt_id, deadline)
        except (Unreachable, ComfyUIHang):
            raise
        except BaseException:
            self._stop(prompt_id)  # cancelled, timed out, or failed on our side
            raise
        finally:
            messages.close()
        return Output(self._download(entry, save_node, deadline), graph, prompt_id)

    def _submit(self, graph: dict[str, Any]) -> str:
        # Our own id (server.py takes the client's `prompt_id`): if the answer is lost, the
        # next round finds the prompt queued by it instead of queueing the image twice.
        self.pending = uuid.uuid4().hex
        status, answer = self.client.queue_prompt(graph, self.pending)
        if status == 200 and isinstance(answer, dict) and isinstance(answer.get("prompt_id"), str):
            return answer["prompt_id"]
        raise UserError(f"ComfyUI refused the prompt: {refusal(answer, status)}",
                        "fix the workflow or the comfyui.* settings it names")  # fmt: skip

    def _follow(
        self,
        prompt_id: str,
        messages: Any,
        deadline: float,
        on_step: Callable[[int, int], None] | None,
    ) -> None:
        # Every turn beats (through `phase`), so the supervisor never takes a prompt that waits
        # behind other clients' work for a hung worker; the hang check here is on silence.
        last, phase = time.monotonic(), "queued in ComfyUI"
        for message in messages:
            now = time.monotonic()
            if now > deadline:
                raise ComfyUIError(f"ComfyUI took over {self.timeout:.0f} s (comfyui.timeout)")
            if message is not None:
                last = now  # any message (also of another client's prompt) shows it is working
            elif now - last > self.hang_timeout:
                where = self._where(prompt_id)
                if where == "running":
                    self._stop(prompt_id)
                    raise ComfyUIHang(
                        f"ComfyUI sent no progress for {self.hang_timeout:g} s; interrupted"
                    )
                if where == "done":
                    return
                if where == "lost":  # deleted or cleared by someone else: submit it again
                    raise Lost(f"ComfyUI dropped prompt {prompt_id} from its queue")
                # Queued behind other clients' prompts, whose messages go to them alone
                # (server.py `send_sync(..., client_id)`): their silence is not our hang.
                last = now
            elif self.client.history(prompt_id) is not None:
                return  # finished while the socket said nothing (the /history fallback)
            data = message["data"] if message is not None else {}
            ours = message is not None and data.get("prompt_id") == prompt_id
            kind = message.get("type") if ours and message is not None else None
            if kind in ("execution_start", "executing", "progress"):
                phase = "rendering"
            self.phase(phase)
            if kind == "progress":
                if on_step is not None:
                    steps = max(_int(data.get("max")), 1)
                    on_step(min(max(_int(data.get("value")), 0), steps), steps)
            elif (kind == "executing" and data.get("node") is None) or kind == "execution_success":
                return
            elif kind in ("execution_error", "execution_interrupted"):
                raise failure(kind, data)
        raise Unreachable(f"ComfyUI at {self.client.url} went away during the prompt")

    def _history(self, prompt_id: str, deadline: float) -> dict[str, Any]:
        while (entry := self.client.history(prompt_id)) is None:
            if time.monotonic() > deadline:
                raise ComfyUIError(f"ComfyUI finished {prompt_id} but keeps no history of it")
            time.sleep(POLL_SECONDS / 5)
        return entry

    def _download(self, entry: dict[str, Any], save_node: str, deadline: float) -> bytes:
        status = entry.get("status")
        if isinstance(status, dict) and status.get("status_str") == "error":
            # Failed while our socket was down: main.py's `task_done` kept the messages.
            messages = status.get("messages")
            for item in messages if isinstance(messages, list) else []:
                shaped = isinstance(item, list) and len(item) == 2 and isinstance(item[1], dict)
                if shaped and item[0] in ("execution_error", "execution_interrupted"):
                    raise failure(item[0], item[1])
            raise ComfyUIError("ComfyUI's history says the prompt failed")
        outputs = entry.get("outputs")
        node = outputs.get(save_node) if isinstance(outputs, dict) else None
        images = node.get("images") if isinstance(node, dict) else None
        if not isinstance(images, list) or not images or not isinstance(images[0], dict):
            raise ComfyUIError(f"ComfyUI's history has no image from node {save_node}")
        image = images[0]
        filename, subfolder = image.get("filename"), image.get("subfolder", "")
        kind = image.get("type", "output")
        named = isinstance(filename, str) and isinstance(subfolder, str)
        if (
            not named
            or kind not in ("output", "temp")
            or _unsafe(filename)
            or _unsafe(subfolder, True)
        ):
            raise ComfyUIError(
                f"ComfyUI's history names an odd output file: {one_line(filename)!r}"
            )
        return self.client.view(filename, subfolder, kind, deadline)  # its PNG header checked

    def _queue(self, prompt_id: str) -> str | None:
        """Where `/queue` lists our prompt ("running" or "pending"), else None."""
        queue = self.client.get_json("/queue")
        for key, where in (("queue_running", "running"), ("queue_pending", "pending")):
            items = queue.get(key, []) if isinstance(queue, dict) else []
            if any(isinstance(item, list) and prompt_id in item[:3] for item in items):
                return where
        return None

    def _queued(self, prompt_id: str) -> bool:
        return self._queue(prompt_id) is not None

    def _where(self, prompt_id: str) -> str:
        """running / pending / done / lost. The queue first: a prompt leaves it and enters the
        history under one lock (execution.py `PromptQueue.task_done`), so none slips by."""
        where = self._queue(prompt_id)
        if where is not None:
            return where
        return "done" if self.client.history(prompt_id) is not None else "lost"

    def _stop(self, prompt_id: str) -> None:
        """Interrupt our prompt if it is the one running, and take it out of the queue."""
        try:
            if self._queue(prompt_id) == "running":
                self.client.interrupt(prompt_id)
            else:
                self.client.post_json("/queue", {"delete": [prompt_id]})
        except ComfyUIError:
            pass  # gone already: nothing of ours runs there


def failure(kind: str, data: dict[str, Any]) -> ComfyUIError:
    """An `execution_error` / `execution_interrupted` message (execution.py) as one line."""
    if kind == "execution_interrupted":
        return ComfyUIError("ComfyUI interrupted the prompt")
    node = one_line(data.get("node_type", "?"))
    text = one_line(data.get("exception_message", "?"), 300)
    return ComfyUIError(f"ComfyUI failed in {node}: {text}")


def refusal(answer: Any, status: int) -> str:
    """ComfyUI's validation answer (execution.py's `validate_prompt`) as one line."""
    if not isinstance(answer, dict):
        return f"HTTP {status}"
    error = answer.get("error")
    parts = []
    if isinstance(error, dict):
        parts.append(str(error.get("message", "")))
        if error.get("details"):
            parts.append(str(error["details"]))
    elif error:
        parts.append(str(error))
    node_errors = answer.get("node_errors")
    if isinstance(node_errors, dict):
        for node_id, node in list(node_errors.items())[:3]:
            errors = node.get("errors", []) if isinstance(node, dict) else []
            for item in errors[:2] if isinstance(errors, list) else []:
                if isinstance(item, dict):
                    kind = node.get("class_type", "?")
                    parts.append(f"node {node_id} ({kind}): {item.get('message')}: "
                                 f"{item.get('details', '')}")  # fmt: skip
    line = "; ".join(part for part in parts if part) or f"HTTP {status}"
    return " ".join(line.split())[:600]


def _unsafe(name: str, allow_empty: bool = False) -> bool:
    if not name:
        return not allow_empty
    return name.startswith(("/", "\\")) or ".." in name or "\x00" in name or len(name) > 255


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0
