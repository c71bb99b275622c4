"""The MCP door, driven by the official SDK's client (`mcp` 2.x): over stdio (`anime-gen mcp`
against the session's studio server) and over streamable HTTP at `/mcp` on a studio server of
its own (whose worker hangs on purpose, so a draw is surely in flight when it is cancelled).

The unit tests at the top need no server: how a call's outcome becomes a result, and progress.
"""

from __future__ import annotations

import base64
import http.client
import io
import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Any

import anyio
import pytest
from conftest import running_studio, studio_env, studio_home

from tools.errors import UserError
from tools.generation.toolbox import BatchArgs, FindPoseArgs, GenerateArgs
from tools.mcp.calls import Call, Toolset
from tools.mcp.drawing import _progress_of
from tools.mcp.server import run_tool
from tools.server.client import StudioClient

NAMES = {
    "draw",
    "find_pose",
    "list_characters",
    "create_character",
    "search_images",
    "job_status",
    "cancel_job",
    "chat",
}
# A hang guard only: far beyond any machine's time, never a speed assertion.
HANG_GUARD = 300


# --- unit: outcomes and progress ------------------------------------------------------------------
def _unreachable() -> StudioClient:
    raise UserError("no studio server is running", "anime-gen serve")


def test_bad_arguments_and_unknown_tools_are_error_results():
    toolset = Toolset(_unreachable)
    for name, arguments, expected in [
        ("draw", {}, "give either character or characters"),
        ("draw", {"character": "sakura", "count": 0}, "draw: count:"),
        ("draw", {"character": "sakura", "characters": "all"}, "give either"),
        ("create_character", {"image": "/tmp/x.png"}, "needs a name"),
        ("job_status", {"job": "../../etc"}, "job_status: job:"),
        ("paint", {}, "no tool 'paint'"),
        ("list_characters", {}, "no studio server is running"),
    ]:
        reply = run_tool(toolset, name, arguments, Call())
        assert reply.error, (name, arguments)
        first, _, hint = reply.text.partition("\n")
        assert first.startswith("error: ") and expected in first, reply.text
        assert hint.startswith("hint: ") and "Traceback" not in reply.text


def test_a_bug_is_one_line_not_a_traceback():
    def broken() -> StudioClient:
        raise ZeroDivisionError("boom")

    reply = run_tool(Toolset(broken), "list_characters", {}, Call())
    assert reply.error and reply.text.startswith("error: the MCP server failed: ZeroDivisionError")


def test_progress_only_goes_forward():
    sent: list[float] = []
    call = Call(send=lambda progress, total, message: sent.append(progress))
    for value in (0, 0.5, 0.5, 0.25, 1, 3):
        call.report(value, 3)
    assert sent == [0, 0.5, 1, 3]
    # A step of the last image never reads as the whole image saved.
    value, message = _progress_of({"done": 2, "step": 4, "steps": 4}, 0, 3)
    assert 2 < value < 3 and "image 3 step 4/4" in message
    # The last step of an image whose record is in (`done` counts it) is that image, whole.
    value, message = _progress_of({"done": 1, "image": 0, "step": 4, "steps": 4}, 1, 3)
    assert value == 2 and "2/3 images, image 2 step 4/4" in message
    value, message = _progress_of({"done": 1, "image": 1, "step": 2, "steps": 4}, 1, 3)
    assert 2 < value < 3 and "image 3 step 2/4" in message


def test_previews_are_downscaled_pngs_or_nothing(tmp_path):
    from PIL import Image

    from tools.mcp.previews import PREVIEW_SIDE, preview_png

    big = tmp_path / "big.png"
    Image.new("RGB", (1024, 1536), (10, 20, 30)).save(big)
    picture = Image.open(io.BytesIO(preview_png(big)))
    assert picture.format == "PNG" and max(picture.size) == PREVIEW_SIDE
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(big.read_bytes()[:200])
    assert preview_png(truncated) is None and preview_png(tmp_path / "gone.png") is None


