"""End to end with `worker.backend: comfyui`: a chat request draws through the fake ComfyUI,
and our store, index and gallery keep the results (issue 24's "must show")."""

from __future__ import annotations

import json
import re
from io import BytesIO
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from assistant.chat_cli import app
from tests.fake_comfyui import CHECKPOINTS, CONTROLNETS, LORAS, FakeComfyUI
from tests.test_ollama_planner import closed_port_host

REQUEST = "draw sakura sitting in a library, 2 images"


@pytest.fixture
def comfy(anime_home, reference_image, monkeypatch, tmp_path):
    from tools.characters.library import CharacterLibrary
    from tools.settings import load_settings

    monkeypatch.setenv("OLLAMA_HOST", closed_port_host())
    CharacterLibrary(load_settings().paths).add("sakura", reference_image)
    with FakeComfyUI(tmp_path / "comfyui") as fake:
        monkeypatch.setenv("ANIME_WORKER_BACKEND", "comfyui")
        monkeypatch.setenv("ANIME_COMFYUI_URL", fake.url)
        monkeypatch.setenv("ANIME_COMFYUI_CHECKPOINT", CHECKPOINTS[0])
        monkeypatch.setenv("ANIME_COMFYUI_CONTROLNET", CONTROLNETS[0])
        monkeypatch.setenv("ANIME_COMFYUI_LORAS", "")
        yield fake


def chat(text: str = REQUEST) -> list[Path]:
    result = CliRunner().invoke(app, ["-c", text])
    assert result.exit_code == 0, result.output
    return [Path(p) for p in re.findall(r"^\s+(\S+\.png)\s", result.stdout, re.MULTILINE)]


def sent_graphs(fake: FakeComfyUI) -> list[dict]:
    return list(fake.received.prompts.values())


def idat(path: Path) -> bytes:
    from tools.store.png_chunks import chunks

    return b"".join(data for kind, data in chunks(path.read_bytes()) if kind == b"IDAT")


def assert_saved_as_comfyui_made_them(paths: list[Path], fake: FakeComfyUI) -> None:
    outputs = sorted(fake.output_dir.iterdir())
    assert len(paths) == 2 == len(outputs)
    made = {idat(p) for p in outputs}
    for path in paths:
        image = Image.open(path)
        record = json.loads(image.text["anime-chat"])
        assert record["character"] == "sakura" and record["posture"] == "sitting"
        assert record["model"] == CHECKPOINTS[0] and record["controlnet"] == CONTROLNETS[0]
        assert f"Model: {CHECKPOINTS[0]}" in image.text["parameters"]
        assert "Seed: " in image.text["parameters"]
        graph = json.loads(image.text["prompt"])  # ComfyUI's own chunk: it loads the graph back
        sampler = next(n for n in graph.values() if n["class_type"] == "KSampler")
        assert sampler["inputs"]["seed"] == record["seed"]
        assert idat(path) in made  # the pixels are ComfyUI's output file's, byte for byte


@pytest.mark.slow
def test_chat_draws_two_images_through_comfyui(comfy, anime_home):
    from tools.gallery.catalog import Catalog
    from tools.gallery.listing import Filters

    paths = chat()
    assert all(p.is_relative_to(anime_home / "anime-output") for p in paths)
    assert all(p.name.startswith("sakura_sitting_") for p in paths)
    assert_saved_as_comfyui_made_them(paths, comfy)
    graphs = sent_graphs(comfy)
    seeds = sorted(g["sampler"]["inputs"]["seed"] for g in graphs)
    assert seeds[1] == seeds[0] + 1
    for graph in graphs:
        assert "sakura" in graph["positive"]["inputs"]["text"]
        assert "library" in graph["positive"]["inputs"]["text"]
        pose = graph["pose"]["inputs"]["image"]
        assert Image.open(BytesIO(comfy.received.uploads[pose])).size == (128, 192)
        assert graph["reference"]["inputs"]["image"] in comfy.received.uploads
    state = anime_home / ".anime-chat"
    rows, _ = Catalog(anime_home / "anime-output", state).page(Filters(character="sakura"))
    assert sorted(row["path"] for row in rows) == sorted(str(p) for p in paths)


