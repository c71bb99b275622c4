"""The ComfyUI backend against a fake ComfyUI (tests/fake_comfyui.py, a real aiohttp server on
127.0.0.1): graphs, the user's workflow, restart detection, hangs, refusals, hostile answers."""

from __future__ import annotations

import json
from io import BytesIO
from pathlib import Path

import pytest
from PIL import Image

from tests.fake_comfyui import CHECKPOINTS, CONTROLNETS, LORAS, FakeComfyUI
from tools.comfyui.backend import ComfyUIHang, PromptRunner
from tools.comfyui.client import ComfyUIClient, ComfyUIError
from tools.comfyui.graph import Drawing, built_in_graph
from tools.comfyui.workflow import fill_workflow, find_slots, load_workflow
from tools.errors import UserError
from tools.store.png_chunks import with_text_chunks

POSE = Image.new("RGB", (64, 96), (0, 0, 0))


def png_of(image: Image.Image) -> bytes:
    buffer = BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def drawing(names: dict[str, str], **changes) -> Drawing:
    values = dict(
        prompt="masterpiece, sakura, sitting, library", negative_prompt="lowres", seed=1234,
        steps=4, cfg=7.0, sampler="dpmpp_2m_karras", width=64, height=96, clip_skip=2,
        controlnet_strength=0.5, ipadapter_weight=0.95, pose_image=names["pose"],
        reference_image=names.get("reference"), checkpoint=CHECKPOINTS[0],
        controlnet=CONTROLNETS[0], ipadapter_preset="PLUS (high strength)",
        loras=((LORAS[0], 0.7),),
    )  # fmt: skip
    values.update(changes)
    return Drawing(**values)


def uploads() -> dict[str, tuple[str, bytes]]:
    return {"pose": ("pose.png", png_of(POSE)), "reference": ("ref.png", png_of(POSE))}


def built_in(**changes):
    def make(names):
        graph = built_in_graph(drawing(names, **changes))
        return graph, set(graph), "save"

    return make


@pytest.fixture
def comfy(tmp_path: Path):
    with FakeComfyUI(tmp_path / "comfyui") as fake:
        yield fake


def runner(url: str, phases: list[str] | None = None, **kwargs) -> PromptRunner:
    options = {"timeout": 60.0, "hang_timeout": 60.0} | kwargs
    sink = phases.append if phases is not None else (lambda _text: None)
    return PromptRunner(ComfyUIClient(url, timeout=10), phase=sink, **options)


def test_fresh_home_defaults_and_environment(tmp_path):
    from tools.settings import load_settings

    settings = load_settings(env={}, home=tmp_path)
    assert settings.worker.backend == "diffusers"
    assert settings.comfyui.urls == ["http://127.0.0.1:8188"]
    assert settings.comfyui.workflow is None and settings.comfyui.loras is None
    assert settings.comfyui.ipadapter_preset == "PLUS (high strength)"
    env = {"ANIME_WORKER_BACKEND": "comfyui", "ANIME_COMFYUI_URL": "http://127.0.0.1:9/"}
    settings = load_settings(env=env, home=tmp_path)
    assert settings.worker.backend == "comfyui" and settings.comfyui.urls == ["http://127.0.0.1:9"]
    from tools.errors import ConfigError

    with pytest.raises(ConfigError, match="comfyui.url"):
        load_settings(env={"ANIME_COMFYUI_URL": "127.0.0.1:8188"}, home=tmp_path)


def test_built_in_graph_runs_and_the_output_arrives_byte_for_byte(comfy):
    steps: list[tuple[int, int]] = []
    output = runner(comfy.url).run(built_in(), uploads(), lambda s, n: steps.append((s, n)))
    (graph,) = comfy.received.prompts.values()
    assert graph == output.graph
    assert graph["sampler"]["inputs"]["seed"] == 1234
    assert graph["sampler"]["inputs"]["sampler_name"] == "dpmpp_2m"
    assert graph["sampler"]["inputs"]["scheduler"] == "karras"
    assert graph["positive"]["inputs"]["text"].startswith("masterpiece, sakura")
    assert graph["lora0"]["inputs"]["lora_name"] == LORAS[0]
    assert graph["clip_skip"]["inputs"]["stop_at_clip_layer"] == -2
    assert comfy.received.uploads[graph["pose"]["inputs"]["image"]] == png_of(POSE)
    (saved,) = (comfy.output_dir).iterdir()
    assert output.png == saved.read_bytes()
    assert steps[-1] == (4, 4)


