"""ComfyUI answers that break HTTP itself (tools/comfyui/client.py): a chunked or sized answer
cut short, something that is no HTTP server at the URL, a /view that trickles in a byte at a
time, and a ComfyUI that keeps breaking off its /view answers. Each is one ComfyUIError line,
never an http.client traceback or a wait past `comfyui.timeout`."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.test_comfyui import built_in, comfy, runner, uploads  # noqa: F401  (comfy: fixture)
from tools.comfyui.client import ComfyUIClient, ComfyUIError, Unreachable

PNG_HEAD = b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR" + (64).to_bytes(4, "big") * 2 + bytes(5)
ANSWERS = {
    "sized, cut short": b"HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n" + PNG_HEAD + bytes(99),
    "chunked, cut short": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3e8\r\n"
    + PNG_HEAD
    + bytes(99),
    "no HTTP": b"SSH-2.0-OpenSSH_9.6\r\n",
}


@dataclass
class RawServer:
    url: str = ""
    answer: bytes = b""  # sent to each connection, which then closes
    trickle: bool = False  # after the answer, a byte each 50 ms until the test ends


@pytest.fixture
def raw_server() -> Iterator[RawServer]:
    """A socket at 127.0.0.1 answering every connection with the same bytes."""
    listener = socket.create_server(("127.0.0.1", 0))
    server, done = RawServer(f"http://127.0.0.1:{listener.getsockname()[1]}"), threading.Event()

    def serve() -> None:
        while True:
            try:
                connection, _ = listener.accept()
            except OSError:
                return  # closed: the test is over
            with connection:
                connection.recv(65536)
                connection.sendall(server.answer)
                while server.trickle and not done.wait(0.05):
                    connection.sendall(b"\0")

    threading.Thread(target=serve, daemon=True).start()
    yield server
    done.set()
    listener.close()


@pytest.mark.parametrize("case", ["sized, cut short", "chunked, cut short"])
def test_an_answer_cut_short_is_comfyui_gone_not_a_short_png(raw_server, case):
    raw_server.answer = ANSWERS[case]
    client = ComfyUIClient(raw_server.url, timeout=10)
    with pytest.raises(Unreachable):
        client.view("a.png", "", "output")
    with pytest.raises(Unreachable):
        client.get_json("/history/x")


def test_something_that_is_no_http_server_is_one_comfyui_error(raw_server):
    raw_server.answer = ANSWERS["no HTTP"]
    client = ComfyUIClient(raw_server.url, timeout=10)
    assert client.answers()  # something listens: not "waiting for ComfyUI" until the timeout
    for call in (client.system_stats, lambda: client.view("a.png", "", "output")):
        with pytest.raises(ComfyUIError, match="is no HTTP server .BadStatusLine: SSH-2.0"):
            call()


def test_a_view_broken_off_once_is_fetched_again(comfy):  # noqa: F811
    comfy.abort_views = 1
    output = runner(comfy.url).run(built_in(), uploads(), None)
    assert output.png.startswith(b"\x89PNG") and len(comfy.received.prompts) == 1


def test_a_view_that_keeps_breaking_off_ends_at_comfyui_timeout(comfy):  # noqa: F811
    # Each round waits POLL_SECONDS, so a 1 s timeout allows a few rounds, never 20.
    comfy.abort_views = 20
    with pytest.raises(ComfyUIError, match=r"kept breaking off for over 1 s \(comfyui.timeout\)"):
        runner(comfy.url, timeout=1.0).run(built_in(), uploads(), None)
    assert len(comfy.received.prompts) == 1


def test_a_view_that_trickles_in_stops_at_the_deadline(raw_server):
    raw_server.answer = b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\n\r\n" + PNG_HEAD
    raw_server.trickle = True
    client = ComfyUIClient(raw_server.url, timeout=10)
    with pytest.raises(ComfyUIError, match="still trickles in at the deadline"):
        # Each byte comes well within the socket timeout; only the deadline ends it.
        client.view("a.png", "", "output", time.monotonic() + 0.5)
