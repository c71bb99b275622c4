"""What unauthenticated or hostile requests get from the studio's app: a 4xx, never a 500, and
never active content on the studio's origin."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from tests.test_gallery import TOKEN, client, home, listed  # noqa: F401  (fixtures)
from tools.server.app import create_app
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
    ],
    ids=["bearer", "cookie-escaped", "cookie-raw"],
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
