"""The gallery's API in-process (TestClient): listing, search, marks, trash, reconcile,
thumbnails, rerun jobs, and its security (token, Origin, CSRF, paths). Images are small PNGs
written by the real output store with synthetic records (evals/gallery_bench.py)."""

from __future__ import annotations

import shutil
import sqlite3
import time
from datetime import datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from evals.gallery_bench import synthetic_meta
from tools.gallery.auth import login_code
from tools.server.app import create_app
from tools.server.security import CSRF_HEADER, cookie_name, csrf_token
from tools.server.studio import Studio
from tools.settings import load_settings
from tools.store.gen_index import GenerationIndex
from tools.store.output_store import OutputStore

TOKEN = "gallery-test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
IMAGES = [
    ("sakura", ("sitting_reading", ["sitting", "reading"]), "in a library", True),
    ("yuki", ("standing", ["standing", "waving"]), "at the beach, sunset", True),
    ("sakura", ("standing", ["standing", "waving"]), "at the beach, sunset", True),
    ("yuki", ("lying", ["lying", "sleeping"]), "snowy mountain", False),
    ("sakura", ("running", ["running"]), "cherry blossoms", True),
]


def write_images(home: Path) -> list[Path]:
    """The IMAGES through the real store (rows, files, views), oldest first."""
    settings = load_settings(home=home, env={})
    index = GenerationIndex(settings.paths.state / "generations.sqlite")
    store = OutputStore(settings, index)
    paths = []
    for number, (character, pose, scene, accepted) in enumerate(IMAGES):
        meta = synthetic_meta(number, character, pose, scene, accepted)
        color = (40 * number, 120, 200 - 30 * number)
        paths.append(store.save(Image.new("RGB", (32, 48), color), meta, key=meta["key"]))
    index.close()
    return paths


def logged_in_browser(home: Path) -> tuple[TestClient, str]:
    """A browser that opened the printed link: its session cookie, and its page's CSRF value."""
    studio = Studio(home, TOKEN, "127.0.0.1")
    browser = TestClient(create_app(studio), base_url="http://127.0.0.1")
    assert browser.get("/gallery/login", params={"code": login_code(TOKEN)}).status_code == 200
    return browser, csrf_token(studio.gallery_session)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    write_images(home)
    return home


@pytest.fixture
def client(home: Path) -> TestClient:
    studio = Studio(home, TOKEN, "127.0.0.1")
    return TestClient(create_app(studio), base_url="http://127.0.0.1:7788", headers=AUTH)


def listed(client: TestClient, **params: str) -> list[dict]:
    answer = client.get("/api/images", params=params)
    assert answer.status_code == 200, answer.text
    return answer.json()["images"]


def test_listing_is_newest_first_in_the_contract_shape_without_rejected(client, home):
    images = listed(client)
    assert [(i["character"], i["pose"]["id"]) for i in images] == [
        ("sakura", "running"),
        ("sakura", "standing"),
        ("yuki", "standing"),
        ("sakura", "sitting_reading"),
    ]
    first = images[0]
    assert set(first) >= {"id", "path", "character", "pose", "seed", "prompt", "created"}
    assert set(first) >= {"starred", "scores"}
    assert isinstance(first["id"], str) and isinstance(first["seed"], int)
    assert Path(first["path"]).is_absolute() and Path(first["path"]).is_file()
    assert set(first["scores"]) == {"consistency", "face", "aesthetic", "palette"}
    assert first["pose"] == {"id": "running", "tags": ["running"]} and first["starred"] is False
    (rejected,) = listed(client, rejected="1")
    assert rejected["character"] == "yuki" and "rejected" in Path(rejected["path"]).parts
    assert rejected["reasons"] == ["consistency 0.412 < 0.90"]


def test_cursor_pages_cover_everything_once(client):
    seen, cursor = [], None
    while True:
        params = {"limit": "1", **({"cursor": cursor} if cursor else {})}
        page = client.get("/api/images", params=params).json()
        seen += [image["id"] for image in page["images"]]
        cursor = page["next"]
        if cursor is None:
            break
    assert seen == [image["id"] for image in listed(client)] and len(seen) == 4
    assert client.get("/api/images", params={"cursor": "x'; drop"}).status_code == 422