# --- over stdio, against the session's studio server --------------------------------------------
@asynccontextmanager
async def stdio_session(home: Path) -> AsyncIterator[Any]:
    from mcp import ClientSession
    from mcp.client.stdio import StdioServerParameters, stdio_client

    env = {**studio_env(home), "ANIME_OUTPUT_RESOLUTION": "64x64"}
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "assistant.gen_cli", "mcp"], env=env
    )
    async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        yield session


def _schema_of(model: Any) -> dict[str, Any]:
    return model.model_json_schema()["properties"]


def test_stdio_tools_resources_and_errors(studio):
    async def main() -> None:
        async with stdio_session(studio.home) as session:
            tools = {tool.name: tool for tool in (await session.list_tools()).tools}
            assert set(tools) == NAMES
            draw = tools["draw"].input_schema["properties"]
            generate = _schema_of(GenerateArgs)
            for field in ("pose", "prompt", "count", "seed"):
                assert draw[field] == generate[field], field  # one source: the toolbox
            assert draw["count"]["minimum"] == 1 and draw["count"]["maximum"] == 100
            batch = _schema_of(BatchArgs)["characters"]["anyOf"]
            assert all(option in draw["characters"]["anyOf"] for option in batch)
            assert tools["find_pose"].input_schema["properties"] == _schema_of(FindPoseArgs)
            assert tools["list_characters"].annotations.read_only_hint is True

            unknown = await session.call_tool("draw", {"character": "nobody", "count": 1})
            assert unknown.is_error
            error, hint = unknown.content[0].text.split("\n")
            assert error == "error: unknown character 'nobody'" and "sakura" in hint
            bad_seed = await session.call_tool("draw", {"character": "sakura", "seed": -1})
            assert bad_seed.is_error and "seed must be between" in bad_seed.content[0].text

            listed = await session.call_tool("list_characters", {})
            assert not listed.is_error and "sakura: pink hair" in listed.content[0].text
            poses = await session.call_tool("find_pose", {"query": "sitting reading", "k": 2})
            assert len(poses.structured_content["poses"]) == 2

            uris = {str(r.uri) for r in (await session.list_resources()).resources}
            assert {"anime://characters", "anime://characters/sakura"} <= uris
            assert "anime://images/recent" in uris
            templates = (await session.list_resource_templates()).resource_templates
            assert [t.uri_template for t in templates] == ["anime://characters/{name}"]
            sakura = (await session.read_resource("anime://characters/sakura")).contents
            assert json.loads(sakura[0].text)["description"] == "pink hair"
            assert sakura[1].mime_type == "image/png"
            assert base64.b64decode(sakura[1].blob).startswith(b"\x89PNG")
            everyone = (await session.read_resource("anime://characters")).contents
            assert "sakura" in [c["name"] for c in json.loads(everyone[0].text)]

    anyio.run(main)