def test_a_missing_ipadapter_pack_is_one_line_and_nothing_is_queued(tmp_path):
    with FakeComfyUI(tmp_path / "c", packs=()) as fake:
        with pytest.raises(UserError) as caught:
            runner(fake.url).run(built_in(), uploads(), None)
        assert not fake.received.prompts
    message = caught.value.message
    assert "cubiq/ComfyUI_IPAdapter_plus" in message and "\n" not in message
    assert "custom_nodes" in caught.value.hint


def test_a_checkpoint_comfyui_lacks_lists_the_names_it_has(comfy):
    with pytest.raises(UserError) as caught:
        runner(comfy.url).run(built_in(checkpoint="nope.safetensors"), uploads(), None)
    assert "nope.safetensors" in str(caught.value) and CHECKPOINTS[1] in str(caught.value)
    assert "comfyui.checkpoint" in caught.value.hint
    assert not comfy.received.prompts


def test_comfyuis_own_refusal_is_one_line_with_its_node_errors(comfy):
    def make(names):
        graph = built_in_graph(drawing(names))
        graph["sampler"]["inputs"]["scheduler"] = "bogus"  # a user node we do not check
        return graph, set(), "save"

    with pytest.raises(UserError) as caught:
        runner(comfy.url).run(make, uploads(), None)
    message = caught.value.message
    assert "Prompt outputs failed validation" in message and "bogus" in message
    assert "node sampler (KSampler)" in message and "\n" not in message


def test_comfyui_killed_mid_prompt_gets_the_image_submitted_again(comfy):
    comfy.faults.append("die")
    phases: list[str] = []
    output = runner(comfy.url, phases).run(built_in(), uploads(), None)
    assert comfy.deaths == 1 and len(comfy.received.prompts) == 2
    assert [p.name for p in comfy.output_dir.iterdir()] == ["anime-chat_00001_.png"]
    assert output.png == (comfy.output_dir / "anime-chat_00001_.png").read_bytes()


def test_no_progress_for_hang_timeout_interrupts(comfy):
    comfy.faults.append("hang")
    with pytest.raises(ComfyUIHang):
        runner(comfy.url, hang_timeout=1.0).run(built_in(), uploads(), None)
    assert comfy.received.interrupts == 1


def test_an_execution_error_is_reported(comfy):
    comfy.faults.append("error")
    with pytest.raises(ComfyUIError, match="KSampler: CUDA out of memory"):
        runner(comfy.url).run(built_in(), uploads(), None)


def test_an_execution_error_while_the_socket_was_down_is_reported_from_history(comfy):
    comfy.faults.append("drop+error")
    with pytest.raises(ComfyUIError, match="KSampler: CUDA out of memory"):
        runner(comfy.url).run(built_in(), uploads(), None)
    assert len(comfy.received.prompts) == 1


def test_cancelling_our_job_interrupts_our_prompt(comfy):
    class Cancelled(Exception):
        pass

    def on_step(step: int, steps: int) -> None:
        raise Cancelled

    comfy.faults.append("hang")
    with pytest.raises(Cancelled):
        runner(comfy.url).run(built_in(), uploads(), on_step)
    assert comfy.received.interrupts == 1


def test_unreachable_comfyui_waits_then_fails_in_one_line():
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{probe.getsockname()[1]}"
    phases: list[str] = []
    with pytest.raises(UserError) as caught:
        runner(url, phases, timeout=1.0).run(built_in(), uploads(), None)
    assert url in caught.value.message and "\n" not in caught.value.message
    assert f"waiting for ComfyUI at {url}" in phases


@pytest.mark.parametrize(
    "entry",
    [
        {"outputs": {"save": {"images": [{"filename": "../../etc/passwd", "type": "output"}]}}},
        {"outputs": {"save": {"images": [{"filename": "x.png", "subfolder": "/etc"}]}}},
        {"outputs": {"save": {"images": "garbage"}}},
        {"outputs": []},
    ],
)
def test_a_hostile_history_is_refused(comfy, entry):
    class Hostile(PromptRunner):
        def _history(self, prompt_id, deadline):
            return entry

    hostile = Hostile(ComfyUIClient(comfy.url), timeout=30, hang_timeout=30, phase=print)
    with pytest.raises(ComfyUIError, match="history"):
        hostile.run(built_in(), uploads(), None)


