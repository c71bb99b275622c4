"""What unauthenticated or hostile requests get from the studio's app: a 4xx, never a 500, and
never active content on the studio's origin."""

from __future__ import annotations

import json

import pytest
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient

from tests.test_gallery import TOKEN, client, home, listed  # noqa: F401  (fixtures)
from tools.server.app import create_app
from tools.server.body_limit import MAX_BODY_BYTES, BodyLimit
from tools.server.studio import Studio

ORIGIN = "http://127.0.0.1:7788"  # the gallery tests' base_url


@pytest.fixture
def anonymous(home):  # noqa: F811
    app = create_app(Studio(home, TOKEN, "127.0.0.1"))
    return TestClient(app, base_url=ORIGIN, raise_server_exceptions=False)


@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": "Bearer t\u00f6ken"},
        {"Cookie": "anime_session_7788=t%C3%B6ken"},
        {"Cookie": "anime_session_7788=\u00e9"},
        {"Authorization": "Basic \u00e9\u00e9\u00e9\u00e9"},
        {"Authorization": "Basic YTpi\u00ff"},
    ],
    ids=["bearer", "cookie-escaped", "cookie-raw", "basic", "basic-tail"],
)
def test_a_non_ascii_token_is_401(anonymous, headers):
    encoded = {k: v.encode("utf-8") for k, v in headers.items()}
    assert anonymous.get("/api/images", headers=encoded).status_code == 401


@pytest.mark.parametrize("host", ["[::1", "127.0.0.1:notaport", "[", ""])
def test_a_malformed_host_is_refused(anonymous, host):
    assert anonymous.get("/api/images", headers={"Host": host}).status_code in (400, 403)


@pytest.mark.parametrize(
    "origin", ["http://[", "http://127.0.0.1:6666", "https://127.0.0.1:7788", "null"]
)
def test_an_origin_other_than_this_server_is_403(client, origin):  # noqa: F811
    assert client.get("/api/images", headers={"Origin": origin}).status_code == 403


def test_this_servers_own_origin_is_accepted(client):  # noqa: F811
    assert client.get("/api/images", headers={"Origin": ORIGIN}).status_code == 200


def test_active_content_in_the_output_is_not_served_and_every_answer_is_nosniff(
    client,  # noqa: F811
    home,  # noqa: F811
):
    output = home / "anime-output"
    (output / "page.html").write_text("<script>alert(1)</script>")
    (output / "drawing.svg").write_text('<svg xmlns="http://www.w3.org/2000/svg"></svg>')
    for name in ("page.html", "drawing.svg"):
        answer = client.get("/api/file", params={"path": str(output / name)})
        assert answer.status_code in (404, 415), answer.headers
        assert answer.headers["x-content-type-options"] == "nosniff"
    image = listed(client)[0]["path"]
    answer = client.get("/api/file", params={"path": image})
    assert answer.status_code == 200 and answer.headers["content-type"] == "image/png"
    for response in (answer, client.get("/gallery"), client.get("/api/nowhere")):
        assert response.headers["x-content-type-options"] == "nosniff"
        assert "default-src 'self'" in response.headers["content-security-policy"]


@pytest.mark.parametrize(
    "header", ['{"flags":"x"}', '{"env": ["a"]}', '{"flags": {"worker": 3}}', '{"env": {"A": 1}}']
)
def test_a_malformed_overrides_header_is_422(client, header):  # noqa: F811
    body = {"character": "sakura", "pose": "standing"}
    answer = client.post("/api/generate/plan", json=body, headers={"X-Anime-Overrides": header})
    assert answer.status_code == 422, answer.text
    assert "X-Anime-Overrides" in json.loads(answer.text)["error"]


async def _call_with_a_body_that_never_arrives(app, method: str, headers: dict[str, str]):
    """Drive the ASGI app with headers only: a route that read the body would wait forever
    (the hang guard below), so an answer proves the body was never read."""
    import asyncio

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": "/api/plan",
        "raw_path": b"/api/plan",
        "query_string": b"",
        "root_path": "",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "client": ("127.0.0.1", 5555),
        "server": ("127.0.0.1", 7788),
    }
    never = asyncio.Event()
    sent: list[dict] = []

    async def receive():
        await never.wait()

    async def send(message):
        sent.append(message)

    await asyncio.wait_for(app(scope, receive, send), 60)  # a hang guard only
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], json.loads(body)


def test_a_server_error_still_carries_the_security_headers(home):  # noqa: F811
    from fastapi import APIRouter

    broken = APIRouter()

    @broken.get("/api/broken")
    def fail() -> None:
        raise RuntimeError("a bug")

    app = create_app(Studio(home, TOKEN, "127.0.0.1"), [broken])
    browser = TestClient(app, base_url=ORIGIN, raise_server_exceptions=False)
    answer = browser.get("/api/broken", headers={"Authorization": f"Bearer {TOKEN}"})
    assert answer.status_code == 500
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert "default-src 'self'" in answer.headers["content-security-policy"]


def test_a_content_length_of_thousands_of_digits_is_413(home):  # noqa: F811
    import asyncio

    app = create_app(Studio(home, TOKEN, "127.0.0.1"))
    headers = {"Host": "127.0.0.1:7788", "Authorization": f"Bearer {TOKEN}"}
    huge = {**headers, "Content-Length": "9" * 5000}  # int() refuses over 4300 digits
    assert asyncio.run(_call_with_a_body_that_never_arrives(app, "POST", huge))[0] == 413