def test_stdio_draw_returns_png_content_paths_and_progress(studio):
    from PIL import Image

    from tools.store.png_info import read_png_info

    async def main() -> None:
        async with stdio_session(studio.home) as session:
            one = await session.call_tool("draw", {"character": "sakura", "count": 1, "seed": 3})
            assert not one.is_error, one.content[0].text
            images = [c for c in one.content if c.type == "image"]
            assert len(images) == 1 and images[0].mime_type == "image/png"
            picture = Image.open(io.BytesIO(base64.b64decode(images[0].data)))
            assert picture.format == "PNG" and picture.size == (64, 64)
            (output,) = one.structured_content["outputs"]
            path = Path(output["path"])
            assert path.is_absolute() and path.exists() and str(path) in one.content[0].text
            assert read_png_info(path)["seed"] == 3

            seen: list[tuple[float, float | None, str | None]] = []

            async def progress(value: float, total: float | None, message: str | None) -> None:
                seen.append((value, total, message))

            three = await session.call_tool(
                "draw", {"character": "sakura", "count": 3}, progress_callback=progress
            )
            assert not three.is_error, three.content[0].text
            assert len(three.structured_content["outputs"]) == 3
            values = [value for value, _, _ in seen]
            assert values == sorted(set(values)) and values[-1] == 3
            assert all(total == 3 for _, total, _ in seen)
            assert any("step" in (message or "") for _, _, message in seen)

            seen.clear()
            two = await session.call_tool(
                "draw", {"characters": ["sakura", "sakura"], "seed": 5}, progress_callback=progress
            )
            assert not two.is_error and len(two.structured_content["jobs"]) == 2
            assert [o["seed"] for o in two.structured_content["outputs"]] == [5, 5]
            values = [value for value, _, _ in seen]
            assert values == sorted(set(values)) and values[-1] == 2 and 1 in values
            everyone = await session.call_tool("draw", {"characters": "all", "pose": "standing"})
            assert {o["character"] for o in everyone.structured_content["outputs"]} >= {"sakura"}

            found = await session.call_tool("search_images", {"q": "sakura", "limit": 2})
            assert len(found.structured_content["images"]) == 2
            status = await session.call_tool(
                "job_status", {"job": one.structured_content["jobs"][0]}
            )
            assert "done, 1/1 images" in status.content[0].text
            recent = (await session.read_resource("anime://images/recent")).contents
            assert str(path) in {image["path"] for image in json.loads(recent[0].text)}

    anyio.run(main)


def test_stdio_create_character_and_chat(studio, reference_image):
    from tools.server.client import connect

    async def main() -> None:
        async with stdio_session(studio.home) as session:
            for arguments, expected in [
                ({"name": "x", "image": "pic.png"}, "is not an absolute path"),
                ({"name": "evil", "image": "/etc/passwd"}, "error: "),
                ({"name": "../up", "image": str(reference_image)}, "error: "),
            ]:
                refused = await session.call_tool("create_character", arguments)
                assert refused.is_error and expected in refused.content[0].text, arguments
            added = await session.call_tool(
                "create_character", {"name": "mcpmomo", "image": str(reference_image)}
            )
            assert not added.is_error, added.content[0].text
            assert added.structured_content["character"]["name"] == "mcpmomo"
            assert [c.mime_type for c in added.content[1:]] == ["image/png"]
            notes: list[str | None] = []

            async def progress(value: float, total: float | None, message: str | None) -> None:
                notes.append(message)

            sheet = await session.call_tool(
                "create_character",
                {"name": "mcpsheet", "description": "girl with green hair"},
                progress_callback=progress,
            )
            assert not sheet.is_error, sheet.content[0].text
            assert "created character mcpsheet" in sheet.content[0].text and notes

            first = await session.call_tool("chat", {"text": "who do I have"})
            assert not first.is_error and "sakura" in first.content[0].text
            again = await session.call_tool("chat", {"text": "who do I have"})
            assert again.structured_content["session"] == first.structured_content["session"]

    try:
        anyio.run(main)
    finally:
        client = connect(studio.home)
        for name in ("mcpmomo", "mcpsheet"):
            with suppress(UserError):
                client.call("DELETE", f"/api/characters/{name}")


def test_anime_gen_mcp_imports_nothing_heavy(tmp_path):
    """The stdio process stays a thin client: it answers and exits without torch and friends."""
    probe = (
        "import sys\nsys.argv = ['anime-gen', 'mcp']\nfrom assistant.gen_cli import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "heavy = ('torch', 'diffusers', 'transformers', 'chromadb', 'sentence_transformers')\n"
        "print([name for name in heavy if name in sys.modules], file=sys.stderr)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe],
        input="",
        capture_output=True,
        text=True,
        timeout=120,
        env=studio_env(tmp_path),
    )
    assert result.stderr.strip().splitlines()[-1] == "[]", result.stderr
    assert result.stdout == ""  # nothing but protocol messages on the wire


