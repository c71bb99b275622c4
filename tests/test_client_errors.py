"""The CLI's client against a server that fails: a 500 with a plain-text body, an answer that is
not JSON, a server that stops after queuing a job but before answering, and an event stream that
breaks off mid-job. Each is one line naming the server's log, or the job and how to follow it;
never a traceback.

The server here is a fake on 127.0.0.1 (a `http.server` thread) that this home's discovery
files point at, the one boundary the client has.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tools.errors import UserError
from tools.server import files
from tools.server.client import StudioClient, running_client, server_log
from tools.server.follow import follow_job, queue_job

Handler = Callable[[BaseHTTPRequestHandler], None]


@pytest.fixture
def fake_server(anime_home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Handler]]:
    """Routes ("METHOD /path" -> handler) of a fake studio server for `anime_home`: it holds the
    home's server lock and wrote the discovery and token files, as a real one does."""
    routes: dict[str, Handler] = {}

    class Fake(BaseHTTPRequestHandler):
        def _route(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            self.body = self.rfile.read(length) if length else b""
            routes[f"{self.command} {self.path.split('?')[0]}"](self)

        do_GET = do_POST = _route

        def log_message(self, *_args: object) -> None:
            pass

    state = anime_home / ".anime-chat"
    server = ThreadingHTTPServer(("127.0.0.1", 0), Fake)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    lock = files.try_lock(state)
    files.write_token(state)
    files.write_discovery(state, "127.0.0.1", server.server_address[1])
    monkeypatch.delenv("ANIME_IN_PROCESS")
    try:
        yield routes
    finally:
        files.remove_discovery(state)
        lock.close()
        server.shutdown()
        server.server_close()


def _answer(status: int, body: bytes, content_type: str = "text/plain") -> Handler:
    def handle(request: BaseHTTPRequestHandler) -> None:
        request.send_response(status)
        request.send_header("Content-Type", content_type)
        request.send_header("Content-Length", str(len(body)))
        request.end_headers()
        request.wfile.write(body)

    return handle


def _client(home: Path) -> StudioClient:
    client = running_client(home)
    assert client is not None
    return client


@pytest.mark.parametrize(
    ("status", "body"),
    [(500, b"Internal Server Error"), (502, b'{"detail": "bad gateway"}'), (200, b"<html>")],
)
def test_a_failed_or_non_json_answer_is_one_line_naming_the_server_log(
    fake_server, anime_home, status, body
):
    from assistant.gen_cli import app

    fake_server["POST /api/poses/search"] = _answer(status, body)
    result = CliRunner().invoke(app, ["poses", "search", "sitting reading"])
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    error, hint = result.stderr.splitlines()
    assert error == f"error: the studio server failed on this request (HTTP {status})"
    assert hint == f"hint: its log says why: {server_log(anime_home / '.anime-chat')}"


def test_a_4xx_with_a_json_detail_keeps_its_message_and_hint(fake_server, anime_home):
    detail = json.dumps({"detail": "unknown pose 'x'", "hint": "see `anime-gen poses list`"})
    fake_server["POST /api/poses/search"] = _answer(422, detail.encode(), "application/json")
    with pytest.raises(UserError) as raised:
        _client(anime_home).call("POST", "/api/poses/search", {"text": "x"})
    assert (raised.value.message, raised.value.hint) == (
        "unknown pose 'x'",
        "see `anime-gen poses list`",
    )


def _hang_up(request: BaseHTTPRequestHandler) -> None:
    """The server dies before it answers: the connection closes with nothing sent."""
    request.close_connection = True


def test_a_server_that_stops_after_queuing_a_job_names_the_job(fake_server, anime_home):
    from tools.jobs.journal import JobJournal

    queued: list[str] = []

    def queue_then_die(request: BaseHTTPRequestHandler) -> None:
        journal = JobJournal.for_state(anime_home / ".anime-chat")
        spec = {"key": "k1", "character": "sakura", "pose": {"id": "standing"}, "seed": 1}
        queued.append(journal.submit([spec]))
        _hang_up(request)

    fake_server["POST /api/jobs"] = queue_then_die
    with pytest.raises(UserError) as raised:
        queue_job(_client(anime_home), {"character": "sakura"}, {})
    (job_id,) = queued
    assert job_id in raised.value.message and "before answering" in raised.value.message
    assert f"anime-gen jobs wait {job_id}" in raised.value.hint


def test_a_server_that_stops_before_queuing_says_nothing_was_queued(fake_server, anime_home):
    fake_server["POST /api/jobs"] = _hang_up
    with pytest.raises(UserError) as raised:
        queue_job(_client(anime_home), {"character": "sakura"}, {})
    assert "no job was queued" in raised.value.message
    assert str(server_log(anime_home / ".anime-chat")) in raised.value.hint


def test_an_event_stream_that_breaks_mid_job_names_the_job_and_how_to_follow_it(
    fake_server, anime_home
):
    progress = b'event: progress\ndata: {"state": "running", "image": 0, "step": 1}\n\n'
    fake_server["GET /api/jobs/abc123/events"] = _answer(200, progress, "text/event-stream")
    seen: list[dict] = []
    with pytest.raises(UserError) as raised:
        follow_job(_client(anime_home), "abc123", on_progress=seen.append, restarts=0)
    assert seen == [{"state": "running", "image": 0, "step": 1}]
    assert "job abc123" in raised.value.message
    assert "anime-gen jobs wait abc123" in raised.value.hint


def test_a_stream_whose_connection_drops_is_a_one_line_error(fake_server, anime_home):
    def partial(request: BaseHTTPRequestHandler) -> None:
        request.send_response(200)
        request.send_header("Content-Type", "text/event-stream")
        request.send_header("Content-Length", "1000")  # promised, never sent: IncompleteRead
        request.end_headers()
        request.wfile.write(b'event: notice\ndata: "planning"\n\n')

    fake_server["POST /api/chat"] = partial
    events = _client(anime_home).stream("POST", "/api/chat", {"text": "draw sakura"})
    assert next(events) == ("notice", "planning")
    with pytest.raises(UserError, match="stopped before answering POST /api/chat"):
        next(events)