def test_an_output_that_is_not_a_png_is_refused(comfy):
    def make(names):
        graph = built_in_graph(drawing(names))
        return graph, set(graph), "save"

    class NotPng(PromptRunner):
        def _history(self, prompt_id, deadline):
            (comfy.input_dir / "fake.png").write_bytes(b"<html>no</html>")
            return {"outputs": {"save": {"images": [{"filename": "fake.png", "type": "input"}]}}}

    with pytest.raises(ComfyUIError, match="odd output|not a PNG"):
        NotPng(ComfyUIClient(comfy.url), timeout=30, hang_timeout=30, phase=print).run(
            make, uploads(), None
        )


# -- the user's workflow --------------------------------------------------------------------------


def renumbered(graph: dict) -> dict:
    ids = {old: str(i + 10) for i, old in enumerate(graph)}
    out = {}
    for old, node in graph.items():
        inputs = {
            k: [ids[v[0]], v[1]] if isinstance(v, list) else v for k, v in node["inputs"].items()
        }
        out[ids[old]] = {**node, "inputs": inputs}
    return out


@pytest.mark.parametrize("titled", [True, False])
def test_workflow_slots_are_filled_and_every_other_value_kept(tmp_path, titled):
    base = built_in_graph(drawing({"pose": "old_pose.png", "reference": "old_ref.png"}))
    base["sampler"]["inputs"]["denoise"] = 0.93
    if not titled:
        for node in base.values():
            node["_meta"] = {"title": node["class_type"]}
    workflow = renumbered(base)
    path = tmp_path / "workflow_api.json"
    path.write_text(json.dumps(workflow))
    loaded = load_workflow(path)
    graph, slots = fill_workflow(loaded, drawing({"pose": "p.png"}, seed=77, prompt="new"))
    assert graph[slots["sampler"]]["inputs"]["seed"] == 77
    assert graph[slots["sampler"]]["inputs"]["denoise"] == 0.93
    assert graph[slots["positive"]]["inputs"]["text"] == "new"
    assert graph[slots["negative"]]["inputs"]["text"] == "lowres"
    assert graph[slots["pose"]]["inputs"]["image"] == "p.png"
    lora = next(n for n in graph.values() if n["class_type"] == "LoraLoader")
    assert lora == next(n for n in workflow.values() if n["class_type"] == "LoraLoader")


def test_a_users_workflow_reaches_comfyui_with_its_extra_nodes(comfy, tmp_path):
    workflow = renumbered(built_in_graph(drawing({"pose": "a.png", "reference": "b.png"})))
    extra = {"model": ["10", 0], "clip": ["10", 1], "lora_name": LORAS[1], "strength_model": 0.4}
    workflow["99"] = {"class_type": "LoraLoader", "inputs": extra | {"strength_clip": 0.4}}

    def make(names):
        graph, slots = fill_workflow(workflow, drawing(names, seed=5))
        return graph, set(slots.values()), slots["save"]

    runner(comfy.url).run(make, uploads(), None)
    (sent,) = comfy.received.prompts.values()
    assert sent["99"] == workflow["99"]
    assert sent[find_slots(workflow)["sampler"]]["inputs"]["seed"] == 5