# --- over streamable HTTP, on a studio server whose worker hangs on image 0 -------------------
@pytest.fixture(scope="module")
def hanging_studio(tmp_path_factory: pytest.TempPathFactory, tiny_models: Path) -> Iterator[Path]:
    from PIL import Image

    from tools.characters.library import CharacterLibrary
    from tools.settings import load_settings

    home = studio_home(tmp_path_factory.mktemp("mcp-http") / "home", tiny_models)
    library = CharacterLibrary(load_settings(home=home, env={}).paths)
    library.add("yuki", Image.new("RGB", (96, 128), (200, 210, 240)), description="blue coat")
    env = {**studio_env(home), "ANIME_WORKER_FAULTS": "hang@0:always"}
    with running_studio(home, env):
        yield home


def _post_mcp(client: StudioClient, headers: dict[str, str]) -> int:
    connection = http.client.HTTPConnection(
        client.discovery.host, client.discovery.port, timeout=30
    )
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
    try:
        connection.request(
            "POST", "/mcp", json.dumps(body), {"Content-Type": "application/json", **headers}
        )
        return connection.getresponse().status
    finally:
        connection.close()


@asynccontextmanager
async def http_session(client: StudioClient) -> AsyncIterator[Any]:
    import httpx2
    from mcp import ClientSession
    from mcp.client.streamable_http import streamable_http_client

    headers = {"Authorization": f"Bearer {client.token}"}
    timeout = httpx2.Timeout(30, read=HANG_GUARD)
    async with (
        httpx2.AsyncClient(headers=headers, timeout=timeout) as http,
        streamable_http_client(f"{client.discovery.url}/mcp", http_client=http) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        yield session


def test_http_needs_the_token_and_serves_the_same_tools(hanging_studio):
    from tools.server.client import running_client

    client = running_client(hanging_studio)
    assert _post_mcp(client, {}) == 401
    assert _post_mcp(client, {"Authorization": "Bearer wrong"}) == 401
    assert _post_mcp(client, {"Authorization": f"Bearer {client.token}", "Host": "evil.com"}) == 403

    async def main() -> None:
        async with http_session(client) as session:
            assert {tool.name for tool in (await session.list_tools()).tools} == NAMES
            listed = await session.call_tool("list_characters", {})
            assert "yuki: blue coat" in listed.content[0].text
            unknown = await session.call_tool("draw", {"character": "nobody"})
            assert unknown.is_error and "yuki" in unknown.content[0].text

    anyio.run(main)


def test_http_cancellation_cancels_the_job(hanging_studio):
    """The worker hangs on image 0, so the draw is in flight for as long as the test wants."""
    from tools.server.client import running_client

    client = running_client(hanging_studio)
    before = {job["id"] for job in client.call("GET", "/api/jobs")}

    async def main() -> None:
        async with http_session(client) as session:
            queued = anyio.Event()

            async def progress(value: float, total: float | None, message: str | None) -> None:
                queued.set()

            async def draw() -> None:
                await session.call_tool("draw", {"character": "yuki"}, progress_callback=progress)

            async with anyio.create_task_group() as group:
                group.start_soon(draw)
                with anyio.fail_after(HANG_GUARD):
                    await queued.wait()
                group.cancel_scope.cancel()  # the SDK sends notifications/cancelled

    anyio.run(main)
    (job,) = [job for job in client.call("GET", "/api/jobs") if job["id"] not in before]
    deadline = time.monotonic() + HANG_GUARD
    while client.call("GET", f"/api/jobs/{job['id']}")["state"] != "cancelled":
        assert time.monotonic() < deadline, "the job was not cancelled"
        time.sleep(0.1)


def test_http_a_refused_name_leaves_no_job_behind(hanging_studio):
    """`characters: [yuki, nobody]`: yuki's job is queued before nobody is refused; the call
    fails as a whole, so yuki's job must not go on rendering (here it would hang forever)."""
    from tools.server.client import running_client

    client = running_client(hanging_studio)
    before = {job["id"] for job in client.call("GET", "/api/jobs")}

    async def main() -> list[Any]:
        async with http_session(client) as session:
            refused = await session.call_tool("draw", {"characters": ["yuki", "nobody"]})
            assert refused.is_error and "unknown character 'nobody'" in refused.content[0].text
            new = [job for job in client.call("GET", "/api/jobs") if job["id"] not in before]
            replies = [await session.call_tool("job_status", {"job": job["id"]}) for job in new]
            replies += [await session.call_tool("cancel_job", {"job": job["id"]}) for job in new]
            replies.append(await session.call_tool("job_status", {"job": "nosuchjob"}))
            return [new, replies]

    new, replies = anyio.run(main)
    assert all(job["state"] == "cancelled" for job in new), new
    *known, missing = replies
    for reply in known:
        assert not reply.is_error and "cancelled" in reply.content[0].text
    assert missing.is_error and "no job nosuchjob" in missing.content[0].text


def test_mcp_start_bench_runs(tmp_path):
    """`python -m evals.mcp_start` (timings are reported, never asserted)."""
    result = subprocess.run(
        [sys.executable, "-m", "evals.mcp_start", "--runs", "1", "--home", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=HANG_GUARD,
        env=studio_env(tmp_path),
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1].startswith("mcp_initialize_median_s=")


def _mcp_request(
    client: StudioClient, method: str, body: Any, session: str | None = None
) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
    connection = http.client.HTTPConnection(
        client.discovery.host, client.discovery.port, timeout=60
    )
    headers = {
        "Authorization": f"Bearer {client.token}",
        "Accept": "application/json, text/event-stream",
        "Content-Type": "application/json",
        **({"Mcp-Session-Id": session} if session else {}),
    }
    connection.request(method, "/mcp", None if body is None else json.dumps(body), headers)
    return connection, connection.getresponse()


IDLE_SOON = {"ANIME_WORKER_KEEP_ALIVE": "1s", "ANIME_SERVER_KEEP_ALIVE": "10s"}


@pytest.mark.parametrize("stop", ["sigterm", "idle"])
def test_an_open_mcp_stream_does_not_keep_the_server_from_stopping(tmp_path, tiny_models, stop):
    """An MCP client keeps a GET event stream open for as long as it likes; SIGTERM or the
    idle exit must still stop the server, not wait for that client forever."""
    import os
    import signal

    from tools.server.client import running_client

    home = studio_home(tmp_path / "home", tiny_models)
    process = subprocess.Popen(
        [sys.executable, "-m", "assistant.studio", "--background"],
        # Idle: the requests below come back to back, far inside 10 s; then only the stream is open.
        env={**studio_env(home), **({} if stop == "sigterm" else IDLE_SOON)},
        stdin=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + HANG_GUARD
        while (client := running_client(home)) is None:
            assert process.poll() is None and time.monotonic() < deadline, "no server"
            time.sleep(0.1)
        initialize = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {},
            "clientInfo": {"name": "test", "version": "1"}}}  # fmt: skip
        connection, answer = _mcp_request(client, "POST", initialize)
        session = answer.getheader("mcp-session-id")
        answer.read()
        connection.close()
        initialized = {"jsonrpc": "2.0", "method": "notifications/initialized"}
        connection, answer = _mcp_request(client, "POST", initialized, session)
        answer.read()
        connection.close()
        stream, answer = _mcp_request(client, "GET", None, session)
        assert answer.status == 200  # the stream is open, its body never ends
        if stop == "sigterm":
            os.kill(process.pid, signal.SIGTERM)
        assert process.wait(60) == 0
        stream.close()
    finally:
        if process.poll() is None:
            process.kill()