def test_an_anonymous_50_mb_post_is_401_before_its_body_is_read(home):  # noqa: F811
    import asyncio

    app = create_app(Studio(home, TOKEN, "127.0.0.1"))
    headers = {"Host": "127.0.0.1:7788", "Content-Length": str(50 * 1024 * 1024)}
    headers["Content-Type"] = "application/json"
    status, body = asyncio.run(_call_with_a_body_that_never_arrives(app, "POST", headers))
    assert status == 401 and "token" in body["detail"]


def test_a_body_over_the_cap_is_413_declared_or_chunked(home):  # noqa: F811
    import asyncio

    app = create_app(Studio(home, TOKEN, "127.0.0.1"))
    headers = {"Host": "127.0.0.1:7788", "Authorization": f"Bearer {TOKEN}"}
    declared = {**headers, "Content-Length": str(MAX_BODY_BYTES + 1)}
    status, body = asyncio.run(_call_with_a_body_that_never_arrives(app, "POST", declared))
    assert status == 413 and "MiB" in body["detail"]
    bad = {**headers, "Content-Length": "-1"}
    assert asyncio.run(_call_with_a_body_that_never_arrives(app, "POST", bad))[0] == 400

    echo = FastAPI()

    @echo.post("/echo")
    async def read_all(request: Request) -> dict:
        return {"bytes": len(await request.body())}

    capped = TestClient(BodyLimit(echo, limit=1024))

    def chunks(total: int):
        for _ in range(total // 256):
            yield b"x" * 256

    assert capped.post("/echo", content=chunks(1024)).json() == {"bytes": 1024}
    over = capped.post("/echo", content=chunks(4096))
    assert over.status_code == 413 and "MiB" in over.json()["detail"]


@pytest.mark.parametrize("records", [[{}], [{"path": 3}], ["x"]], ids=["empty", "typed", "str"])
def test_a_malformed_variation_record_is_422(client, records):  # noqa: F811
    answer = client.post("/api/variations/link", json={"records": records})
    assert answer.status_code == 422 and "record" in json.dumps(answer.json())


def test_variations_link_only_the_outputs_own_images(client, home, tmp_path):  # noqa: F811
    secret = tmp_path / "secret.png"
    secret.write_bytes(b"not yours")
    inside_link = home / "anime-output" / "planted.png"
    inside_link.symlink_to(secret)
    pose = {"id": "p1", "tags": ["standing"]}
    for path in (secret, inside_link, home / ".anime-chat" / "server.token"):
        record = {"path": str(path), "character": "sakura", "pose": pose, "seed": 1}
        answer = client.post("/api/variations/link", json={"records": [record]})
        assert answer.status_code == 422 and "output folder" in answer.json()["detail"], path
    assert not list(home.rglob("variations"))


def test_a_background_check_is_no_activity_but_any_other_request_is(home):  # noqa: F811
    studio = Studio(home, TOKEN, "127.0.0.1")
    browser = TestClient(create_app(studio), base_url=ORIGIN)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    studio.last_activity = 0.0
    quiet = browser.get("/api/jobs", headers={**auth, "X-Anime-Background": "1"})
    assert quiet.status_code == 200 and studio.last_activity == 0.0
    assert quiet.headers["X-Content-Type-Options"] == "nosniff"
    assert browser.get("/api/jobs", headers={"X-Anime-Background": "1"}).status_code == 401
    assert browser.get("/api/jobs", headers=auth).status_code == 200
    assert studio.last_activity > 0.0


def test_a_path_under_an_unknown_users_home_is_422(client):  # noqa: F811
    """`~name/...` of a user this machine does not have: expanduser raises RuntimeError."""
    lora = "~no-such-user-anime-chat/file.safetensors"
    body = {"name": "newgirl", "image": "/nowhere/ref.png", "lora": [lora]}
    answer = client.post("/api/characters", json=body)
    assert answer.status_code == 422 and "LoRA" in answer.json()["error"], answer.text


def test_server_allowed_hosts_admits_only_the_named_hosts_and_still_needs_the_token(home):  # noqa: F811
    studio = Studio(home, TOKEN, "127.0.0.1", allowed_hosts=frozenset({"host.docker.internal"}))
    app = TestClient(create_app(studio), base_url=ORIGIN, raise_server_exceptions=False)
    token = {"Authorization": f"Bearer {TOKEN}"}
    docker = {"Host": "HOST.docker.internal:7788"}
    assert app.get("/api/images", headers={**docker, **token}).status_code == 200
    assert app.get("/api/images", headers=docker).status_code == 401
    for other in ("evil.example:7788", "docker.internal:7788", "host.docker.internal.evil:7788"):
        assert app.get("/api/images", headers={"Host": other, **token}).status_code == 403
    plain = TestClient(create_app(Studio(home, TOKEN, "127.0.0.1")), base_url=ORIGIN)
    assert plain.get("/api/images", headers={**docker, **token}).status_code == 403


def test_server_allowed_hosts_reads_a_list_or_the_environment_and_refuses_patterns(tmp_path):
    from tools.errors import UserError
    from tools.settings import load_settings

    env = {"ANIME_SERVER_ALLOWED_HOSTS": "host.docker.internal, Studio.LAN"}
    settings = load_settings(env=env, home=tmp_path)
    assert settings.server.allowed_hosts == ["host.docker.internal", "studio.lan"]
    assert load_settings(env={}, home=tmp_path).server.allowed_hosts == []
    for bad in ("*.lan", "http://studio.lan", "studio.lan:7788", "a/b"):
        with pytest.raises(UserError, match="allowed_hosts"):
            load_settings(env={"ANIME_SERVER_ALLOWED_HOSTS": bad}, home=tmp_path)
