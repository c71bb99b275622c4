"""The A1111 API where it must behave as A1111 does (issue 25's follow-ups): img2img at
denoising 0, a request giving one side of the size, png-info of JPEG and WebP (EXIF
UserComment), and the img2img init images' lifetime.

Read against AUTOMATIC1111/stable-diffusion-webui `modules/processing.py`,
`modules/sd_samplers_common.py`, `modules/images.py` and `modules/api/api.py`. End-to-end tests
use the session's background server (`studio`, tests/conftest.py) and the real `webuiapi`.
"""

from __future__ import annotations

import base64
import io
import json

import test_a1111_api
from PIL import Image
from test_a1111_api import SMALL, _api, _pixels

# The in-process app of test_a1111_api (a fixture is found by its name in the module).
app_client = test_a1111_api.app_client


def test_img2img_at_denoising_0_gives_the_init_image_back(studio):
    """A1111 accepts `denoising_strength: 0` (its request model has no bound): t_enc =
    int(0 · steps) = 0 (`setup_img2img_steps`), so only the schedule's lowest noise level is
    sampled and the init image comes back all but unchanged (the ADetailer-only pass people
    use it for). Here no step runs: its pixels come back, resized. It was a 422 (denoise > 0)."""
    api = _api(studio)
    start = Image.new("RGB", (96, 80), (200, 30, 30))
    for x in range(0, 96, 8):
        start.paste((20, 200, 60), (x, 0, x + 4, 80))
    result = api.img2img(images=[start], prompt="a cat", seed=4, denoising_strength=0, **SMALL)
    assert len(result.images) == 1, result
    expected = start.resize((64, 64), Image.Resampling.LANCZOS)
    assert _pixels(result.images[0]) == _pixels(expected)
    record = json.loads(result.images[0].info["anime-chat"])
    assert record["init_image"]["denoise"] == 0
    assert result.info["denoising_strength"] == 0


def test_a_side_left_out_is_the_configured_one_and_is_named_in_the_warnings():
    """A1111 defaults both sides to 512 (`StableDiffusionProcessing`); here a field left out is
    the configured value (docs/A1111_API.md), also for one side: an SDXL setup configured for
    832x1216 asked for width 1024 draws 1024x1216, not 1024x512. It was 512, silently."""
    from tools.server.a1111_mapping import A1111Request, map_request
    from tools.settings_sections import Resolution

    sdxl = Resolution(832, 1216)
    mapping = map_request(A1111Request(width=1024), {}, None, sdxl)
    assert mapping.flags["output"]["resolution"] == "1024x1216"
    assert [w for w in mapping.warnings if "height" in w] == [
        "height not given: used the configured 1216 (output.resolution 832x1216;"
        " A1111 would use 512)"
    ]
    only_height = map_request(A1111Request(height=640), {}, None, sdxl)
    assert only_height.flags["output"]["resolution"] == "832x640"
    assert any(w.startswith("width not given") for w in only_height.warnings)
    # Both given: as asked, no warning; a side off the grid of 8 is rounded down and named.
    both = map_request(A1111Request(width=768, height=512), {}, None, sdxl)
    assert both.flags["output"]["resolution"] == "768x512"
    assert not [w for w in both.warnings if "width" in w or "height" in w]
    odd = map_request(A1111Request(width=770, height=512), {}, None, sdxl)
    assert odd.flags["output"]["resolution"] == "768x512"
    assert any("770x512 rounded down" in w for w in odd.warnings)
    # Neither: no resolution of the request's own (the configured one), nothing to warn about.
    assert "output" not in map_request(A1111Request(), {}, None, sdxl).flags


def test_txt2img_with_only_a_width_draws_the_configured_height(studio):
    """The session server is configured for 128x192 (evals/tiny_models.py)."""
    result = _api(studio).session.post(
        f"{_api(studio).baseurl}/txt2img",
        json={"prompt": "a lamp", "seed": 2, "steps": 1, "width": 64},
    )
    assert result.status_code == 200, result.text
    image = Image.open(io.BytesIO(base64.b64decode(result.json()["images"][0])))
    assert image.size == (64, 192)
    info = json.loads(result.json()["info"])
    assert (info["width"], info["height"]) == (64, 192)
    assert any(w.startswith("height not given: used the configured 192") for w in info["warnings"])


