"""The A1111 API (`/sdapi/v1`) on the studio server, driven by the real `webuiapi` client.

End-to-end tests share the session's background server (`studio`, tests/conftest.py; its library
holds `sakura`) and draw 64px images in one step with the tiny models. The mapping of A1111's
fields, progress and interrupt are unit tests on the app in-process, with a journal job made
by hand (no render needed to see a job in flight).
"""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import pytest
import requests
import webuiapi
from fastapi.testclient import TestClient
from PIL import Image

from tools.server.a1111_mapping import A1111Request, map_request
from tools.server.app import create_app
from tools.server.studio import Studio

TOKEN = "a1111-token"
SMALL = {"steps": 1, "width": 64, "height": 64, "cfg_scale": 7.0}


def _api(studio, password: str | None = None) -> webuiapi.WebUIApi:
    discovery = studio.discovery
    return webuiapi.WebUIApi(
        host=discovery.host,
        port=discovery.port,
        username="anyone",
        password=studio.token if password is None else password,
    )


def _pixels(image: Image.Image) -> bytes:
    return image.convert("RGB").tobytes()


# --- end to end, with the real client ----------------------------------------------------------
def test_a_character_prompt_draws_the_character_in_a_pose_from_the_bank(studio):
    result = _api(studio).txt2img(prompt="sakura sitting in a library", seed=5, **SMALL)
    assert len(result.images) == 1
    assert result.info["seed"] == 5 and result.info["all_seeds"] == [5]
    assert result.info["characters"] == ["sakura"]
    pose = result.info["poses"][0]
    assert "sitting" in pose["tags"]
    assert f"Pose: {pose['id']}" in result.info["infotexts"][0]
    assert "Character: sakura" in result.info["infotexts"][0]
    # The answer's PNG is the saved file, with its parameters, listed in the gallery.
    image = result.images[0]
    assert image.size == (64, 64) and "Seed: 5" in image.info["parameters"]
    listed = studio.call("GET", "/api/images?character=sakura&limit=1000")["images"]
    assert result.info["paths"][0] in [entry["path"] for entry in listed]
    # png-info reads our own PNG back.
    info = _api(studio).png_info(image)
    assert "Seed: 5" in info.info and info.parameters["Seed"] == "5"
    assert info.parameters["Character"] == "sakura"


def test_a_plain_prompt_is_plain_txt2img_with_seeds_s_and_s_plus_1(studio):
    api = _api(studio)
    prompt = "a quiet lake at dawn"
    batch = api.txt2img(prompt=prompt, seed=11, batch_size=2, **SMALL)
    assert len(batch.images) == 2 and batch.info["all_seeds"] == [11, 12]
    assert batch.info["characters"] == [] and batch.info["poses"][0]["id"] is None
    assert batch.info["prompt"] == prompt and "Pose:" not in batch.info["infotexts"][0]
    assert any("save_images" in warning for warning in batch.info["warnings"])
    # The same seed draws the same pixels again (image 2 of the batch was seed 12).
    again = api.txt2img(prompt=prompt, seed=12, **SMALL)
    assert _pixels(again.images[0]) == _pixels(batch.images[1])
    assert _pixels(batch.images[0]) != _pixels(batch.images[1])
    listed = studio.call("GET", "/api/images?limit=1000")["images"]
    paths = {entry["path"] for entry in listed}
    assert set(batch.info["paths"]) <= paths and all(Path(p).exists() for p in paths)
    assert all(Path(p).name.startswith("txt2img_") for p in batch.info["paths"])
    # The gallery's character filter offers no empty name for them; the posture filter finds them.
    from tools.gallery.catalog import Catalog

    facets = Catalog(studio.home / "anime-output", studio.home / ".anime-chat").facets()
    assert "" not in facets["characters"] and "txt2img" in facets["postures"]