def test_loras_go_between_a_workflows_checkpoint_loader_and_its_consumers():
    from tools.comfyui.workflow import insert_loras

    workflow = renumbered(built_in_graph(drawing({"pose": "a.png"}, loras=())))
    without, _ = fill_workflow(workflow, drawing({"pose": "p.png"}, loras=()))
    loras = ((LORAS[0], 0.7), (LORAS[1], -0.5))
    graph, slots = fill_workflow(workflow, drawing({"pose": "p.png"}, loras=loras))
    first, second = slots["lora0"], slots["lora1"]
    assert graph[first]["inputs"] == {"model": ["10", 0], "clip": ["10", 1],
        "lora_name": LORAS[0], "strength_model": 0.7, "strength_clip": 0.7}  # fmt: skip
    assert graph[second]["inputs"] == {"model": [first, 0], "clip": [first, 1],
        "lora_name": LORAS[1], "strength_model": -0.5, "strength_clip": -0.5}  # fmt: skip
    # Every other node as it was, its links to the checkpoint's MODEL / CLIP now to our last
    # LoRA (its VAE, output 2, still the checkpoint's).
    relinked = {("10", 0): [second, 0], ("10", 1): [second, 1]}
    assert {i: n for i, n in graph.items() if i not in (first, second)} == {
        i: _relinked(n, relinked) for i, n in without.items()
    }
    assert any(v == ["10", 2] for n in graph.values() for v in n["inputs"].values())
    two = dict(workflow, **{"99": {"class_type": "CheckpointLoaderSimple", "inputs": {}}})
    with pytest.raises(UserError, match="2 checkpoint loaders") as error:
        insert_loras(two, loras)
    assert "anime:checkpoint" in (error.value.hint or "")
    two["99"]["_meta"] = {"title": "anime:checkpoint"}
    assert insert_loras(two, loras) == ["anime_lora0", "anime_lora1"]
    assert two["anime_lora0"]["inputs"]["model"] == ["99", 0]
    # A LoRA the workflow loads from a subfolder (ComfyUI's name for it) is not added again.
    theirs = dict(workflow, **{"97": {"class_type": "LoraLoader", "inputs": {
        "model": ["10", 0], "clip": ["10", 1], "lora_name": f"chars\\{LORAS[1]}"}}})  # fmt: skip
    assert insert_loras(theirs, loras) == ["anime_lora0"]
    assert theirs["anime_lora0"]["inputs"]["lora_name"] == LORAS[0]
    # The title on a node that is no checkpoint loader names that node, not "1 loader".
    unet = dict(workflow, **{"98": {"class_type": "UNETLoader", "inputs": {},
                                    "_meta": {"title": "anime:checkpoint"}}})  # fmt: skip
    with pytest.raises(UserError, match="'anime:checkpoint' is a UNETLoader") as error:
        insert_loras(unet, loras)
    assert "CheckpointLoaderSimple" in (error.value.hint or "")


def _relinked(node: dict, links: dict) -> dict:
    inputs = {k: links.get(tuple(v), v) if isinstance(v, list) else v
              for k, v in node["inputs"].items()}  # fmt: skip
    return {**node, "inputs": inputs}


def test_ambiguous_or_hostile_workflows_are_one_line(tmp_path):
    path = tmp_path / "w.json"
    two_samplers = renumbered(built_in_graph(drawing({"pose": "a.png"})))
    for node in two_samplers.values():
        node["_meta"] = {"title": ""}
    sampler_id = next(i for i, n in two_samplers.items() if n.get("class_type") == "KSampler")
    two_samplers["98"] = json.loads(json.dumps(two_samplers[sampler_id]))
    with pytest.raises(UserError, match="anime:sampler") as caught:
        find_slots(two_samplers)
    assert "anime:sampler" in caught.value.hint
    cases = {
        "not json": "{",
        "ui format": json.dumps({"nodes": [], "links": []}),
        "wrong types": json.dumps({"1": {"class_type": 3, "inputs": {}}}),
        "dangling link": json.dumps({"1": {"class_type": "X", "inputs": {"a": ["7", 0]}}}),
        "a list": json.dumps([1, 2]),
    }
    for text in cases.values():
        path.write_text(text)
        with pytest.raises(UserError) as caught:
            load_workflow(path)
        assert "\n" not in caught.value.message
    path.write_bytes(b" " * (9 * 1024 * 1024))
    with pytest.raises(UserError, match="MB"):
        load_workflow(path)


def test_a_node_without_inputs_is_read_as_one_with_none(tmp_path):
    # ComfyUI's execution.py reads `prompt[id]["inputs"]` of every node: we give it one.
    from tools.comfyui.engine import _only_value

    path = tmp_path / "w.json"
    path.write_text(json.dumps({"1": {"class_type": "CheckpointLoaderSimple"}}))
    workflow = load_workflow(path)
    assert workflow["1"]["inputs"] == {}
    assert _only_value(workflow, "CheckpointLoaderSimple", "ckpt_name") is None  # no name


