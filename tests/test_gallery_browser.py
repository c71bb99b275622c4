"""The gallery in a real headless Chromium (Debian's `chromium`, driven by Playwright's Python
API through `executable_path`; no Playwright browser download).

One studio server and one browser for the module. The home holds drawn images with synthetic
records (written by the real output store) and two tiny-model renders made through the server
and its worker before the first test; "again" renders with the same warm worker. Screenshots of
the grid and the image view are saved under the module's tmp dir (printed with -s).
"""

from __future__ import annotations

import http.client
import json
import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from conftest import studio_env, studio_home
from PIL import Image, ImageDraw

from evals.gallery_bench import synthetic_meta
from tools.server.client import running_client

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
DRAWN = [
    ("sakura", ("sitting_reading", ["sitting", "reading"]), "in a library", (250, 190, 210)),
    ("yuki", ("standing", ["standing", "waving"]), "at the beach, sunset", (250, 200, 120)),
    ("sakura", ("standing", ["standing", "waving"]), "cherry blossoms", (255, 220, 235)),
    ("yuki", ("lying", ["lying", "sleeping"]), "snowy mountain", (200, 220, 250)),
    ("sakura", ("running", ["running"]), "rainy street at night", (70, 80, 120)),
]
# One image the gate turned down: only the rejected page lists it, until "keep anyway".
REJECTED = ("yuki", ("sitting_reading", ["sitting", "reading"]), "rainbow umbrella", (90, 160, 90))
JOB_TIMEOUT = 300


def _drawing(background: tuple[int, int, int], hair: tuple[int, int, int]) -> Image.Image:
    image = Image.new("RGB", (128, 192), background)
    draw = ImageDraw.Draw(image)
    draw.ellipse((40, 24, 88, 72), fill=(250, 215, 190))
    draw.pieslice((34, 14, 94, 74), 180, 360, fill=hair)
    draw.polygon([(44, 76), (84, 76), (98, 160), (30, 160)], fill=(60, 90, 190))
    draw.line((44, 84, 22, 130), fill=(250, 215, 190), width=7)
    draw.line((84, 84, 106, 130), fill=(250, 215, 190), width=7)
    return image


def _write_drawn_images(home: Path) -> None:
    from tools.settings import load_settings
    from tools.store.gen_index import GenerationIndex
    from tools.store.output_store import OutputStore

    settings = load_settings(home=home, env={})
    index = GenerationIndex(settings.paths.state / "generations.sqlite")
    store = OutputStore(settings, index)
    for number, (character, pose, scene, background) in enumerate([*DRAWN, REJECTED]):
        meta = synthetic_meta(number, character, pose, scene, accepted=number < len(DRAWN))
        hair = (230, 90, 150) if character == "sakura" else (150, 190, 240)
        store.save(_drawing(background, hair), meta, key=meta["key"])
    index.close()


def _get(url: str, cookie: str | None = None) -> http.client.HTTPResponse:
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    headers = {"Cookie": cookie} if cookie else {}
    connection.request("GET", f"{parts.path}?{parts.query}", headers=headers)
    response = connection.getresponse()
    response.read()
    connection.close()
    return response


def fresh_login_url(home: Path, printed: str) -> str:
    """What another `anime-gen gallery` prints: each login link works once."""
    from tools.gallery.auth import login_url

    token = (home / ".anime-chat" / "server.token").read_text().strip()
    parts = urlsplit(printed)
    return login_url(f"{parts.scheme}://{parts.netloc}", token)