def test_hires_and_adetailer_fields_run_our_second_passes(studio):
    result = _api(studio).txt2img(
        prompt="a red umbrella",
        seed=3,
        enable_hr=True,
        hr_scale=2,
        hr_upscaler="Latent",
        hr_second_pass_steps=1,
        denoising_strength=0.5,
        adetailer=[webuiapi.ADetailer(ad_model="face_yolov8n.pt")],
        **SMALL,
    )
    assert result.images[0].size == (128, 128)
    infotext = result.info["infotexts"][0]
    assert "Hires upscale: 2" in infotext and "Denoising strength: 0.5" in infotext
    record = json.loads(result.images[0].info["anime-chat"])
    assert record["hires"] and record["face_detail"] is not None


def test_img2img_redraws_the_init_image(studio):
    api = _api(studio)
    start = Image.new("RGB", (96, 80), (200, 30, 30))
    result = api.img2img(
        images=[start], prompt="a red square", seed=21, denoising_strength=0.5, **SMALL
    )
    assert len(result.images) == 1 and result.images[0].size == (64, 64)
    assert result.info["seed"] == 21 and "init_images" not in result.parameters
    record = json.loads(result.images[0].info["anime-chat"])
    # The init image went when its job ended (no queued job needs it).
    assert record["init_image"]["denoise"] == 0.5
    assert not Path(record["init_image"]["path"]).exists()
    # The start matters: another init image, same seed and prompt, draws other pixels.
    other = Image.new("RGB", (96, 80), (20, 30, 220))
    blue = api.img2img(
        images=[other], prompt="a red square", seed=21, denoising_strength=0.5, **SMALL
    )
    assert _pixels(blue.images[0]) != _pixels(result.images[0])
    refused = api.session.post(f"{api.baseurl}/img2img", json={"prompt": "x"})
    assert refused.status_code == 422 and "init_images" in refused.json()["detail"]
    broken = api.session.post(f"{api.baseurl}/img2img", json={"init_images": ["%%%"]})
    assert broken.status_code == 422 and "init_images" in broken.json()["detail"]


def test_lists_and_options_answer_and_options_round_trip(studio):
    api = _api(studio)
    assert api.get_sd_models()[0]["title"] == "sd15"
    names = [sampler["name"] for sampler in api.get_samplers()]
    assert "Euler a" in names and "DPM++ 2M" in names
    assert {s["name"] for s in api.get_schedulers()} == {"automatic", "karras"}
    assert "Lanczos" in [u["name"] for u in api.get_upscalers()]
    assert isinstance(api.get_sd_vae(), list) and isinstance(api.get_loras(), list)
    assert set(api.get_embeddings()) == {"loaded", "skipped"}
    assert api.get_progress()["state"]["job_count"] == 0
    api.refresh_checkpoints()
    assert api.get_options()["CLIP_stop_at_last_layers"] == 2
    api.set_options({"CLIP_stop_at_last_layers": 1})
    try:
        assert api.get_options()["CLIP_stop_at_last_layers"] == 1
        # webuiapi returns the answer's JSON here, whatever its status.
        refused = api.session.post(f"{api.baseurl}/options", json={"CLIP_stop_at_last_layers": 9})
        assert refused.status_code == 422 and "CLIP_stop_at_last_layers" in refused.json()["detail"]
        assert api.get_options()["CLIP_stop_at_last_layers"] == 1
    finally:
        api.set_options({"CLIP_stop_at_last_layers": 2})


def test_without_the_token_401_and_a_bad_value_422(studio):
    anonymous = webuiapi.WebUIApi(host=studio.discovery.host, port=studio.discovery.port)
    assert anonymous.session.get(f"{anonymous.baseurl}/sd-models").status_code == 401
    with pytest.raises(RuntimeError) as missing:
        anonymous.txt2img(prompt="x", seed=1, **SMALL)
    assert missing.value.args[0] == 401
    guessing = _api(studio, password="guess")
    assert guessing.session.get(f"{guessing.baseurl}/options").status_code == 401
    bearer = {"Authorization": f"Bearer {studio.token}"}
    assert anonymous.session.get(f"{anonymous.baseurl}/options", headers=bearer).status_code == 200
    with pytest.raises(RuntimeError) as bad:
        _api(studio).txt2img(prompt="x", seed=1, steps=1, width=4000, height=64)
    assert bad.value.args[0] == 422
    assert "width/height" in json.loads(bad.value.args[1])["detail"]