def test_cyclic_links_end(tmp_path):
    cyclic = {
        "1": {"class_type": "ConditioningCombine", "inputs": {"conditioning": ["2", 0]}},
        "2": {"class_type": "ConditioningCombine", "inputs": {"conditioning": ["1", 0]}},
        "3": {"class_type": "KSampler", "inputs": {"positive": ["1", 0], "negative": ["2", 0]}},
        "4": {"class_type": "EmptyLatentImage", "inputs": {}},
        "5": {"class_type": "SaveImage", "inputs": {}},
    }
    with pytest.raises(UserError, match="'positive'"):
        find_slots(cyclic)


# -- keeping ComfyUI's PNG ------------------------------------------------------------------------


def test_text_chunks_leave_the_pixels_byte_for_byte():
    from tests.fake_comfyui import render_png

    png = render_png(3, 16, 24, {"1": {"class_type": "SaveImage"}})
    out = with_text_chunks(png, {"parameters": "sakura ✿", "prompt": "{}"})
    start = png.index(b"IDAT") - 4
    idat = png[start : start + 12 + int.from_bytes(png[start : start + 4], "big")]
    assert idat in out
    image = Image.open(BytesIO(out))
    assert image.text["parameters"] == "sakura ✿" and image.text["prompt"] == "{}"
    assert image.tobytes() == Image.open(BytesIO(png)).tobytes()


def test_a_deeply_nested_workflow_is_one_line(tmp_path):
    path = tmp_path / "deep.json"
    path.write_text("[" * 200_000 + "]" * 200_000)
    with pytest.raises(UserError, match="not JSON"):
        load_workflow(path)


@pytest.mark.parametrize(
    "png",
    [
        b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\x0dIHDR",  # truncated
        b"\x89PNG\r\n\x1a\n",  # no chunks at all
    ],
)
def test_a_broken_png_from_comfyui_is_refused_before_the_store_sees_it(png):
    from tools.comfyui.engine import _decode

    with pytest.raises(ComfyUIError, match="not a readable PNG"):
        _decode(png)


def test_a_huge_png_from_comfyui_is_refused():
    import struct
    import zlib

    from tools.comfyui.engine import _decode

    header = struct.pack(">IIBBBBB", 60000, 60000, 8, 2, 0, 0, 0)
    chunk = lambda kind, data: (  # noqa: E731
        struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    )
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b"")
    with pytest.raises(ComfyUIError, match="too large|not a readable"):
        _decode(png)


def queue_theirs(comfy: FakeComfyUI) -> str:
    """Another client's prompt, queued ahead of ours."""
    other = ComfyUIClient(comfy.url, client_id="someone-else")
    status, answer = other.queue_prompt(built_in_graph(drawing({"pose": "none.png"})))
    assert status == 400  # their upload is missing; now queue a valid one of theirs
    names = {"pose": other.upload_image("p.png", png_of(POSE))}
    status, answer = other.queue_prompt(built_in_graph(drawing(names)))
    assert status == 200
    return answer["prompt_id"]


def test_ours_waits_its_turn_behind_another_clients_long_prompt(comfy):
    # ComfyUI sends a prompt's messages to its own client only (server.py `send_sync(...,
    # self.client_id)`): while theirs runs for long, our socket is silent and ours is fine.
    comfy.faults.append("hold")
    queue_theirs(comfy)
    first: list[float] = []

    def phase(text: str) -> None:
        import time

        first.append(first[0] if first else time.monotonic())
        if time.monotonic() - first[0] > 4 * 0.5:  # silent for four hang_timeouts: let it go
            comfy.release.set()

    ours = PromptRunner(ComfyUIClient(comfy.url), timeout=60, hang_timeout=0.5, phase=phase)
    output = ours.run(built_in(), uploads(), None)
    assert output.png.startswith(b"\x89PNG") and comfy.release.is_set()
    assert len(comfy.received.prompts) == 2  # theirs and ours, ours never queued again
    assert comfy.received.interrupts == 0