@pytest.mark.parametrize(
    ("q", "expected"),
    [
        ("libr", [("sakura", "sitting_reading")]),  # prefix of a prompt word
        ("sakura beach", [("sakura", "standing")]),  # every word must match
        ("wav", [("sakura", "standing"), ("yuki", "standing")]),  # a pose tag
        ("1004", [("sakura", "running")]),  # the seed
        ("anything_v5", [("sakura", "sitting_reading")]),  # the model (image 0 of 3)
        ('"*) OR (', []),  # FTS syntax in the query is only words
    ],
)
def test_search_matches_every_word_as_a_prefix(client, q, expected):
    assert [(i["character"], i["pose"]["id"]) for i in listed(client, q=q)] == expected


def test_filters_character_posture_day_starred(client):
    assert {i["character"] for i in listed(client, character="yuki")} == {"yuki"}
    assert [i["posture"] for i in listed(client, posture="sitting")] == ["sitting"]
    day = listed(client)[0]["created"][:10]
    assert len(listed(client, day=day)) == 4 and listed(client, day="1999-01-01") == []
    assert listed(client, starred="1") == []
    facets = client.get("/api/gallery/facets").json()
    assert facets["characters"] == ["sakura", "yuki"] and facets["days"] == [day]


def test_star_trash_and_keep_survive_index_rebuild(client, home):
    from tools.store.index_rebuild import rebuild_index

    target = listed(client, q="library")[0]
    answer = client.post(f"/api/images/{target['id']}/star", json={"starred": True})
    assert answer.status_code == 200 and answer.json()["starred"] is True
    assert [i["id"] for i in listed(client, starred="true")] == [target["id"]]
    pixels = Image.open(target["path"]).tobytes()
    trashed = client.post(f"/api/images/{listed(client, q='running')[0]['id']}/trash", json={})
    (rejected,) = listed(client, rejected="1")
    kept = client.post(f"/api/images/{rejected['id']}/keep", json={}).json()
    rebuild_index(load_settings(home=home, env={}))
    rebuilt = TestClient(
        create_app(Studio(home, TOKEN, "127.0.0.1")), base_url="http://127.0.0.1", headers=AUTH
    )
    assert [i["path"] for i in listed(rebuilt, starred="1")] == [target["path"]]
    assert Image.open(target["path"]).tobytes() == pixels
    assert [i["path"] for i in listed(rebuilt, trashed="1")] == [trashed.json()["path"]]
    assert listed(rebuilt, rejected="1") == []
    assert kept["path"] in [i["path"] for i in listed(rebuilt)]


def test_trash_moves_the_file_and_restore_brings_it_back_with_the_same_id(client, home):
    output = home / "anime-output"
    target = listed(client, q="library")[0]
    original = Path(target["path"])
    views = list((output / "characters" / "sakura").iterdir())
    trashed = client.post(f"/api/images/{target['id']}/trash", json={}).json()
    assert trashed["id"] == target["id"] and trashed["trashed"] is True
    assert not original.exists()
    assert Path(trashed["path"]) == output / ".trash" / original.relative_to(output)
    assert Path(trashed["path"]).is_file()
    assert target["id"] not in [i["id"] for i in listed(client)]
    assert [i["id"] for i in listed(client, trashed="1")] == [target["id"]]
    assert len(list((output / "characters" / "sakura").iterdir())) == len(views) - 1
    restored = client.post(f"/api/images/{target['id']}/restore", json={}).json()
    assert restored["id"] == target["id"] and restored["path"] == str(original)
    assert original.is_file() and target["id"] in [i["id"] for i in listed(client)]
    assert sorted(p.name for p in (output / "characters" / "sakura").iterdir()) == sorted(
        p.name for p in views
    )


def test_empty_trash_is_the_only_permanent_delete(client, home):
    target = listed(client)[0]
    client.post(f"/api/images/{target['id']}/trash", json={})
    trashed_file = Path(listed(client, trashed="1")[0]["path"])
    assert client.post("/api/gallery/empty-trash", json={}).json() == {"deleted": 1}
    assert not trashed_file.exists() and listed(client, trashed="1") == []
    assert client.get(f"/api/images/{target['id']}").status_code == 404


def test_keep_anyway_moves_a_rejected_image_into_the_accepted_ones(client, home):
    (rejected,) = listed(client, rejected="1")
    kept = client.post(f"/api/images/{rejected['id']}/keep", json={}).json()
    assert kept["accepted"] is True and "rejected" not in Path(kept["path"]).parts
    assert Path(kept["path"]).is_file() and not Path(rejected["path"]).exists()
    assert listed(client, rejected="1") == []
    assert rejected["id"] in [image["id"] for image in listed(client)]