@pytest.mark.slow
def test_progress_while_rendering_and_interrupt_returns_what_was_drawn(tmp_path, tiny_models):
    """A server whose worker hangs on image 1 (a fault, so it is in flight however fast the
    machine): progress reports the job, interrupt cancels it, the waiting txt2img answers with
    image 0 and says it was interrupted; the server answers other routes meanwhile."""
    import subprocess
    import sys
    import threading
    import time

    from conftest import studio_env, studio_home

    from tools.jobs.processes import stop_worker
    from tools.server.client import running_client
    from tools.server.files import stop_server

    home = studio_home(tmp_path / "home", tiny_models)
    env = {**studio_env(home), "ANIME_WORKER_FAULTS": "hang@1", "ANIME_WORKER_HANG_TIMEOUT": "1h"}
    server = subprocess.Popen([sys.executable, "-m", "assistant.studio", "--background"], env=env)
    deadline = time.monotonic() + 300  # a hang guard only: each loop below waits for an event
    try:
        while (client := running_client(home)) is None:
            assert server.poll() is None and time.monotonic() < deadline, "no server"
            time.sleep(0.1)
        api = _api(client)
        answer: dict = {}
        waiting = threading.Thread(
            target=lambda: answer.update(
                result=api.txt2img(prompt="a kite", seed=8, batch_size=2, **SMALL)
            )
        )
        waiting.start()
        while (progress := api.get_progress())["state"]["job_no"] < 1:
            assert waiting.is_alive() and time.monotonic() < deadline, progress
            time.sleep(0.1)
        assert progress["state"]["job"] and 0.5 <= progress["progress"] < 1.0
        assert api.get_options()["samples_format"] == "png"  # not starved by the waiting request
        api.interrupt()
        waiting.join(timeout=max(1.0, deadline - time.monotonic()))
        result = answer["result"]
        assert len(result.images) == 1 and result.info["all_seeds"] == [8]
        assert any("interrupted" in warning for warning in result.info["warnings"])
    finally:
        stop_server(home / ".anime-chat")
        stop_worker(home / ".anime-chat")
        if server.poll() is None:
            server.kill()


# --- replays of what real integrations send ------------------------------------------------------
def _session(studio) -> tuple[requests.Session, str]:
    """A client as Open WebUI and SillyTavern configure one: `--api-auth` "user:password"."""
    session = requests.Session()
    credentials = base64.b64encode(f"studio:{studio.token}".encode()).decode()
    session.headers["Authorization"] = f"Basic {credentials}"
    return session, f"http://{studio.discovery.host}:{studio.discovery.port}/sdapi/v1"


def _png(encoded: str) -> Image.Image:
    image = Image.open(io.BytesIO(base64.b64decode(encoded)))
    assert image.format == "PNG"
    return image


def test_open_webui_replay(studio):
    """open-webui backend/open_webui/routers/images.py: verify (GET options), list models
    (title, model_name), set the model by posting the whole options back, then txt2img and
    read `images`."""
    session, base = _session(studio)
    options = session.get(f"{base}/options")
    assert options.status_code == 200
    models = [
        {"id": m["title"], "name": m["model_name"]} for m in session.get(f"{base}/sd-models").json()
    ]
    options = options.json()
    assert options["sd_model_checkpoint"] in [model["id"] for model in models]
    # set_image_model: the options it read, with the model, all posted back.
    options["sd_model_checkpoint"] = models[0]["id"]
    assert session.post(f"{base}/options", json=options).status_code == 200
    data = {"prompt": "a lighthouse", "batch_size": 1, "width": 64, "height": 64, "steps": 1}
    answer = session.post(f"{base}/txt2img", json={**data, "negative_prompt": "blurry"})
    assert answer.status_code == 200, answer.text
    assert [_png(image).size for image in answer.json()["images"]] == [(64, 64)]
    assert session.get(f"{base}/options").json()["sd_model_checkpoint"] == models[0]["id"]