def test_a_queue_cleared_by_another_client_gets_ours_submitted_again(comfy):
    comfy.faults.append("hold")
    queue_theirs(comfy)
    cleared: list[bool] = []

    def phase(_text: str) -> None:
        if not cleared and len(comfy.received.prompts) == 2:  # ours waits behind theirs
            cleared.append(ComfyUIClient(comfy.url).post_json("/queue", {"clear": True})[0] == 200)
        if len(comfy.received.prompts) == 3:  # ours again
            comfy.release.set()

    ours = PromptRunner(ComfyUIClient(comfy.url), timeout=60, hang_timeout=0.5, phase=phase)
    output = ours.run(built_in(), uploads(), None)
    assert cleared == [True] and output.png.startswith(b"\x89PNG")
    assert comfy.received.interrupts == 0


def test_behind_another_clients_hung_prompt_ours_ends_at_comfyui_timeout(comfy):
    comfy.faults.append("hang")
    queue_theirs(comfy)
    phases: list[str] = []
    with pytest.raises(ComfyUIError, match="comfyui.timeout"):
        runner(comfy.url, phases, timeout=2.0, hang_timeout=0.5).run(built_in(), uploads(), None)
    assert set(phases) == {"queued in ComfyUI"}  # each turn beats, ours never ran
    # The hang was theirs (running): ours was only taken out of the queue, not interrupted.
    assert comfy.received.interrupts == 0
    assert [item[1] for item in comfy.queue._queue] == []  # type: ignore[attr-defined]


# -- anime-gen doctor -----------------------------------------------------------------------------


def test_doctor_reports_comfyui_version_nodes_and_models(tmp_path):
    from assistant.doctor import check_comfyui
    from tools.settings import load_settings

    with FakeComfyUI(tmp_path / "c") as fake, FakeComfyUI(tmp_path / "b", packs=()) as bare:
        env = {
            "ANIME_WORKER_BACKEND": "comfyui",
            "ANIME_COMFYUI_URL": f"{fake.url},{bare.url}",
            "ANIME_COMFYUI_CHECKPOINT": CHECKPOINTS[1],
            "ANIME_COMFYUI_CONTROLNET": CONTROLNETS[0],
        }
        good, lacking = check_comfyui(load_settings(env=env, home=tmp_path))
        assert good.status == "ok" and "0.3.99-fake" in good.detail
        assert lacking.status == "fail" and "cubiq/ComfyUI_IPAdapter_plus" in lacking.detail
        env["ANIME_COMFYUI_URL"] = fake.url
        del env["ANIME_COMFYUI_CHECKPOINT"]
        (unset,) = check_comfyui(load_settings(env=env, home=tmp_path))
        assert unset.status == "fail" and CHECKPOINTS[0] in unset.detail
        assert "comfyui.checkpoint" in unset.action
    (gone,) = check_comfyui(load_settings(env=env, home=tmp_path))
    assert gone.status == "fail" and "does not answer" in gone.detail
    assert check_comfyui(load_settings(env={}, home=tmp_path)) == []


def test_hostile_names_in_a_workflow_stay_one_short_line(comfy, tmp_path):
    hostile = "Evil\nNode" * 10_000
    workflow = renumbered(built_in_graph(drawing({"pose": "a.png", "reference": "b.png"})))
    workflow["66"] = {"class_type": hostile, "inputs": {}}

    def make(names):
        graph, slots = fill_workflow(workflow, drawing(names))
        return graph, set(slots.values()), slots["save"]

    with pytest.raises(UserError) as caught:
        runner(comfy.url).run(make, uploads(), None)
    assert "\n" not in caught.value.message and len(caught.value.message) < 300
    assert not comfy.received.prompts
    path = tmp_path / "w.json"
    path.write_text(json.dumps({hostile: {"class_type": 1}}))
    with pytest.raises(UserError) as caught:
        load_workflow(path)
    assert "\n" not in caught.value.message and len(caught.value.message) < 400


def test_an_oversized_output_is_refused_without_reading_it_all(comfy, monkeypatch):
    import tools.comfyui.client as client_module

    monkeypatch.setattr(client_module, "MAX_IMAGE_BYTES", 1024)
    with pytest.raises(ComfyUIError, match="over"):
        runner(comfy.url).run(built_in(width=256, height=256), uploads(), None)