def _with_exif(kind: str, comment: bytes | None = None, raw: bytes | None = None) -> str:
    """A base64 JPEG or WebP whose EXIF UserComment is `comment` (or whose EXIF is `raw`)."""
    image = Image.new("RGB", (8, 8), (10, 120, 200))
    if raw is None:
        exif = Image.Exif()
        exif.get_ifd(0x8769)[0x9286] = comment
        raw = exif.tobytes()
    buffer = io.BytesIO()
    image.save(buffer, format=kind, exif=raw)
    return base64.b64encode(buffer.getvalue()).decode()


INFOTEXT = "1girl, 桜\nNegative prompt: blurry\nSteps: 20, Sampler: Euler a, Seed: 9, Size: 64x64"


def test_png_info_reads_a_jpeg_or_webp_exif_user_comment_as_a1111_does(app_client):
    """A1111 saves a JPEG's or WebP's parameters as the EXIF UserComment, `UNICODE\\0` then
    UTF-16-BE (piexif.helper.UserComment.dump, `modules/images.py` save_image_with_geninfo), and
    png-info reads them back (`read_info_from_image`). Here only PNG chunks were read: ""."""
    unicode = b"UNICODE\0" + INFOTEXT.encode("utf-16-be")
    ascii_ = b"ASCII\0\0\0" + INFOTEXT.encode("ascii", "replace")
    little = b"UNICODE\0" + INFOTEXT.encode("utf-16-le")  # other tools, in an "II" EXIF
    bare = INFOTEXT.encode()  # no prefix: A1111 reads it as UTF-8
    cases = [("JPEG", unicode), ("WEBP", unicode), ("JPEG", little), ("WEBP", bare)]
    for kind, comment in cases:
        answer = app_client.post("/sdapi/v1/png-info", json={"image": _with_exif(kind, comment)})
        assert answer.status_code == 200, (kind, answer.text)
        body = answer.json()
        assert body["info"] == INFOTEXT, (kind, comment[:8])
        assert body["parameters"]["Prompt"] == "1girl, 桜" and body["parameters"]["Seed"] == "9"
        assert body["parameters"]["Negative prompt"] == "blurry"
        # A1111 also lists the comment among the items (read_info_from_image).
        assert body["items"]["exif comment"] == INFOTEXT, (kind, body["items"])
    answer = app_client.post("/sdapi/v1/png-info", json={"image": _with_exif("JPEG", ascii_)})
    assert answer.json()["info"] == INFOTEXT.replace("桜", "?")


def test_png_info_of_damaged_or_huge_exif_is_a_clean_answer(app_client):
    """No TIFF header (Pillow raises SyntaxError), a truncated IFD, a comment of 2 MiB, an
    EXIF without a comment: each answers 200 with no parameters, never a 500."""
    header_only = b"Exif\0\0MM\0\x2a\0\0\0\x08\xff\xff"
    images = {
        "not tiff": _with_exif("WEBP", raw=b"Exif\0\0" + b"X" * 32),
        "truncated": _with_exif("JPEG", raw=header_only),
        "no comment": _with_exif("JPEG", raw=Image.Exif().tobytes()),
        "huge": _with_exif("WEBP", b"ASCII\0\0\0" + b"x" * (2 * 1024 * 1024)),
        "short": _with_exif("JPEG", b"UNI"),
    }
    for name, encoded in images.items():
        answer = app_client.post("/sdapi/v1/png-info", json={"image": encoded})
        assert answer.status_code == 200, (name, answer.text)
        body = answer.json()
        assert body["parameters"] == {} or name == "short", (name, body)
        assert len(answer.content) < 64 * 1024, name
    huge = app_client.post("/sdapi/v1/png-info", json={"image": images["huge"]}).json()
    assert huge["info"] == "" and "over the 1024 KiB read" in huge["items"]["exif comment"]
    damaged = app_client.post("/sdapi/v1/png-info", json={"image": images["not tiff"]}).json()
    assert damaged["info"] == "" and "damaged" in damaged["items"]["exif comment"]