@pytest.fixture(scope="module")
def gallery(tmp_path_factory: pytest.TempPathFactory, tiny_models: Path):
    """`anime-gen gallery --no-browser` on a prepared home: (home, printed URL, shots dir)."""
    from tools.characters.library import CharacterLibrary
    from tools.jobs.processes import stop_worker
    from tools.server.files import stop_server
    from tools.settings import load_settings

    home = studio_home(tmp_path_factory.mktemp("gallery") / "home", tiny_models)
    library = CharacterLibrary(load_settings(home=home, env={}).paths)
    library.add("sakura", _drawing((255, 255, 255), (230, 90, 150)), description="pink hair")
    library.add("yuki", _drawing((255, 255, 255), (150, 190, 240)), description="blue hair")
    _write_drawn_images(home)
    command = subprocess.run(
        [sys.executable, "-m", "assistant.gen_cli", "gallery", "--no-browser"],
        env=studio_env(home),
        capture_output=True,
        text=True,
        timeout=180,
    )
    try:
        assert command.returncode == 0, command.stderr
        url = command.stdout.strip().splitlines()[-1]
        client = running_client(home)
        assert client is not None, "the server did not keep running after the command"
        # Two tiny-model renders through the server's own path; the worker stays warm.
        job = client.call(
            "POST", "/api/jobs", {"character": "sakura", "pose": "standing", "count": 2, "seed": 1}
        )["job"]
        done = client.call("GET", f"/api/jobs/{job}/wait?timeout={JOB_TIMEOUT}")
        assert done["state"] == "done", done
        shots = tmp_path_factory.mktemp("gallery-screenshots")
        print(f"\ngallery screenshots: {shots}")
        yield home, url, shots
    finally:
        stop_server(home / ".anime-chat")
        stop_worker(home / ".anime-chat")


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.skip(
            f"no Chromium at {CHROMIUM} (Debian: apt-get install -y chromium; .ci/run does)"
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def page(browser, gallery):
    home, printed, _ = gallery
    url = fresh_login_url(home, printed)
    # Playwright's wait_for_function evaluates strings, which the page's CSP forbids:
    # test_the_page_runs_under_its_own_content_security_policy runs the page without bypass.
    context = browser.new_context(viewport={"width": 1100, "height": 720}, bypass_csp=True)
    opened = context.new_page()
    opened.set_default_timeout(30_000)
    opened.goto(url)
    yield opened
    context.close()


def _cards(page) -> list[str]:
    return page.eval_on_selector_all("#grid .card", "cards => cards.map(c => c.dataset.id)")


def _wait_cards(page, count: int) -> list[str]:
    page.wait_for_function(f"document.querySelectorAll('#grid .card').length === {count}")
    return _cards(page)


def _base(page) -> str:
    parts = urlsplit(page.url)
    return f"{parts.scheme}://{parts.netloc}"


def test_the_page_runs_under_its_own_content_security_policy(browser, gallery):
    home, printed, _ = gallery
    url = fresh_login_url(home, printed)
    context = browser.new_context()
    strict = context.new_page()
    violations: list[str] = []
    strict.on(
        "console",
        lambda message: (
            violations.append(message.text) if "Content Security Policy" in message.text else None
        ),
    )
    strict.goto(url)
    strict.locator("#grid .card").first.wait_for(timeout=30_000)
    context.close()
    assert violations == []


def test_an_idle_grid_polls_only_in_the_background_and_says_when_the_studio_stopped(
    browser, gallery
):
    home, printed, _ = gallery
    context = browser.new_context(bypass_csp=True)
    opened = context.new_page()
    opened.set_default_timeout(30_000)
    opened.clock.install()  # timers run only when the test says: no waiting on real time
    requests: list[tuple[str, str | None]] = []
    opened.on(
        "request",
        lambda request: requests.append((request.url, request.headers.get("x-anime-background"))),
    )
    opened.goto(fresh_login_url(home, printed))
    opened.wait_for_selector("#grid .card")

    def background_checks() -> list[int]:
        return [n for n, (url, flag) in enumerate(requests) if flag == "1"]

    for _ in range(300):  # until the first background check: the page's first look is over
        if background_checks():
            break
        opened.clock.run_for(10_000)
        opened.wait_for_timeout(100)
    seen = background_checks()[0]
    opened.clock.run_for(65_000)  # no job runs: a minute of background checks, no listing
    later = requests[seen:]
    assert later and all("/api/jobs" in url and flag == "1" for url, flag in later), later
    assert opened.locator("#stopped").count() == 0

    opened.route("**/api/**", lambda route: route.abort())  # the server has exited
    opened.evaluate("window.dispatchEvent(new Event('focus'))")
    opened.wait_for_selector("#stopped")
    assert "run `anime-gen gallery` again" in opened.inner_text("#stopped")
    opened.unroute("**/api/**")
    opened.route(  # it restarted with a new token: this page's cookie is not valid there
        "**/api/**", lambda route: route.fulfill(status=401, body='{"detail": "missing token"}')
    )
    opened.evaluate("window.dispatchEvent(new Event('focus'))")
    opened.wait_for_function("document.querySelector('#stopped').textContent.includes('expired')")
    assert "401" not in opened.inner_text("#stopped")
    context.close()


def test_the_printed_url_logs_in_once_and_the_token_stays_out_of_it_and_the_cookie(gallery):
    home, printed, _ = gallery
    token = (home / ".anime-chat" / "server.token").read_text().strip()
    url = printed  # no other test opens the printed link: it works the first time
    assert url.startswith("http://127.0.0.1:") and token not in url
    answer = _get(url)
    assert answer.status == 303 and answer.getheader("Location") == "/gallery"
    cookie = answer.getheader("Set-Cookie")
    assert "HttpOnly" in cookie and "samesite=strict" in cookie.lower() and token not in cookie
    assert cookie.startswith(f"anime_session_{urlsplit(url).port}=")
    assert _get(url).status == 401  # spent: the link in the browser's history opens nothing
    assert _get(fresh_login_url(home, printed).replace("code=", "code=0")).status == 401


def test_grid_shows_the_images_newest_first(page, gallery):
    _, _, shots = gallery
    page.goto(f"{_base(page)}/gallery")
    ids = _wait_cards(page, len(DRAWN) + 2)
    assert ids == sorted(ids, key=int, reverse=True)
    page.wait_for_function(
        "[...document.querySelectorAll('#grid img')].every(i => i.complete && i.naturalWidth > 0)"
    )
    page.screenshot(path=str(shots / "grid.png"))


def test_search_narrows_the_grid(page):
    page.goto(f"{_base(page)}/gallery")
    _wait_cards(page, len(DRAWN) + 2)
    page.fill("input[name=q]", "libr")
    (only,) = _wait_cards(page, 1)
    assert "libr" in page.url
    page.fill("input[name=q]", "sakura wav")
    _wait_cards(page, 1)
    page.fill("input[name=q]", "")
    _wait_cards(page, len(DRAWN) + 2)
    page.select_option("select[name=character]", "yuki")
    assert len(_wait_cards(page, 2)) == 2 and only


def test_star_survives_a_reload(page):
    page.goto(f"{_base(page)}/gallery?q=library")
    _wait_cards(page, 1)
    page.click("#grid .card a")
    page.wait_for_selector("#star")
    assert page.get_attribute("#star", "aria-pressed") == "false"
    page.click("#star")
    page.wait_for_function(
        "document.querySelector('#star').getAttribute('aria-pressed') === 'true'"
    )
    page.reload()
    assert page.get_attribute("#star", "aria-pressed") == "true"
    page.goto(f"{_base(page)}/gallery?starred=1")
    _wait_cards(page, 1)


def test_arrow_keys_move_between_images(page, gallery):
    _, _, shots = gallery
    page.goto(f"{_base(page)}/gallery")
    ids = _wait_cards(page, len(DRAWN) + 2)
    page.click(f"#grid .card[data-id='{ids[1]}'] a")
    page.wait_for_selector("#picture")
    page.wait_for_function("document.querySelector('#picture').naturalWidth > 0")
    page.screenshot(path=str(shots / "image.png"))
    page.keyboard.press("ArrowRight")
    page.wait_for_url(f"**/gallery/image/{ids[2]}*")
    page.keyboard.press("ArrowLeft")
    page.wait_for_url(f"**/gallery/image/{ids[1]}*")
    page.keyboard.press("ArrowLeft")
    page.wait_for_url(f"**/gallery/image/{ids[0]}*")


def test_trash_hides_an_image_and_restore_brings_it_back_with_its_file(page, gallery):
    home, _, _ = gallery
    page.goto(f"{_base(page)}/gallery?q=beach")
    (image_id,) = _wait_cards(page, 1)
    page.click("#grid .card a")
    original = Path(page.inner_text(".path"))
    assert original.is_file()
    page.click("#trash")
    page.wait_for_selector("#restore")
    assert not original.exists()
    assert (
        home / "anime-output" / ".trash" / original.relative_to(home / "anime-output")
    ).is_file()
    page.goto(f"{_base(page)}/gallery")
    assert image_id not in _wait_cards(page, len(DRAWN) + 1)
    page.goto(f"{_base(page)}/gallery/trash")
    _wait_cards(page, 1)
    page.click(f"#grid .card[data-id='{image_id}'] button.restore")
    _wait_cards(page, 0)
    assert original.is_file()
    page.goto(f"{_base(page)}/gallery")
    assert image_id in _wait_cards(page, len(DRAWN) + 2)


def test_again_makes_a_job_whose_image_appears_without_a_reload(page):
    base = _base(page)
    page.goto(f"{base}/gallery")
    before = _wait_cards(page, len(DRAWN) + 2)
    # The grid stays open in its own tab; "again" is pressed in the image view.
    viewer = page.context.new_page()
    viewer.goto(f"{base}/gallery/image/{before[0]}")
    viewer.click("#again")
    viewer.wait_for_selector("#job-progress")
    viewer.wait_for_selector("#job-images img", timeout=JOB_TIMEOUT * 1000)
    assert "done" in viewer.inner_text("#job-progress")
    new_id = viewer.get_attribute("#job-images a", "href").rsplit("/", 1)[-1]
    after = _wait_cards(page, len(before) + 1)  # no reload: the grid picked it up
    assert after[0] == new_id and int(new_id) > int(before[0])
    detail = json.loads(viewer.evaluate(f"fetch('/api/images/{new_id}').then(r => r.text())"))
    source = json.loads(viewer.evaluate(f"fetch('/api/images/{before[0]}').then(r => r.text())"))
    assert detail["seed"] == source["seed"] and detail["pose"] == source["pose"]
    assert Path(detail["path"]).is_file()
    viewer.close()


def test_job_queue_rejected_and_characters_pages_render(page):
    base = _base(page)
    page.goto(f"{base}/gallery/jobs")
    page.wait_for_selector("#jobs tbody tr")
    assert "done" in page.inner_text("#jobs tbody")
    # What each job draws and when it was queued (the page's local time of the job's ISO stamp).
    what = page.inner_text("#jobs tbody tr:last-child .job-what")
    assert re.fullmatch(r"sakura · standing\S* · 2 images", what), what
    queued = page.inner_text("#jobs tbody tr:last-child .job-queued")
    assert queued and queued != "Invalid Date", queued
    page.goto(f"{base}/gallery/characters")
    assert page.locator(".character").count() == 2
    page.wait_for_function(
        "[...document.querySelectorAll('.character img')].every(i => i.naturalWidth > 0)"
    )
    page.goto(f"{base}/gallery/rejected")
    page.wait_for_selector("#empty:not([hidden]), #grid .card")


# The three below change what the grid holds: they run last, in this order.
def test_keep_anyway_moves_a_rejected_image_into_the_grid(page):
    base = _base(page)
    page.goto(f"{base}/gallery/rejected")
    (image_id,) = _wait_cards(page, 1)
    assert "consistency" in page.inner_text("#grid .card .reasons")
    page.click("#grid .card button.keep")
    _wait_cards(page, 0)
    page.goto(f"{base}/gallery")
    page.wait_for_selector(f"#grid .card[data-id='{image_id}']")
    page.goto(f"{base}/gallery/rejected")
    page.wait_for_selector("#empty:not([hidden])")


def test_bulk_trash_of_a_shift_click_selection_hides_both_images(page):
    page.goto(f"{_base(page)}/gallery")
    page.wait_for_selector("#grid .card")
    ids = _cards(page)
    assert page.is_hidden("#bulk")
    page.click(f"#grid .card[data-id='{ids[0]}'] input.select")
    page.click(f"#grid .card[data-id='{ids[1]}'] input.select", modifiers=["Shift"])
    assert page.inner_text("#selected-count") == "2 selected"
    page.click("#clear-selection")
    assert page.is_hidden("#bulk")
    page.click(f"#grid .card[data-id='{ids[1]}'] input.select")
    page.click(f"#grid .card[data-id='{ids[0]}'] input.select", modifiers=["Shift"])
    page.click("#bulk button[data-action=trash]")
    assert _wait_cards(page, len(ids) - 2) == ids[2:]
    page.reload()
    assert _wait_cards(page, len(ids) - 2) == ids[2:]
    trashed = json.loads(page.evaluate("fetch('/api/images?trashed=1').then(r => r.text())"))
    assert {ids[0], ids[1]} <= {image["id"] for image in trashed["images"]}


def test_job_cancel_and_retry_from_the_queue_page_with_live_progress(page, gallery):
    home, _, shots = gallery
    job = running_client(home).call(
        "POST", "/api/jobs", {"character": "yuki", "pose": "standing", "count": 40, "seed": 7}
    )["job"]
    row = f"#jobs tr[data-job='{job}']"
    page.goto(f"{_base(page)}/gallery/jobs")
    # "step" is only ever written by the job's event stream, never by the list.
    page.wait_for_function(
        f"(document.querySelector(\"{row} .job-state\") || {{}}).textContent?.includes('step')",
        timeout=JOB_TIMEOUT * 1000,
    )
    page.screenshot(path=str(shots / "jobs.png"))
    page.click(f"{row} button.cancel")
    page.wait_for_selector(f"{row}[data-state=cancelled] button.retry")
    page.click(f"{row} button.retry")
    page.wait_for_selector(f"{row} button.cancel")
    page.click(f"{row} button.cancel")
    page.wait_for_selector(f"{row}[data-state=cancelled]")
    done = running_client(home).call("GET", f"/api/jobs/{job}/wait?timeout=60")
    assert done["state"] == "cancelled" and done["images_done"] < 40