def test_several_comfyui_urls_act_as_several_workers(tmp_path):
    from tools.jobs.supervisor import worker_slots
    from tools.jobs.worker import pin_comfyui
    from tools.settings import load_settings

    urls = "http://127.0.0.1:8188,http://127.0.0.1:8189"
    env = {"ANIME_WORKER_BACKEND": "comfyui", "ANIME_COMFYUI_URL": urls}
    job = load_settings(env=env, home=tmp_path)
    slots = worker_slots(job)
    assert slots == {
        "comfyui0": {"ANIME_COMFYUI_URL": "http://127.0.0.1:8188"},
        "comfyui1": {"ANIME_COMFYUI_URL": "http://127.0.0.1:8189"},
    }
    own = load_settings(env={**env, **slots["comfyui1"]}, home=tmp_path)
    assert pin_comfyui(job, own).comfyui.urls == ["http://127.0.0.1:8189"]
    assert pin_comfyui(job, job) is job
    elsewhere = load_settings(env={**env, "ANIME_COMFYUI_URL": "http://10.0.0.9:1"}, home=tmp_path)
    assert pin_comfyui(job, elsewhere) is job


# -- comfyui.root: the diffusers side finds ComfyUI's model files ---------------------------------


def test_comfyui_root_is_searched_for_checkpoints_and_controlnets(tmp_path, tiny_models):
    import shutil

    from tools.engine.loading import ModelSources
    from tools.settings import load_settings

    root = tmp_path / "ComfyUI"
    (root / "models" / "checkpoints").mkdir(parents=True)
    shutil.copyfile(tiny_models / "sd15.safetensors", root / "models/checkpoints/mine.safetensors")
    webui = tmp_path / "webui"
    shutil.copytree(tiny_models / "controlnet", webui / "models/ControlNet/openpose")
    (root / "extra_model_paths.yaml").write_text(
        f"a111:\n  base_path: {webui}\n  controlnet: |\n    models/ControlNet\n    models/none\n"
    )
    env = {
        "ANIME_COMFYUI_ROOT": str(root),
        "ANIME_MODELS_CHECKPOINT": "mine.safetensors",
        "ANIME_MODELS_CONTROLNET": "openpose",
    }
    sources = ModelSources(load_settings(env=env, home=tmp_path / "home"))
    assert sources.checkpoint.location == str(root / "models/checkpoints/mine.safetensors")
    assert sources.controlnet.location == str(webui / "models/ControlNet/openpose")
    assert sources.family == "sd15"
    (root / "extra_model_paths.yaml").write_text("a111: [unclosed")
    broken = ModelSources(load_settings(env=env, home=tmp_path / "home"))
    assert broken.checkpoint.kind == "file"


def test_garbage_object_info_is_no_traceback():
    from tools.comfyui.graph import check_graph, missing_model

    graph = built_in_graph(drawing({"pose": "p.png", "reference": "r.png"}))
    garbage = {name: ["not", "a", "node"] for name in {n["class_type"] for n in graph.values()}}
    check_graph(graph, garbage, set(graph))  # no lists to judge by: ComfyUI will say
    garbage["CheckpointLoaderSimple"] = {"input": {"required": {"ckpt_name": "oops"}}}
    assert (
        "ComfyUI has: none"
        in missing_model("checkpoint", "CheckpointLoaderSimple", "ckpt_name", garbage).message
    )


def test_an_output_too_large_by_its_png_header_is_refused_before_it_is_read(comfy):
    comfy.huge_view = (100_000, 100_000)
    with pytest.raises(ComfyUIError, match="100000x100000: too large"):
        runner(comfy.url).run(built_in(), uploads(), None)
    assert comfy.view_sent < 32 * 1024 * 1024  # what the sockets buffer, not 256 MB