def test_sillytavern_replay(studio):
    """SillyTavern src/endpoints/stable-diffusion.js: ping (options), samplers, schedulers,
    upscalers + latent modes, VAEs (sd-vae; Forge's sd-modules may 404), models, then
    /generate: the extension's body (with its own url/auth keys) to txt2img."""
    session, base = _session(studio)
    assert session.get(f"{base}/options").status_code == 200
    assert "Euler a" in [s["name"] for s in session.get(f"{base}/samplers").json()]
    assert "karras" in [s["name"] for s in session.get(f"{base}/schedulers").json()]
    upscalers = [u["name"] for u in session.get(f"{base}/upscalers").json()]
    latent = [u["name"] for u in session.get(f"{base}/latent-upscale-modes").json()]
    assert upscalers[0] == "None" and "Latent" in latent
    vaes = [v["model_name"] for v in session.get(f"{base}/sd-vae").json()]
    titles = [m["title"] for m in session.get(f"{base}/sd-models").json()]
    body = {
        "url": "http://127.0.0.1:7860",
        "auth": f"studio:{studio.token}",
        "prompt": "sakura waving, masterpiece",
        "negative_prompt": "lowres",
        "sampler_name": "DPM++ 2M",
        "scheduler": "karras",
        "steps": 1,
        "cfg_scale": 7,
        "width": 64,
        "height": 64,
        "restore_faces": False,
        "enable_hr": False,
        "hr_upscaler": latent[0],
        "hr_scale": 2,
        "hr_additional_modules": [],
        "denoising_strength": 0.7,
        "hr_second_pass_steps": 0,
        "seed": 77,
        "override_settings": {
            "CLIP_stop_at_last_layers": 2,
            "sd_vae": vaes[0] if vaes else "Automatic",
            "sd_model_checkpoint": titles[0],
        },
        "override_settings_restore_afterwards": True,
        "clip_skip": 2,
        "save_images": True,
        "send_images": True,
        "do_not_save_grid": False,
        "do_not_save_samples": False,
    }
    answer = session.post(f"{base}/txt2img", json=body)
    assert answer.status_code == 200, answer.text
    data = answer.json()
    image = _png(data["images"][0])
    info = json.loads(data["info"])
    assert info["seed"] == 77 and info["characters"] == ["sakura"]
    assert "waving" in info["poses"][0]["tags"]
    assert "Sampler: DPM++ 2M, Schedule type: Karras" in image.info["parameters"]
    # set-model: post the title, then wait for progress 0 with no job queued.
    assert (
        session.post(f"{base}/options", json={"sd_model_checkpoint": titles[0]}).status_code == 200
    )
    idle = session.get(f"{base}/progress").json()
    assert idle["progress"] == 0.0 and idle["state"]["job_count"] == 0


# --- the app in-process: mapping, progress, interrupt --------------------------------------------
@pytest.fixture
def app_client(anime_home: Path) -> TestClient:
    studio = Studio(anime_home, TOKEN, "127.0.0.1")
    client = TestClient(create_app(studio), base_url="http://127.0.0.1:7788")
    client.headers["Authorization"] = f"Bearer {TOKEN}"
    return client


def test_fields_map_to_our_settings_and_declined_ones_are_warned():
    body = A1111Request.model_validate(
        {
            "prompt": "x",
            "sampler_name": "DPM++ 2M",
            "scheduler": "Karras",
            "steps": 3,
            "cfg_scale": 5.5,
            "width": 100,
            "height": 64,
            "negative_prompt": "bad hands",
            "enable_hr": True,
            "hr_scale": 1.5,
            "hr_upscaler": "R-ESRGAN 4x+",
            "denoising_strength": 0.3,
            "restore_faces": True,
            "subseed": 7,
            "subseed_strength": 0.5,
            "alwayson_scripts": {
                "ADetailer": {
                    "args": [True, {"ad_model": "hand_yolov8n.pt", "ad_confidence": 0.5}]
                },
                "ControlNet": {"args": []},
                "Dynamic Prompts": {"args": [True]},
            },
            "override_settings": {"CLIP_stop_at_last_layers": 1, "sd_vae": "Automatic"},
            "some_future_field": {"ignored": True},
        }
    )
    mapping = map_request(body, {"sd_model_checkpoint": "other.safetensors [abc123]"})
    assert mapping.flags["models"] == {
        "checkpoint": "other.safetensors",
        "clip_skip": 1,
        "vae": None,
    }
    output = mapping.flags["output"]
    assert output["sampler"] == "dpmpp_2m_karras" and output["steps"] == 3
    assert output["guidance_scale"] == 5.5 and output["resolution"] == "96x64"
    assert output["negative_prompt"] == "bad hands"
    assert output["hires"] == {"scale": 1.5, "upscaler": "lanczos", "denoise": 0.3}
    assert output["face_detail"] == {"confidence": 0.5}
    text = " | ".join(mapping.warnings)
    for declined in ("R-ESRGAN", "restore_faces", "subseed", "hand_yolov8n", "Dynamic Prompts"):
        assert declined in text
    assert "ControlNet" not in text  # sent empty by clients: off, nothing to warn about
    off = map_request(
        A1111Request.model_validate({"alwayson_scripts": {"ADetailer": {"args": [False]}}}), {}
    )
    assert "face_detail" not in off.flags.get("output", {})