@pytest.mark.slow
def test_a_users_workflow_keeps_its_extra_nodes(comfy, anime_home, monkeypatch, tmp_path):
    from tests.test_comfyui import drawing, renumbered
    from tools.comfyui.graph import built_in_graph

    workflow = renumbered(built_in_graph(drawing({"pose": "a.png", "reference": "b.png"})))
    lora = next(i for i, n in workflow.items() if n["class_type"] == "LoraLoader")
    workflow[lora]["inputs"]["lora_name"] = LORAS[1]
    workflow[lora]["inputs"]["strength_model"] = 0.35
    path = tmp_path / "workflow_api.json"
    path.write_text(json.dumps(workflow))
    monkeypatch.setenv("ANIME_COMFYUI_WORKFLOW", str(path))
    paths = chat()
    assert_saved_as_comfyui_made_them(paths, comfy)
    for graph in sent_graphs(comfy):
        assert graph[lora] == workflow[lora]


@pytest.mark.slow
def test_a_users_workflow_gets_the_characters_and_the_prompts_loras(
    comfy, anime_home, monkeypatch, tmp_path
):
    from tests.test_comfyui import drawing, renumbered
    from tools.characters.library import CharacterLibrary
    from tools.comfyui.graph import built_in_graph
    from tools.settings import LoraSetting, load_settings

    CharacterLibrary(load_settings().paths).edit(
        "sakura", loras=[LoraSetting(name="sakura_style", weight=0.8)]
    )
    monkeypatch.delenv("ANIME_COMFYUI_LORAS")  # the image's own LoRA set, not comfyui.loras
    workflow = renumbered(built_in_graph(drawing({"pose": "a.png", "reference": "b.png"})))
    theirs = next(i for i, n in workflow.items() if n["class_type"] == "LoraLoader")
    path = tmp_path / "workflow_api.json"
    path.write_text(json.dumps(workflow))
    monkeypatch.setenv("ANIME_COMFYUI_WORKFLOW", str(path))
    chat(f"{REQUEST} <lora:detail_tweaker:0.4>")
    checkpoint = next(i for i, n in workflow.items() if n["class_type"] == "CheckpointLoaderSimple")
    for graph in sent_graphs(comfy):
        added = {i: n for i, n in graph.items() if i not in workflow}
        (ours,) = added.values()  # detail_tweaker: their graph loads it already, not twice
        assert ours["class_type"] == "LoraLoader" and ours["inputs"]["lora_name"] == LORAS[1]
        assert ours["inputs"]["strength_model"] == 0.8 == ours["inputs"]["strength_clip"]
        assert ours["inputs"]["model"] == [checkpoint, 0]
        assert graph[theirs]["inputs"]["model"] == [next(iter(added)), 0]  # theirs after ours
        assert {k: v for k, v in graph[theirs]["inputs"].items() if k not in ("model", "clip")} == {
            k: v for k, v in workflow[theirs]["inputs"].items() if k not in ("model", "clip")
        }


@pytest.mark.slow
def test_comfyui_killed_mid_prompt_finishes_the_job_with_every_image_once(comfy):
    comfy.faults.append("die")
    paths = chat()
    assert comfy.deaths == 1 and len(sent_graphs(comfy)) == 3
    assert len(set(paths)) == 2
    assert_saved_as_comfyui_made_them(paths, comfy)


@pytest.mark.slow
def test_a_missing_node_pack_is_one_line_and_exit_1(tmp_path, comfy):
    with FakeComfyUI(tmp_path / "bare", packs=()) as bare, pytest.MonkeyPatch.context() as env:
        env.setenv("ANIME_COMFYUI_URL", bare.url)
        result = CliRunner().invoke(app, ["-c", REQUEST])
        assert not bare.received.prompts
    assert result.exit_code == 1
    assert "cubiq/ComfyUI_IPAdapter_plus" in result.output
    assert "Traceback" not in result.output