def test_an_outputs_bytes_are_capped_by_what_its_size_can_hold():
    from tools.comfyui.client import MAX_IMAGE_BYTES, MAX_JSON_BYTES, png_byte_cap

    head = png_of(POSE)[:24]
    assert (
        png_byte_cap(head, "a.png") == POSE.width * POSE.height * 8 + POSE.height + MAX_JSON_BYTES
    )
    largest = head[:16] + (4096).to_bytes(4, "big") * 2
    assert png_byte_cap(largest, "a.png") == 4096 * 4096 * 8 + 4096 + MAX_JSON_BYTES
    assert png_byte_cap(largest, "a.png") < MAX_IMAGE_BYTES
    with pytest.raises(ComfyUIError, match="4097x4096: too large"):
        png_byte_cap(head[:16] + (4097).to_bytes(4, "big") + (4096).to_bytes(4, "big"), "a.png")
    for bad in (b"GIF89a" + head[6:], head[:12] + b"IDAT" + head[16:], head[:20]):
        with pytest.raises(ComfyUIError, match="is not a PNG"):
            png_byte_cap(bad, "a.png")


def test_a_websocket_closed_at_once_counts_as_unreachable(comfy):
    comfy.drop_sockets = 1
    output = runner(comfy.url).run(built_in(), uploads(), None)
    assert comfy.drop_sockets == 0 and output.png.startswith(b"\x89PNG")
    assert len(comfy.received.prompts) == 1


def test_a_lost_answer_to_post_prompt_does_not_queue_the_image_twice(comfy):
    comfy.lose_answers = 1
    output = runner(comfy.url).run(built_in(), uploads(), None)
    assert comfy.lose_answers == 0 and output.png.startswith(b"\x89PNG")
    assert len(comfy.received.prompts) == 1  # our own prompt id found it queued


def test_a_comfyui_without_system_stats_is_up_all_the_same(comfy):
    comfy.without_system_stats = True
    output = runner(comfy.url).run(built_in(), uploads(), None)
    assert output.png.startswith(b"\x89PNG")


def test_a_dropped_websocket_follows_the_same_prompt_again(comfy):
    comfy.faults.append("drop")
    output = runner(comfy.url).run(built_in(), uploads(), None)
    assert len(comfy.received.prompts) == 1  # not submitted twice: ComfyUI still had it
    assert output.png == next(comfy.output_dir.iterdir()).read_bytes()


def test_the_engine_hands_over_comfyuis_bytes_with_the_graph_it_ran(anime_home, comfy):
    from tools.comfyui.engine import ComfyUIEngine
    from tools.engine.render_job import RenderJob
    from tools.settings import load_settings
    from tools.store.png_chunks import SOURCE_PNG, chunks

    env = {"ANIME_WORKER_BACKEND": "comfyui", "ANIME_COMFYUI_URL": comfy.url,
           "ANIME_COMFYUI_CHECKPOINT": CHECKPOINTS[0], "ANIME_COMFYUI_CONTROLNET": CONTROLNETS[0],
           "ANIME_COMFYUI_LORAS": ""}  # fmt: skip
    engine = ComfyUIEngine(load_settings(env=env, home=anime_home))
    comfy.disable_metadata = True
    job = RenderJob("sakura <lora:gone:0.5>", "lowres", POSE, None, seed=9)
    (image,) = engine.render(
        [job], width=64, height=96, ipadapter_weight=0.0, controlnet_strength=0.5
    )
    (graph,) = comfy.received.prompts.values()
    assert "lora" not in graph["positive"]["inputs"]["text"] and "reference" not in graph
    assert json.loads(image.info["prompt"]) == graph
    png, made = image.info[SOURCE_PNG], next(comfy.output_dir.iterdir()).read_bytes()
    assert [c for c in chunks(png) if c[0] == b"IDAT"] == [
        c for c in chunks(made) if c[0] == b"IDAT"
    ]
    assert json.loads(Image.open(BytesIO(png)).text["prompt"]) == graph


def test_comfyui_root_is_searched_for_loras(tmp_path, tiny_models):
    import shutil

    from tools.engine.extra_networks import find_lora
    from tools.settings import load_settings

    root = tmp_path / "ComfyUI"
    (root / "models" / "loras").mkdir(parents=True)
    shutil.copyfile(tiny_models / "lora/tiny.safetensors", root / "models/loras/style.safetensors")
    paths = load_settings(env={"ANIME_COMFYUI_ROOT": str(root)}, home=tmp_path / "home").paths
    found = find_lora("style", paths)
    assert (found.folder, found.weight_name) == (root / "models/loras", "style.safetensors")
    with pytest.raises(UserError):
        find_lora("style", load_settings(env={}, home=tmp_path / "home").paths)