def test_an_unknown_sampler_is_422_naming_it(app_client):
    answer = app_client.post("/sdapi/v1/txt2img", json={"prompt": "x", "sampler_name": "Heun++"})
    assert answer.status_code == 422 and "Heun++" in answer.json()["detail"]


def test_an_unknown_char_tag_is_422_with_suggestions(app_client):
    answer = app_client.post("/sdapi/v1/txt2img", json={"prompt": "<char:nobody> waving"})
    assert answer.status_code == 422 and "nobody" in answer.json()["detail"]


def test_progress_reports_the_running_job_and_interrupt_cancels_it(app_client, anime_home):
    from tools.jobs.journal import JobJournal

    journal = JobJournal.for_state(anime_home / ".anime-chat")
    spec = {"key": "r:0", "request_id": "r", "index": 0, "character": "", "seed": 1}
    spec |= {"pose": {"id": None, "tags": []}, "posture": "txt2img", "plain": True}
    job_id = journal.submit([spec, {**spec, "key": "r:1", "index": 1}], label="a1111")
    idle = app_client.get("/sdapi/v1/progress").json()
    assert idle["progress"] == 0 and idle["state"]["job"] == "" and idle["state"]["job_count"] == 1
    job = journal.claim(worker_pid=12345)
    assert job is not None and job.id == job_id
    journal.beat(job, {"phase": "rendering", "image": 0, "step": 1, "steps": 2})
    running = app_client.get("/sdapi/v1/progress").json()
    assert running["progress"] == 0.25 and running["state"]["job"] == job_id
    assert running["state"]["sampling_step"] == 1 and running["state"]["sampling_steps"] == 2
    assert set(running) == {"progress", "eta_relative", "state", "current_image", "textinfo"}
    # Another door's job (a CLI run) also renders: interrupt stops the A1111 job only.
    other = journal.submit([{**spec, "key": "o:0", "request_id": "o"}], label="anime-gen")
    assert journal.claim(worker_pid=12346).id == other
    assert app_client.post("/sdapi/v1/interrupt").json() == {"cancelled": [job_id]}
    assert journal.get(job_id).state == "cancelled" and journal.get(other).state == "running"


def test_a_plain_image_survives_an_index_rebuild(anime_home):
    """A plain image has no character: the store names it txt2img_NNN.png, links no view, and
    `index rebuild` counts it as ours (not foreign)."""
    from tools.generation.plain import NO_POSE, PLAIN_POSTURE
    from tools.settings import load_settings
    from tools.store.gen_index import GenerationIndex
    from tools.store.index_rebuild import rebuild_index
    from tools.store.output_store import OutputStore

    settings = load_settings(home=anime_home, env={})
    index = GenerationIndex(settings.paths.state / "generations.sqlite")
    meta = {"key": "p:0", "character": "", "posture": PLAIN_POSTURE, "pose": NO_POSE.model_dump()}
    meta |= {"prompt": "a lake", "negative_prompt": "", "seed": 4, "steps": 1, "sampler": "Euler a"}
    meta |= {"guidance_scale": 7.0, "width": 8, "height": 8, "model": "m", "clip_skip": 2}
    meta |= {"controlnet": "c", "controlnet_strength": 0.0, "ipadapter": "i", "ipadapter_weight": 0}
    path = OutputStore(settings, index).save(Image.new("RGB", (8, 8)), meta, key="p:0")
    index.close()
    assert path.name == "txt2img_001.png"
    assert not (settings.paths.output / "characters").exists()
    report = rebuild_index(settings)
    assert report.images == 1 and report.skipped == []