def _encoded(color: tuple[int, int, int]) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), color).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def _img2img_spec(key: str, init: object) -> dict:
    spec = {"key": key, "request_id": key.split(":")[0], "index": 0, "character": "", "seed": 1}
    spec |= {"pose": {"id": None, "tags": []}, "posture": "txt2img", "plain": True}
    return spec | {"init_image": {"path": str(init), "denoise": 0.5}}


def test_init_images_go_when_no_queued_or_running_job_needs_them(anime_home):
    """They were written under <state>/a1111/init and never removed. A sweep (after each
    request) removes those no image still to draw of a queued or running job reads: one a
    crash left, a cancelled job's, a done job's, while one that a queued job shares stays."""
    import fcntl

    import pytest

    from tools.errors import UserError
    from tools.generation.plain import _img2img
    from tools.generation.specs import InitImage
    from tools.jobs.journal import JobJournal
    from tools.server.a1111_images import (
        decode_image,
        init_folder_locked,
        save_init_image,
        sweep_init_images,
    )

    state = anime_home / ".anime-chat"
    journal = JobJournal.for_state(state)
    with init_folder_locked(state) as folder:
        shared, own, stale = (
            save_init_image(folder, *decode_image(_encoded(c), "init_images"))
            for c in ((1, 2, 3), (4, 5, 6), (7, 8, 9))
        )
        # Held from writing until the job is queued: a sweep (same lock) waits meanwhile.
        with open(folder / ".lock", "a") as other, pytest.raises(BlockingIOError):
            fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
        first = journal.submit(
            [_img2img_spec("a:0", shared), {**_img2img_spec("a:1", own), "index": 1}]
        )
        second = journal.submit([_img2img_spec("b:0", shared)])
    assert sweep_init_images(state) == [stale]
    assert shared.exists() and own.exists() and not stale.exists()
    journal.cancel(first)
    assert sweep_init_images(state) == [own] and shared.exists()
    job = journal.claim(worker_pid=4242)
    assert job is not None and job.id == second
    journal.image_done(job, 0, None, {})
    assert journal.finish(job)
    assert sweep_init_images(state) == [shared]
    assert list(folder.glob("*.png")) == []
    # A retry of the cancelled job finds its init image gone: a user error, not a traceback.
    assert journal.retry(first)
    with pytest.raises(UserError) as gone:
        _img2img(None, None, InitImage(path=str(own), denoise=0.5), (8, 8), None)  # type: ignore[arg-type]
    assert "send the img2img request again" in gone.value.hint


def test_base64_wrapped_over_lines_is_decoded_as_a1111_does(app_client):
    """A1111 decodes with `base64.b64decode(encoding)` (`modules/api/api.py`
    decode_base64_to_image), which skips line breaks: `base64.encodebytes` and the `base64`
    command wrap at 76 columns, and scripts send that. Here it was a 422 (validate=True)."""
    buffer = io.BytesIO()
    image = Image.new("RGB", (8, 8), (10, 120, 200))
    image.save(buffer, format="PNG", pnginfo=_parameters(INFOTEXT))
    wrapped = base64.encodebytes(buffer.getvalue()).decode()
    assert "\n" in wrapped.strip()
    # png-info strips its field first (`pnginfoapi`: `req.image.strip()`), data URL or not.
    url = "data:image/png;base64," + wrapped.replace("\n", "\r\n")
    for encoded in (wrapped, url, f"  {url}\n"):
        answer = app_client.post("/sdapi/v1/png-info", json={"image": encoded})
        assert answer.status_code == 200, answer.text
        assert answer.json()["info"] == INFOTEXT
    # What is no base64 after the line breaks go is still a 422 naming the field.
    answer = app_client.post("/sdapi/v1/png-info", json={"image": "iVBO\n!!!!"})
    assert answer.status_code == 422 and answer.json()["detail"].startswith("image: ")


def _parameters(text: str) -> object:
    from PIL.PngImagePlugin import PngInfo

    chunks = PngInfo()
    chunks.add_text("parameters", text)
    return chunks