def test_collection_links_without_moving_the_file(client, home):
    target = listed(client)[0]
    answer = client.post(f"/api/images/{target['id']}/collection", json={"collection": "Best"})
    assert answer.json()["collection"] == "best" and answer.json()["path"] == target["path"]
    (link,) = (home / "anime-output" / "collections" / "best").iterdir()
    assert link.resolve() == Path(target["path"])
    assert [i["id"] for i in listed(client, collection="best")] == [target["id"]]


def test_bulk_actions_change_every_selected_image_or_none(client, home):
    first, second, third = (image["id"] for image in listed(client)[:3])
    url = "/api/gallery/bulk"
    starred = client.post(url, json={"ids": [first, second], "action": "star"})
    assert starred.status_code == 200, starred.text
    assert [(i["id"], i["starred"]) for i in starred.json()["images"]] == [
        (first, True),
        (second, True),
    ]
    assert sorted(i["id"] for i in listed(client, starred="1")) == sorted([first, second])
    bad = client.post(url, json={"ids": [third, "..%2F1"], "action": "trash"})
    assert bad.status_code == 404 and third in [i["id"] for i in listed(client)]
    assert client.post(url, json={"ids": [first], "action": "delete"}).status_code == 422
    assert client.post(url, json={"ids": [], "action": "star"}).status_code == 422
    collected = client.post(
        url, json={"ids": [first, third], "action": "collection", "collection": "Picks"}
    )
    assert {i["collection"] for i in collected.json()["images"]} == {"picks"}
    assert len(list((home / "anime-output" / "collections" / "picks").iterdir())) == 2
    client.post(url, json={"ids": [first, second], "action": "unstar"})
    assert listed(client, starred="1") == []
    browser, csrf = logged_in_browser(home)
    trash = {"ids": [first, second], "action": "trash"}
    assert browser.post(url, json=trash).status_code == 401  # a cookie without the CSRF header
    trashed = browser.post(url, json=trash, headers={CSRF_HEADER: csrf})
    assert [i["trashed"] for i in trashed.json()["images"]] == [True, True]
    assert sorted(i["id"] for i in listed(client, trashed="1")) == sorted([first, second])
    assert all(Path(i["path"]).is_file() for i in trashed.json()["images"])


def test_reconcile_picks_up_hand_edits_and_a_missing_file_never_crashes(client, home):
    images = listed(client)
    deleted, moved = Path(images[0]["path"]), Path(images[1]["path"])
    deleted.unlink()
    moved_to = moved.parent.parent / "sorted" / moved.name
    moved_to.parent.mkdir()
    moved.rename(moved_to)
    copy = moved_to.parent / "copied_by_hand.png"
    shutil.copyfile(moved_to, copy)
    report = client.post("/api/gallery/reconcile", json={}).json()
    assert (report["added"], report["moved"], report["missing"]) == (1, 1, 1)
    after = {i["id"]: i for i in listed(client)}
    assert after[images[0]["id"]]["missing"] is True
    assert after[images[1]["id"]]["path"] == str(moved_to)
    assert str(copy) in {i["path"] for i in after.values()}
    assert client.get(f"/api/images/{images[0]['id']}").status_code == 200
    assert client.get(f"/api/images/{images[0]['id']}/thumb").status_code == 404
    assert client.get(f"/gallery/image/{images[0]['id']}").status_code == 200


def test_thumbnails_are_webp_cached_by_path_and_mtime(client, home):
    import os

    target = listed(client)[0]
    first = client.get(f"/api/images/{target['id']}/thumb")
    assert first.status_code == 200 and first.headers["content-type"] == "image/webp"
    assert first.content[8:12] == b"WEBP"
    cache = home / ".anime-chat" / "thumbs"
    assert len(list(cache.rglob("*.webp"))) == 1
    client.get(f"/api/images/{target['id']}/thumb")
    (cached,) = cache.rglob("*.webp")
    cached.unlink()
    assert client.get(f"/api/images/{target['id']}/thumb").content == first.content
    assert cached.is_file()
    os.utime(target["path"], (1_700_000_000, 1_700_000_000))
    client.get(f"/api/images/{target['id']}/thumb")
    assert len(list(cache.rglob("*.webp"))) == 2


