"""`anime-gen info`: parameters of our, A1111/Forge and ComfyUI PNGs in one shape."""

import json
from pathlib import Path

import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo
from typer.testing import CliRunner

from assistant.gen_cli import app
from tests.test_output_store import image, make_store, meta
from tools.store.png_info import FIELDS, parse_a1111, parse_comfyui, read_png_info

DATA = Path(__file__).parent / "data" / "png_params"

A1111_EXPECTED = {
    "a1111_forge_karras.txt": {
        "steps": 28,
        "sampler": "DPM++ 2M Karras",
        "cfg_scale": 7.0,
        "seed": 2389457161,
        "width": 512,
        "height": 768,
        "model": "anything-v5",
        "clip_skip": 2,
        "negative_prompt": "EasyNegative, (worst quality, low quality:1.4), bad hands",
        "loras": [{"name": "add_detail", "weight": 0.6}],
        "ADetailer model": "face_yolov8n.pt",
        "ADetailer denoising strength": "0.4",
        "Hires upscale": "1.5",
    },
    "a1111_old_sampler.txt": {
        "steps": 20,
        "sampler": "Euler a",
        "cfg_scale": 7.5,
        "seed": 1234,
        "width": 512,
        "height": 512,
        "model": "animefull-final-pruned",
        "clip_skip": 2,
        "loras": [],
        "ENSD": "31337",
    },
    "a1111_two_loras.txt": {
        "sampler": "DPM++ 2M SDE Karras",
        "cfg_scale": 6.5,
        "seed": 987654321,
        "width": 640,
        "height": 960,
        "model": "meinamix_meinaV11",
        "loras": [
            {"name": "sakuraCharacter_v2", "weight": 0.8},
            {"name": "flat2", "weight": -0.5},
        ],
        "VAE": "kl-f8-anime2.safetensors",
        "TI hashes": "badhandv4: 5e40d722fc3d",
    },
    "a1111_no_negative.txt": {
        "prompt": "landscape, mountains",
        "negative_prompt": None,
        "sampler": "Euler",
        "clip_skip": None,
        "width": 768,
        "height": 512,
    },
}

COMFYUI_EXPECTED = {
    "comfyui_default_graph.json": {
        "prompt": "beautiful scenery nature glass bottle landscape, , purple galaxy bottle,",
        "negative_prompt": "text, watermark",
        "seed": 156680208700286,
        "steps": 20,
        "cfg_scale": 8.0,
        "sampler": "euler",
        "model": "v1-5-pruned-emaonly",
        "width": 512,
        "height": 512,
        "loras": [],
        "clip_skip": None,
    },
    "comfyui_lora_advanced.json": {
        "prompt": "1girl, pink hair, green eyes",
        "negative_prompt": "worst quality, low quality",
        "seed": 777,
        "steps": 25,
        "cfg_scale": 7.0,
        "sampler": "dpmpp_2m_karras",
        "model": "anything-v5",
        "width": 512,
        "height": 768,
        "clip_skip": 2,
        "loras": [
            {"name": "sakuraCharacter_v2", "weight": 0.8},
            {"name": "add_detail", "weight": 0.5},
        ],
    },
}


def _check(info: dict, expected: dict, source: str) -> None:
    assert info["source"] == source
    assert set(FIELDS) | {"loras", "source"} <= info.keys()
    for key, value in expected.items():
        assert info[key] == value, key


@pytest.mark.parametrize("name", sorted(A1111_EXPECTED))
def test_a1111_parameters_texts(name):
    _check(parse_a1111((DATA / name).read_text()), A1111_EXPECTED[name], "a1111")


@pytest.mark.parametrize("name", sorted(COMFYUI_EXPECTED))
def test_comfyui_prompt_graphs(name):
    _check(parse_comfyui(json.loads((DATA / name).read_text())), COMFYUI_EXPECTED[name], "comfyui")


def test_multiline_prompt_and_quoted_values_with_commas():
    info = parse_a1111(
        "line one,\nline two\nNegative prompt: bad\nworse\n"
        'Steps: 5, ControlNet 0: "Module: none, Model: x, Weight: 1", Seed: 3, Size: 8x16'
    )
    assert info["prompt"] == "line one,\nline two"
    assert info["negative_prompt"] == "bad\nworse"
    assert info["ControlNet 0"] == "Module: none, Model: x, Weight: 1"
    assert (info["seed"], info["width"], info["height"]) == (3, 8, 16)


def _png(path: Path, **chunks: str) -> Path:
    info = PngInfo()
    for key, value in chunks.items():
        info.add_text(key, value)
    Image.new("RGB", (8, 8)).save(path, pnginfo=info)
    return path


def test_info_cli_reads_a1111_and_comfyui_pngs(tmp_path):
    runner = CliRunner()
    a1111 = _png(tmp_path / "a.png", parameters=(DATA / "a1111_forge_karras.txt").read_text())
    comfy = _png(tmp_path / "c.png", prompt=(DATA / "comfyui_default_graph.json").read_text())
    result = runner.invoke(app, ["info", str(a1111), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["sampler"] == "DPM++ 2M Karras"
    result = runner.invoke(app, ["info", str(comfy)])
    assert result.exit_code == 0, result.output
    assert "source: comfyui" in result.output and "seed: 156680208700286" in result.output


def test_info_on_a_png_without_parameters_is_a_user_error(tmp_path):
    result = CliRunner().invoke(app, ["info", str(_png(tmp_path / "plain.png"))])
    assert result.exit_code == 1
    assert "carries no generation parameters" in result.output


def test_our_png_round_trip_json_chunk_and_parameters_text_agree(tmp_path):
    path = make_store(tmp_path).save(image(), meta(sampler="DPM++ 2M Karras"))
    ours = read_png_info(path)
    assert ours["source"] == "anime-chat"
    assert ours["pose"]["id"] == "standing_basic"
    with Image.open(path) as png:
        theirs = parse_a1111(png.text["parameters"])
    for field in FIELDS:
        assert theirs[field] == ours[field], field
    assert theirs["Pose"] == "standing_basic"
    assert theirs["IP-Adapter weight"] == "0.95"