def test_an_options_model_that_does_not_exist_is_refused_at_once(app_client):
    before = app_client.get("/sdapi/v1/options").json()["sd_model_checkpoint"]
    refused = app_client.post("/sdapi/v1/options", json={"sd_model_checkpoint": "nope.safetensors"})
    assert refused.status_code == 422 and "sd_model_checkpoint" in refused.json()["detail"]
    assert app_client.get("/sdapi/v1/options").json()["sd_model_checkpoint"] == before
    no_vae = app_client.post("/sdapi/v1/options", json={"sd_vae": "nope.safetensors"})
    assert no_vae.status_code == 422 and "sd_vae" in no_vae.json()["detail"]
    assert app_client.get("/sdapi/v1/options").json()["sd_vae"] == "Automatic"
    assert app_client.post("/sdapi/v1/options", json={"sd_vae": "None"}).status_code == 200


def test_only_png_jpeg_and_webp_are_decoded(app_client):
    """PIL opens dozens of formats (EPS even runs Ghostscript): a request decodes these three."""
    ppm = b"P6 8 8 255\n" + bytes(8 * 8 * 3)
    encoded = base64.b64encode(ppm).decode()
    answer = app_client.post("/sdapi/v1/png-info", json={"image": encoded})
    assert answer.status_code == 422 and "image" in answer.json()["detail"]
    for kind in ("PNG", "JPEG", "WEBP"):
        buffer = io.BytesIO()
        Image.new("RGB", (8, 8)).save(buffer, format=kind)
        ok = app_client.post(
            "/sdapi/v1/png-info", json={"image": base64.b64encode(buffer.getvalue()).decode()}
        )
        assert ok.status_code == 200, kind


def test_the_prompt_names_characters_by_word_or_tag_and_asks_for_poses(anime_home, reference_image):
    from types import SimpleNamespace

    from tools.characters.library import CharacterLibrary
    from tools.server.a1111_plan import read_prompt
    from tools.settings import load_settings

    library = CharacterLibrary(load_settings(home=anime_home, env={}).paths)
    for name in ("sakura", "yuki"):
        library.add(name, Image.open(reference_image))
    runtime = SimpleNamespace(characters=library)
    notes: list[str] = []
    plan = read_prompt(runtime, "Sakura and <char:yuk> at the beach, yukihime", notes.append)
    assert plan.characters == ["yuki", "sakura"] and plan.pose is None
    assert notes == ["using 'yuki' for 'yuk'"] and "<char" not in plan.prompt
    sitting = read_prompt(runtime, "masterpiece, sakura sitting on a bench", notes.append)
    assert sitting.characters == ["sakura"] and "sitting" in (sitting.pose or "")
    assert "sakura" not in (sitting.pose or "")
    # A LoRA (or any <...> tag) named like a character does not name the character.
    assert read_prompt(runtime, "a street, <lora:sakura:0.7>", notes.append).characters == []


def test_png_info_of_a_foreign_or_broken_image(app_client):
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text("parameters", "a cat\nNegative prompt: dog\nSteps: 20, Seed: 9, Size: 64x64")
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, format="PNG", pnginfo=info)
    encoded = base64.b64encode(buffer.getvalue()).decode()
    answer = app_client.post(
        "/sdapi/v1/png-info", json={"image": f"data:image/png;base64,{encoded}"}
    )
    assert answer.status_code == 200
    parsed = answer.json()["parameters"]
    assert parsed["Prompt"] == "a cat" and parsed["Negative prompt"] == "dog"
    assert parsed["Seed"] == "9"
    broken = app_client.post("/sdapi/v1/png-info", json={"image": "not base64 at all!"})
    assert broken.status_code == 422