def test_one_image_has_parameters_and_its_neighbours(client):
    images = listed(client)
    middle = client.get(f"/api/images/{images[1]['id']}").json()
    assert middle["parameters"].startswith(middle["prompt"])
    assert "Seed: " in middle["parameters"]
    assert (middle["newer"], middle["older"]) == (images[0]["id"], images[2]["id"])
    narrowed = client.get(f"/api/images/{images[1]['id']}", params={"character": "sakura"})
    assert narrowed.json()["older"] == images[3]["id"]


def test_an_index_from_before_the_gallery_becomes_searchable(tmp_path):
    from tools.store.gen_index import SCHEMA

    path = tmp_path / "generations.sqlite"
    old = sqlite3.connect(path)
    old.executescript(SCHEMA)
    old.execute(
        "INSERT INTO images (path, status, created, character, posture, pose_id, seed, record)"
        " VALUES ('/x/a.png', 'saved', '2026-01-01', 'sakura', 'sitting', 'sitting_reading', 7,"
        ' \'{"prompt": "in a library", "pose": {"tags": ["sitting"]}, "starred": true}\')'
    )
    old.commit()
    old.close()
    index = GenerationIndex(path)
    with index.transaction() as connection:
        hits = connection.execute(
            "SELECT rowid FROM images_fts WHERE images_fts MATCH 'libr*'"
        ).fetchall()
        starred = connection.execute("SELECT starred FROM images").fetchone()[0]
    assert len(hits) == 1 and starred == 1


# --- security ------------------------------------------------------------------------------------
def test_no_token_is_401_for_the_api_and_the_pages(home):
    bare = TestClient(create_app(Studio(home, TOKEN, "127.0.0.1")), base_url="http://127.0.0.1")
    for url in ("/api/images", "/api/images/1", "/api/images/1/thumb", "/gallery", "/gallery/jobs"):
        assert bare.get(url).status_code == 401, url
    assert bare.post("/api/images/1/star", json={"starred": True}).status_code == 401
    assert bare.get("/gallery/login", params={"code": "guess"}).status_code == 401