def test_an_image_url_is_a_422_saying_urls_are_not_fetched(app_client):
    """A1111 fetches an http(s) URL given as an image (`decode_base64_to_image`, with its
    `api_enable_requests` option on by default); the studio does not (no request to a host a
    client names). It was "not a base64 PNG ... (Only base64 data is allowed)"."""
    for path, body, field in [
        ("/sdapi/v1/png-info", {"image": "https://example.com/a.png"}, "image"),
        (
            "/sdapi/v1/img2img",
            {"prompt": "x", "init_images": ["http://10.0.0.1/a.png"]},
            "init_images",
        ),
    ]:
        answer = app_client.post(path, json=body)
        assert answer.status_code == 422, answer.text
        detail = answer.json()["detail"]
        assert detail.startswith(f"{field}: ") and "URLs are not fetched" in detail, detail


def test_png_info_of_a_novelai_image_is_its_infotext_as_a1111_writes_it(app_client):
    """A1111's read_info_from_image turns NovelAI's chunks (`Software: NovelAI`, the prompt as
    `Description`, the settings as JSON in `Comment`) into an infotext, its sampler named by
    A1111's alias. Here its info was "" and no parameters."""
    from PIL.PngImagePlugin import PngInfo

    def novelai(comment: str) -> str:
        chunks = PngInfo()
        for key, value in (("Software", "NovelAI"), ("Description", "1girl, cat ears")):
            chunks.add_text(key, value)
        chunks.add_text("Comment", comment)
        buffer = io.BytesIO()
        Image.new("RGB", (64, 48)).save(buffer, format="PNG", pnginfo=chunks)
        return base64.b64encode(buffer.getvalue()).decode()

    record = {"uc": "lowres", "steps": 28, "sampler": "k_euler_ancestral", "scale": 11, "seed": 7}
    body = app_client.post("/sdapi/v1/png-info", json={"image": novelai(json.dumps(record))})
    assert body.status_code == 200, body.text
    assert body.json()["info"] == (
        "1girl, cat ears\nNegative prompt: lowres\nSteps: 28, Sampler: Euler a, CFG scale: 11,"
        " Seed: 7, Size: 64x48, Clip skip: 2, ENSD: 31337"
    )
    parameters = body.json()["parameters"]
    assert parameters["Prompt"] == "1girl, cat ears" and parameters["Seed"] == "7"
    assert parameters["Negative prompt"] == "lowres" and parameters["Sampler"] == "Euler a"
    # A sampler A1111 has no alias for is "Euler a"; a record that is no such JSON is no info.
    other = app_client.post(
        "/sdapi/v1/png-info", json={"image": novelai(json.dumps({**record, "sampler": "x"}))}
    )
    assert "Sampler: Euler a," in other.json()["info"]
    for broken in ("{", "[1]", json.dumps({"uc": "x"})):
        answer = app_client.post("/sdapi/v1/png-info", json={"image": novelai(broken)})
        assert answer.status_code == 200 and answer.json()["info"] == "", broken
        assert answer.json()["items"]["Software"] == "NovelAI"


def test_img2img_ignores_enable_hr_as_a1111_does():
    """A1111's img2img has no hires pass (`StableDiffusionProcessingImg2Img` takes no
    enable_hr; its request model drops the field), and clients spread their txt2img payload into
    img2img ones. Here enable_hr ran our hires pass on the img2img result, at the img2img's
    denoising_strength, doubling its size."""
    from tools.server.a1111_mapping import A1111Img2ImgRequest, map_img2img

    body = A1111Img2ImgRequest(
        init_images=["x"], enable_hr=True, hr_scale=2, denoising_strength=0.4, width=64, height=64
    )
    mapping = map_img2img(body, {})
    assert "hires" not in mapping.flags.get("output", {}), mapping.flags
    assert mapping.flags["output"]["resolution"] == "64x64"
    assert any("enable_hr" in warning for warning in mapping.warnings), mapping.warnings