def test_png_info_of_a_record_nested_too_deep_is_its_text(app_client):
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text("anime-chat", "[" * 100_000 + "]" * 100_000)  # past the recursion limit
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, format="PNG", pnginfo=info)
    encoded = base64.b64encode(buffer.getvalue()).decode()
    answer = app_client.post("/sdapi/v1/png-info", json={"image": encoded})
    assert answer.status_code == 200
    assert answer.json()["items"]["anime-chat"].startswith("[[[")


def test_embeddings_lists_a_damaged_header_as_shape_zero(app_client, anime_home):
    """A safetensors header is the user's file: one that is valid JSON but not the layout (a
    list, a shape that is not two numbers) is listed with shape 0, not a 500 for every client."""
    import struct

    from tools.engine.extra_networks import embeddings_folder
    from tools.settings import load_settings

    folder = embeddings_folder(load_settings(home=anime_home, env={}).paths)
    folder.mkdir(parents=True)
    headers = {
        "good": {"emb_params": {"dtype": "F32", "shape": [2, 768], "data_offsets": [0, 6144]}},
        "listed": [1, 2],
        "words": {"emb_params": {"shape": ["a", "b"]}},
        "huge": {"emb_params": {"shape": [1e400, 768]}},
        "nested": {"emb_params": {"shape": [[1], {}]}},
    }
    for name, header in headers.items():
        text = json.dumps(header).replace("Infinity", "1e400").encode()
        (folder / f"{name}.safetensors").write_bytes(struct.pack("<Q", len(text)) + text)
    answer = app_client.get("/sdapi/v1/embeddings")
    assert answer.status_code == 200, answer.text
    loaded = answer.json()["loaded"]
    assert (loaded["good"]["vectors"], loaded["good"]["shape"]) == (2, 768)
    for name in ("listed", "words", "huge", "nested"):
        assert (loaded[name]["vectors"], loaded[name]["shape"]) == (0, 0), name


def test_a_data_url_without_its_comma_is_a_422_naming_the_field(app_client):
    """`data:image/png;base64` with nothing after it (a client that cut the payload off)."""
    for path, body, field in [
        ("/sdapi/v1/png-info", {"image": "data:image/png;base64"}, "image"),
        ("/sdapi/v1/img2img", {"prompt": "x", "init_images": ["data:"]}, "init_images"),
    ]:
        answer = app_client.post(path, json=body)
        assert answer.status_code == 422, (path, answer.text)
        assert answer.json()["detail"].startswith(f"{field}: "), answer.text


def test_a1111_fields_we_cannot_honour_are_warned_not_dropped_silently():
    """A1111 has them as request fields (`script_name` runs a script such as X/Y/Z plot; the
    hires pass may use its own prompt, sampler and checkpoint; a refiner): a client that sets
    one must read that it was not done. Their empty or "Use same ..." values, which webuiapi
    sends by default, are no change."""
    body = A1111Request.model_validate(
        {
            "prompt": "x",
            "script_name": "x/y/z plot",
            "script_args": [1, "Steps", "10,20"],
            "enable_hr": True,
            "hr_prompt": "detailed eyes",
            "hr_sampler_name": "DPM++ 2M",
            "hr_checkpoint_name": "other.safetensors",
            "refiner_checkpoint": "refiner.safetensors",
        }
    )
    text = " | ".join(map_request(body, {}).warnings)
    for declined in ("script_name", "hr_prompt", "hr_sampler_name", "hr_checkpoint_name"):
        assert declined in text, declined
    assert "refiner_checkpoint" in text
    defaults = A1111Request.model_validate(
        {
            "prompt": "x",
            "script_name": None,
            "script_args": [],
            "enable_hr": True,
            "hr_prompt": "",
            "hr_negative_prompt": "",
            "hr_sampler_name": "Use same sampler",
            "hr_checkpoint_name": None,
            "hr_scheduler": None,
        }
    )
    quiet = " | ".join(map_request(defaults, {}).warnings)
    assert "script_name" not in quiet and "hr_" not in quiet, quiet