def test_login_link_works_once_and_its_cookie_is_a_strict_httponly_session_not_the_token(home):
    studio = Studio(home, TOKEN, "127.0.0.1")
    bare = TestClient(create_app(studio), base_url="http://127.0.0.1")
    code = login_code(TOKEN)
    assert TOKEN not in code and code != login_code(TOKEN)  # a fresh code each time
    answer = bare.get("/gallery/login", params={"code": code}, follow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"] == "/gallery"
    cookie = answer.headers["set-cookie"]
    assert cookie.startswith(f"{cookie_name(80)}={studio.gallery_session};")
    assert TOKEN not in cookie and "HttpOnly" in cookie and "samesite=strict" in cookie.lower()
    assert bare.get("/gallery").status_code == 200
    # The spent link from history: fine while logged in, refused in another browser.
    again = bare.get("/gallery/login", params={"code": code}, follow_redirects=False)
    assert again.status_code == 303
    other = TestClient(create_app(studio), base_url="http://127.0.0.1")
    refused = other.get("/gallery/login", params={"code": code})
    assert refused.status_code == 401 and "anime-gen gallery" in refused.json()["detail"]
    forged = f"{code.split('.')[0]}.{'0' * 64}"
    assert other.get("/gallery/login", params={"code": forged}).status_code == 401
    assert other.get("/gallery/login", params={"code": "é.é"}).status_code == 401
    assert other.get("/gallery/login", params={"code": login_code(TOKEN)}).status_code == 200


def test_two_servers_on_one_host_keep_separate_sessions(home):
    first, second = Studio(home, TOKEN, "127.0.0.1"), Studio(home, TOKEN, "127.0.0.1")
    first.port, second.port = 7001, 7002
    browser = TestClient(create_app(first), base_url="http://127.0.0.1:7001")
    browser.get("/gallery/login", params={"code": login_code(TOKEN)})
    assert [c.name for c in browser.cookies.jar] == [cookie_name(7001)]
    other = TestClient(create_app(second), base_url="http://127.0.0.1:7002")
    for c in browser.cookies.jar:  # what a browser does: one host's cookies go to every port
        other.cookies.set(c.name, c.value)
    assert other.get("/api/images").status_code == 401


def test_cookie_posts_need_the_csrf_header_and_bearer_posts_do_not(client, home):
    target = listed(client)[0]
    url = f"/api/images/{target['id']}/star"
    browser, csrf = logged_in_browser(home)
    assert browser.get("/api/images").status_code == 200
    assert browser.post(url, json={"starred": True}).status_code == 401
    ok = browser.post(url, json={"starred": True}, headers={CSRF_HEADER: csrf})
    assert ok.status_code == 200
    assert client.post(url, json={"starred": False}).status_code == 200  # bearer, no header


def test_foreign_origin_or_host_is_403(client):
    target = listed(client)[0]
    url = f"/api/images/{target['id']}/trash"
    assert client.post(url, json={}, headers={"Origin": "http://evil.example"}).status_code == 403
    assert client.get("/api/images", headers={"Host": "evil.example"}).status_code == 403
    assert client.get("/gallery", headers={"Origin": "http://evil.example"}).status_code == 403
    assert Path(target["path"]).is_file()


@pytest.mark.parametrize(
    "url",
    [
        "/api/images/..%2F..%2Fetc%2Fpasswd",
        "/api/images/../../etc/passwd",
        "/api/images/..",
        "/api/images/1%2F..%2F2/thumb",
        "/api/images/-1/file",
        "/api/images/99999",
        "/gallery/image/..%2F1",
        "/gallery/static/..%2Fcatalog.py",
        "/gallery/static/../api.py",
        "/api/gallery/poses/..%2F..%2Fetc/skeleton",
    ],
)
def test_dot_dot_in_an_id_or_path_is_404(client, url):
    assert client.get(url).status_code == 404
    if "/api/images/" in url and url.count("/") == 3:
        assert client.post(f"{url}/trash", json={}).status_code == 404


def test_a_row_pointing_outside_the_home_is_never_served(client, home):
    listed(client)  # the start-up reconcile is done: it would find the real file again
    with GenerationIndex(home / ".anime-chat" / "generations.sqlite").transaction() as db:
        db.execute(
            "UPDATE images SET path = ? WHERE id = (SELECT max(id) FROM images)",
            (f"{home}/anime-output/../../../../etc/passwd",),
        )
    newest = listed(client)[0]
    assert client.get(f"/api/images/{newest['id']}/file").status_code == 404
    assert client.get(f"/api/images/{newest['id']}/thumb").status_code == 404


# --- rerun ---------------------------------------------------------------------------------------
def test_rerun_queues_the_same_image_again_or_as_asked(anime_home, monkeypatch):
    from tools.characters.library import CharacterLibrary
    from tools.jobs.journal import JobJournal

    monkeypatch.setattr("tools.jobs.client.ensure_worker", lambda settings: False)
    CharacterLibrary(load_settings(home=anime_home).paths).add(
        "sakura", Image.new("RGB", (32, 48), (240, 200, 210)), description="pink hair"
    )
    write_images(anime_home)
    client = TestClient(
        create_app(Studio(anime_home, TOKEN, "127.0.0.1")),
        base_url="http://127.0.0.1",
        headers=AUTH,
    )
    source = listed(client, q="library")[0]
    journal = JobJournal.for_state(anime_home / ".anime-chat")

    def specs(body: dict) -> list[dict]:
        answer = client.post(f"/api/images/{source['id']}/rerun", json=body)
        assert answer.status_code == 200, answer.text
        return [image.spec for image in journal.get(answer.json()["job"]).images]

    (again,) = specs({})
    assert (again["seed"], again["pose"]["id"], again["user_prompt"]) == (
        source["seed"],
        "sitting_reading",
        "in a library",
    )
    assert [s["seed"] for s in specs({"count": 2, "seed": 5})] == [5, 6]
    fresh = specs({"count": 3, "seed": None})
    assert len(fresh) == 3 and {s["pose"]["id"] for s in fresh} == {"sitting_reading"}
    (edited,) = specs({"prompt": "in a garden"})
    assert edited["user_prompt"] == "in a garden" and edited["seed"] == source["seed"]
    # The Jobs page shows what each job draws and when it was queued (queue order).
    rows = client.get("/api/jobs").json()
    assert [row["what"].rsplit(" · ", 1)[1] for row in rows] == [
        "1 image", "2 images", "3 images", "1 image"
    ]  # fmt: skip
    assert {row["what"].rsplit(" · ", 1)[0] for row in rows} == {"sakura · sitting_reading"}
    queued = datetime.fromisoformat(rows[0]["queued"])
    assert queued.tzinfo is not None and abs(queued.timestamp() - time.time()) < 24 * 3600