def _worker_drawing_each_job(monkeypatch, state, out):
    """A stand-in for the worker process (its start is the boundary): each job queued is drawn
    at once, one small PNG an image, and done."""
    import tools.jobs.client
    from tools.jobs.journal import JobJournal

    def ensure_worker(settings) -> bool:
        journal = JobJournal.for_state(state)
        while (job := journal.claim(worker_pid=4242)) is not None:
            for image in job.images:
                path = out / f"{job.id}_{image.index}.png"
                Image.new("RGB", (8, 8), (9, 9, 9)).save(path)
                record = {"path": str(path), "character": "", "seed": image.spec["seed"]}
                journal.image_done(
                    job, image.index, str(path), record | {"pose": {"id": None, "tags": []}}
                )
            assert journal.finish(job)
        return False

    monkeypatch.setattr(tools.jobs.client, "ensure_worker", ensure_worker)


def test_a_failing_init_image_sweep_is_logged_and_the_images_come_back(
    app_client, anime_home, tmp_path, monkeypatch, caplog
):
    """The sweep after each request is housekeeping: a journal or file error in it answered
    the finished request 500 instead of its images. Now it is logged (server.log) and the
    request answers as it would."""
    import logging
    import sqlite3

    from tools.jobs.journal import JobJournal

    _worker_drawing_each_job(monkeypatch, anime_home / ".anime-chat", tmp_path)

    def locked(self) -> set[str]:
        raise sqlite3.OperationalError("database is locked")

    monkeypatch.setattr(JobJournal, "init_images_needed", locked)
    body = {"prompt": "a cat", "seed": 3, "init_images": [_encoded((1, 2, 3))], **SMALL}
    with caplog.at_level(logging.ERROR, logger="anime.server"):
        answer = app_client.post("/sdapi/v1/img2img", json=body)
    assert answer.status_code == 200, answer.text
    assert len(answer.json()["images"]) == 1
    failed = [r for r in caplog.records if r.name == "anime.server" and r.exc_info]
    assert failed and "database is locked" in str(failed[0].exc_info[1])
    assert "init image" in failed[0].getMessage()


def test_a_temp_file_a_killed_write_left_is_swept(anime_home):
    """A write killed mid-way leaves `write_atomic`'s hidden temp file in the init folder, and
    the sweep took only `*.png`. Writers hold the folder's lock while writing, so a temp file
    there while the sweep holds it is no live writer's: it goes; the lock file stays."""
    from tools.server.a1111_images import (
        decode_image,
        init_folder_locked,
        save_init_image,
        sweep_init_images,
    )

    state = anime_home / ".anime-chat"
    with init_folder_locked(state) as folder:
        kept = save_init_image(folder, *decode_image(_encoded((1, 2, 3)), "init_images"))
    left = folder / f".{kept.name}.k1ll3d.tmp"
    left.write_bytes(b"\x89PNG half")
    other = folder / "notes.txt"  # not of the sweep's naming: left alone
    other.write_text("mine")
    assert sorted(sweep_init_images(state)) == sorted([kept, left])
    assert sorted(p.name for p in folder.iterdir()) == [".lock", "notes.txt"]


def test_no_init_folder_lock_is_held_while_the_models_download(
    app_client, anime_home, tmp_path, monkeypatch
):
    """A cold model download (`prefetch_models`) ran under the init folder's lock, so every
    other img2img request (and sweep) waited for it. The lock covers writing the files and
    queueing the job only."""
    import fcntl

    import tools.jobs.client
    from tools.server.a1111_images import INIT_FOLDER

    state = anime_home / ".anime-chat"
    _worker_drawing_each_job(monkeypatch, state, tmp_path)
    held: list[bool] = []

    def prefetch_models(settings) -> None:
        with open(state.joinpath(*INIT_FOLDER, ".lock"), "a") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                held.append(False)
            except BlockingIOError:
                held.append(True)

    monkeypatch.setattr(tools.jobs.client, "prefetch_models", prefetch_models)
    state.joinpath(*INIT_FOLDER).mkdir(parents=True)
    body = {"prompt": "a cat", "seed": 3, "init_images": [_encoded((1, 2, 3))], **SMALL}
    answer = app_client.post("/sdapi/v1/img2img", json=body)
    assert answer.status_code == 200, answer.text
    assert held == [False]