def test_a_null_field_is_the_field_left_out():
    """A1111's request models make every field optional (`modules/api/models.py`:
    `field_type_generator` returns `Optional[...]`), and `seed: null` is a random seed there
    (`get_fixed_seed`): clients that build the body from their own settings send nulls."""
    from tools.server.a1111_mapping import A1111Img2ImgRequest

    nulls = ["prompt", "negative_prompt", "seed", "subseed", "subseed_strength", "batch_size"]
    nulls += ["n_iter", "enable_hr", "hr_scale", "hr_second_pass_steps", "override_settings"]
    nulls += ["alwayson_scripts", "send_images", "save_images", "styles", "steps"]
    body = A1111Request.model_validate({**dict.fromkeys(nulls), "prompt": "a lake"})
    assert body == A1111Request(prompt="a lake")
    assert body.fixed_seed is None and body.count == 1
    assert map_request(body, {}).flags == {}
    img2img = A1111Img2ImgRequest.model_validate({"init_images": ["x"], "denoising_strength": None})
    assert img2img.denoising_strength == 0.75


def test_an_unclosed_char_tag_swallows_no_later_tag(anime_home, reference_image):
    """`<char:NAME:...>`'s tail stops at the next `<`: an unclosed one kept the rest of the
    prompt up to any later `>` (a LoRA tag was dropped with it), and each `<char:` of a prompt
    without `>` scanned to its end (quadratic: 60 KB of them held a request for 8 s)."""
    from types import SimpleNamespace

    from tools.characters.library import CharacterLibrary
    from tools.server.a1111_plan import read_prompt
    from tools.settings import load_settings

    library = CharacterLibrary(load_settings(home=anime_home, env={}).paths)
    library.add("sakura", Image.open(reference_image))
    runtime = SimpleNamespace(characters=library)
    plan = read_prompt(runtime, "<char:sakura: smiling, <lora:blush:0.8> at night", print)
    assert plan.characters == ["sakura"]
    assert "smiling" in plan.prompt and "<lora:blush:0.8>" in plan.prompt
    closed = read_prompt(runtime, "<char:sakura:0.9> smiling, <lora:blush:0.8>", print)
    assert closed.characters == ["sakura"] and closed.prompt == "smiling, <lora:blush:0.8>"
    assert read_prompt(runtime, "<char:" * 5000, print).characters == []


def test_a_client_that_answers_a_basic_challenge_gets_in(studio):
    """A1111's `--api-auth` answers 401 with `WWW-Authenticate: Basic` (FastAPI's HTTPBasic),
    and clients whose credentials answer a challenge (urllib's HTTPBasicAuthHandler, .NET's
    HttpClient credentials) send them only after it; a Bearer-only challenge left them out.
    Other routes keep challenging Bearer alone (a browser tab must not pop a login dialog)."""
    import urllib.error
    import urllib.request

    base = f"http://{studio.discovery.host}:{studio.discovery.port}"
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{base}/sdapi/v1/options", timeout=30)
    assert refused.value.code == 401
    assert refused.value.headers["WWW-Authenticate"].startswith("Basic")
    passwords = urllib.request.HTTPPasswordMgrWithDefaultRealm()
    passwords.add_password(None, base, "anyone", studio.token)
    opener = urllib.request.build_opener(urllib.request.HTTPBasicAuthHandler(passwords))
    with opener.open(f"{base}/sdapi/v1/options", timeout=30) as answer:
        assert answer.status == 200 and "sd_model_checkpoint" in json.loads(answer.read())
    with pytest.raises(urllib.error.HTTPError) as gallery:
        urllib.request.urlopen(f"{base}/api/characters", timeout=30)
    assert gallery.value.headers["WWW-Authenticate"] == "Bearer"


def test_an_options_folder_that_holds_no_model_is_refused_at_once(app_client, tmp_path):
    """Any folder passed as a diffusers model (`/tmp`): options took it, and every later request
    failed in the worker, after three attempts that each reloaded the pipeline."""
    empty = tmp_path / "not-a-model"
    empty.mkdir()
    for field in ("sd_model_checkpoint", "sd_vae"):
        refused = app_client.post("/sdapi/v1/options", json={field: str(empty)})
        assert refused.status_code == 422, (field, refused.text)
        assert refused.json()["detail"].startswith(f"{field}: ") and str(empty) in refused.text
    options = app_client.get("/sdapi/v1/options").json()
    assert options["sd_vae"] == "Automatic" and options["sd_model_checkpoint"] != str(empty)