@pytest.mark.slow
def test_a_hung_comfyui_is_interrupted_and_the_image_retried(comfy, anime_home, monkeypatch):
    from tools.jobs.journal import JobJournal

    # Long enough that the watchdog never takes a busy CPU (loading, gating) for a hang.
    monkeypatch.setenv("ANIME_WORKER_HANG_TIMEOUT", "5s")
    monkeypatch.setenv("ANIME_WORKER_RETRY_BACKOFF", "0.1s")
    comfy.faults.append("hang")
    paths = chat()
    assert comfy.received.interrupts == 1 and len(sent_graphs(comfy)) == 3
    assert_saved_as_comfyui_made_them(paths, comfy)
    (job,) = JobJournal.for_state(anime_home / ".anime-chat").list()
    assert job.attempts >= 1 and job.state == "done"


def start_job(settings, count: int = 1):
    """Queue a job for sakura and run it on a worker thread: (journal, job id, thread)."""
    import threading

    from tools.generation.runtime import Runtime
    from tools.generation.specs import GenerationRequest
    from tools.jobs.client import submit_job
    from tools.jobs.worker import Worker

    specs = Runtime(settings).planner.plan(
        GenerationRequest(character="sakura", pose="sitting", count=count, seed=7)
    )
    journal, job_id = submit_job(settings, specs, label="comfyui test")
    worker = Worker(settings)
    thread = threading.Thread(target=worker.run_job, args=(journal.get(job_id),), daemon=True)
    thread.start()
    return journal, job_id, thread


def wait_for(condition, what: str, limit: float = 120.0):
    """Poll a condition on the journal (an upper bound only, not a timed assertion)."""
    import time

    deadline = time.monotonic() + limit
    while not (value := condition()):
        assert time.monotonic() < deadline, f"never saw {what}"
        time.sleep(0.05)
    return value


@pytest.mark.slow
def test_cancelling_the_job_interrupts_its_comfyui_prompt(comfy, anime_home):
    from tools.settings import load_settings

    comfy.faults.append("hang")
    journal, job_id, thread = start_job(load_settings())
    assert comfy.hanging.wait(120)

    # The job's progress shows ComfyUI's own steps (the fake holds after step 1 of 4).
    def steps() -> tuple:
        progress = journal.get(job_id).progress
        return progress.get("step"), progress.get("steps")

    wait_for(lambda: steps() == (1, 4), "ComfyUI's step 1/4 in the job's progress")
    journal.cancel(job_id)
    thread.join(120)
    assert not thread.is_alive()
    assert comfy.received.interrupts == 1
    assert journal.get(job_id).state == "cancelled"
    assert not list((anime_home / "anime-output").rglob("*.png"))


@pytest.mark.slow
def test_a_job_waits_for_comfyui_to_start_and_says_so(anime_home, reference_image, tmp_path):
    import socket

    from tools.characters.library import CharacterLibrary
    from tools.settings import load_settings

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {
        "ANIME_WORKER_BACKEND": "comfyui",
        "ANIME_COMFYUI_URL": f"http://127.0.0.1:{port}",
        "ANIME_COMFYUI_CHECKPOINT": CHECKPOINTS[0],
        "ANIME_COMFYUI_CONTROLNET": CONTROLNETS[0],
        "ANIME_COMFYUI_LORAS": "",
    }
    settings = load_settings(env=env, home=anime_home)
    CharacterLibrary(settings.paths).add("sakura", reference_image)
    journal, job_id, thread = start_job(settings)
    waiting = f"waiting for ComfyUI at http://127.0.0.1:{port}"
    wait_for(lambda: journal.get(job_id).progress.get("phase") == waiting, waiting)
    with FakeComfyUI(tmp_path / "late", port=port) as late:
        thread.join(120)
        assert not thread.is_alive()
        job = journal.get(job_id)
        assert job.state == "done", job.error
        assert len(late.received.prompts) == 1


@pytest.mark.slow
def test_without_the_gate_no_local_model_is_needed(comfy, monkeypatch):
    monkeypatch.setenv("ANIME_QUALITY_ENABLED", "false")
    monkeypatch.setenv("ANIME_MODELS_CHECKPOINT", "only_in_comfyui.safetensors")
    monkeypatch.setenv("ANIME_MODELS_CONTROLNET", "only_in_comfyui.pth")
    monkeypatch.setenv("ANIME_MODELS_IPADAPTER", "nowhere/ip-adapter")
    paths = chat()
    assert_saved_as_comfyui_made_them(paths, comfy)
