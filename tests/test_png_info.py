"""`anime-gen info`: parameters of our, A1111/Forge and ComfyUI PNGs in one shape."""

import json
from pathlib import Path

import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo
from typer.testing import CliRunner

from assistant.gen_cli import app
from tests.test_output_store import image, make_store, meta
from tools.errors import UserError
from tools.store.png_info import (
    FIELDS,
    format_info,
    parse_a1111,
    parse_comfyui,
    parse_ours,
    read_png_info,
)
from tools.store.png_replay import (
    model_warning,
    not_restored,
    our_sampler,
    replay_plan,
    replay_vae,
)

DATA = Path(__file__).parent / "data" / "png_params"

# Real public texts (tests/data/png_params/SOURCES.md says where each comes from).
A1111_EXPECTED = {
    "a1111_webui_docstring.txt": {
        "prompt": "girl with an artist's beret, determined, blue eyes, desert scene, computer "
        "monitors, heavy makeup, by Alphonse Mucha and Charlie Bowater, ((eyeshadow)), "
        "(coquettish), detailed, intricate",
        "steps": 20,
        "sampler": "Euler a",
        "cfg_scale": 7.0,
        "seed": 965400086,
        "width": 512,
        "height": 512,
        "model": None,
        "clip_skip": None,
        "loras": [],
        "Model hash": "45dee52b",
    },
    "a1111_unipc_png_chunk.txt": {
        "prompt": "photo of a duck",
        "negative_prompt": "monochrome",
        "steps": 15,
        "sampler": "UniPC",
        "cfg_scale": 5.0,
        "seed": 235284042,
        "width": 512,
        "height": 400,
        "model": "realistic_realisticVisionV20_v20",
    },
    "a1111_xxmix_adetailer_loras.txt": {
        "steps": 25,
        "sampler": "DPM++ 2M Karras",
        "cfg_scale": 20.0,
        "seed": 2517177978,
        "width": 512,
        "height": 768,
        "model": "xxmix4_v10",
        "clip_skip": 2,
        "loras": [
            {"name": "add_detail", "weight": 0.75},
            {"name": "plague doctor", "weight": 0.8},
            {"name": "CulturePunkBundle", "weight": 0.5},
        ],
        "lora_hashes": {
            "add_detail": "7c6bad76eb54",
            "plague doctor": "03edb8750c9e",
            "CulturePunkBundle": "8a0f0072fcc6",
        },
        "ADetailer model": "face_yolov8n.pt",
        "ADetailer model 2nd": "hand_yolov8n.pt",
        "Mimic mode": "Half Cosine Up",
    },
    "a1111_breakdomain_sde_karras.txt": {
        "negative_prompt": None,
        "steps": 30,
        "sampler": "DPM++ SDE Karras",
        "seed": 2645047581,
        "model": "breakdomain_M2150",
        "clip_skip": 2,
    },
    "a1111_counterfeit_controlnet_vae.txt": {
        "prompt": "sharp_two_hand_sword",
        "sampler": "DPM++ 2M Karras",
        "seed": 238572726,
        "model": "counterfeitV30_v30",
        "clip_skip": None,
        "VAE": "kl-f8-anime2.ckpt",
        "ControlNet 0": "Module: lineart_standard (from white bg & black line), Model: "
        "control_v11p_sd15_lineart [43d4be0d], Weight: 1, Resize Mode: Resize and Fill, Low "
        "Vram: False, Processor Res: 512, Guidance Start: 0, Guidance End: 1, Pixel Perfect: "
        "False, Control Mode: Balanced, Hr Option: Both, Save Detected Map: True",
        "Version": "v1.8.0",
    },
    "a1111_counterfeit_adetailer.txt": {
        "negative_prompt": None,
        "width": 512,
        "height": 704,
        "ADetailer dilate erode": "4",
        "ADetailer denoising strength": "0.4",
        "Masked area padding": "32",
    },
    "a1111_meinamix_hires_civitai.txt": {
        "steps": 25,
        "sampler": "DPM++ SDE Karras",
        "seed": 3212833155,
        "width": 512,
        "height": 1024,
        "model": "Meina V10 - baked VAE",
        "clip_skip": 2,
        "Hires upscale": "2",
        "Hires steps": "15",
        "Hires upscaler": "R-ESRGAN 4x+ Anime6B",
        "Denoising strength": "0.4",
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
    "comfyui_examples_img2img.json": {
        "prompt": "photograph of victorian woman with wings, sky clouds, meadow grass\n",
        "seed": 280823642470253,
        "sampler": "dpmpp_2m",  # written "sample_dpmpp_2m" by early ComfyUI
        "model": "v1-5-pruned-emaonly",
        "width": None,  # drawn over a loaded image, not an empty latent
    },
    "comfyui_examples_area_composition_2pass.json": {
        "seed": 335608130539327,  # the first pass, not the KSampler after the latent upscale
        "steps": 13,
        "cfg_scale": 8.5,
        "sampler": "dpmpp_sde",
        "width": 704,
        "height": 1280,
    },
    "comfyui_examples_noisy_latents_advanced.json": {
        "seed": 890421140397575,  # the KSamplerAdvanced that starts from the empty latent
        "steps": 16,
        "sampler": "dpmpp_sde",
        "model": "Anything-V3.0",
        "clip_skip": 2,
        "width": 256,
        "height": 512,
    },
    "comfyui_sdxl_facedetailer_lora.json": {
        "prompt": "%prompt%",  # through smZ CLIPTextEncode and a wildcard node
        "negative_prompt": "%negative%",
        "seed": 99978609226879,
        "sampler": "euler_karras",
        "model": "waiIllustriousSDXL_v160",
        "loras": [{"name": "kuro gyaru_XL_illustrious_V1.0", "weight": 1.0}],
        "width": 1024,
        "height": 1280,
    },
    "comfyui_sd15_lora_vae.json": {
        "sampler": "dpmpp_2m_karras",
        "steps": 25,
        "model": "coffeensfw_v10",
        "loras": [{"name": "ChinaDressShunV1", "weight": 1.0}],
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
    a1111 = _png(
        tmp_path / "a.png", parameters=(DATA / "a1111_xxmix_adetailer_loras.txt").read_text()
    )
    comfy = _png(tmp_path / "c.png", prompt=(DATA / "comfyui_default_graph.json").read_text())
    result = runner.invoke(app, ["info", str(a1111), "--json"])
    assert result.exit_code == 0, result.output
    parsed = json.loads(result.output)
    assert parsed["sampler"] == "DPM++ 2M Karras" and parsed["source"] == "a1111"
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


def test_prompt_edits_alternation_and_and_are_recorded_as_written(tmp_path):
    """Issue 23: `[from:to:when]`, `[a|b]` and `AND` are in the parameters verbatim (A1111
    modules/processing.py `create_infotext` writes `p.all_prompts[index]`, unparsed)."""
    prompt = "masterpiece, [cat:dog:0.5], [a|b], a hat AND a scarf"
    negative = "[lowres:blurry:0.5]"
    path = make_store(tmp_path).save(image(), meta(prompt=prompt, negative_prompt=negative))
    with Image.open(path) as png:
        text = png.text["parameters"]
    assert text.splitlines()[0] == prompt
    assert (parse_a1111(text)["prompt"], parse_a1111(text)["negative_prompt"]) == (prompt, negative)
    assert (read_png_info(path)["prompt"], read_png_info(path)["negative_prompt"]) == (
        prompt,
        negative,
    )


def test_every_data_file_is_tested_and_sourced():
    files = {path.name for path in DATA.iterdir() if path.suffix in (".txt", ".json")}
    assert files == set(A1111_EXPECTED) | set(COMFYUI_EXPECTED)
    sources = (DATA / "SOURCES.md").read_text()
    assert all(f"`{name}`" in sources for name in files)


def test_split_schedule_type_and_civitai_hashes_object():
    info = parse_a1111(
        "1girl\nSteps: 20, Sampler: DPM++ 2M SDE, Schedule type: Karras, CFG scale: 7, "
        'Seed: 1, Size: 512x768, Hashes: {"model": "c0d1994c73", "vae": "c6a580b13a"}, '
        "Version: v1.9.4"
    )
    assert info["sampler"] == "DPM++ 2M SDE Karras"
    assert info["Hashes"] == '{"model": "c0d1994c73", "vae": "c6a580b13a"}'
    assert info["Version"] == "v1.9.4"


@pytest.mark.parametrize(
    ("name", "ours"),
    [
        ("DPM++ 2M Karras", "dpmpp_2m_karras"),
        ("DPM++ 2M SDE Karras", "dpmpp_2m_sde_karras"),
        ("DPM++ SDE Karras", "dpmpp_sde_karras"),
        ("UniPC", "unipc"),
        ("Euler a", "euler_a"),
        ("dpmpp_2m_karras", "dpmpp_2m_karras"),
        ("euler_ancestral", "euler_a"),
        ("uni_pc_bh2", "unipc"),
        ("DPM++ 3M SDE Exponential", None),
    ],
)
def test_sampler_names_map_to_ours(name, ours):
    assert our_sampler(name) == ours


def test_replay_maps_a1111_hires_and_adetailer_and_names_the_rest():
    info = parse_a1111((DATA / "a1111_meinamix_hires_civitai.txt").read_text())
    plan, unmapped = replay_plan(info, "sakura")
    assert plan["output"]["hires"] == {
        "scale": 2.0,
        "upscaler": "lanczos",
        "denoise": 0.4,
        "steps": 15,
    }
    assert plan["output"]["sampler"] == "dpmpp_sde_karras"
    assert unmapped == ["hires upscaler 'R-ESRGAN 4x+ Anime6B' (ours: lanczos)"]
    info = parse_a1111((DATA / "a1111_counterfeit_adetailer.txt").read_text())
    plan, unmapped = replay_plan(info, "sakura")
    assert plan["output"]["face_detail"] == {
        "denoise": 0.4,
        "confidence": 0.3,
        "padding": 32,
        "mask_blur": 4,
    }
    assert "hires" not in plan["output"]
    assert unmapped == ["ADetailer model 'face_yolov8n.pt' (ours: animeface)"]


def test_replay_of_ours_turns_the_recorded_second_passes_on_or_off():
    hires = {
        "scale": 1.5,
        "denoise": 0.5,
        "steps": 4,
        "upscaler": "latent",
        "width": 96,
        "height": 96,
    }
    plan, _ = replay_plan(parse_ours({"character": "sakura", "hires": hires}), None)
    assert plan["output"]["hires"] == {
        "scale": 1.5,
        "denoise": 0.5,
        "steps": 4,
        "upscaler": "latent",
    }
    assert plan["output"]["face_detail"] is False
    plan, _ = replay_plan(parse_ours({"character": "sakura"}), None)
    assert plan["output"]["hires"] is False


def test_model_warning_compares_model_names_by_stem():
    info = {"source": "a1111", "model": "xxmix4_v10"}
    assert model_warning(info, "models/xxmix4_v10.safetensors") is None
    assert model_warning({**info, "model": "XXMix4_v10 [261db084d3]"}, "xxmix4_v10") is None
    warning = model_warning(info, "gsdf/Counterfeit-V2.5")
    assert warning.startswith("warning: a1111 image drawn with model 'xxmix4_v10'")
    assert "\n" not in warning
    assert model_warning({"source": "comfyui", "model": None}, "x") is None


def test_our_parameters_text_spells_second_passes_and_lora_hashes_like_a1111(tmp_path):
    hires = {
        "scale": 1.5,
        "denoise": 0.5,
        "steps": 12,
        "upscaler": "latent",
        "width": 96,
        "height": 96,
    }
    detail = {
        "model": "animeface",
        "confidence": 0.3,
        "denoise": 0.4,
        "mask_blur": 4,
        "padding": 32,
        "faces": [[1, 2, 3, 4]],
        "applied": True,
    }
    path = make_store(tmp_path).save(
        image(), meta(hires=hires, face_detail=detail, lora_hashes={"tiny": "0123456789ab"})
    )
    with Image.open(path) as png:
        theirs = parse_a1111(png.text["parameters"])
    assert (theirs["Hires upscale"], theirs["Hires steps"]) == ("1.5", "12")
    assert (theirs["Hires upscaler"], theirs["Denoising strength"]) == ("Latent", "0.5")
    assert theirs["ADetailer model"] == "animeface"
    assert theirs["ADetailer inpaint only masked"] == "True"
    assert theirs["lora_hashes"] == {"tiny": "0123456789ab"}
    assert (theirs["width"], theirs["height"]) == (64, 64)  # A1111's Size: the base size
    path = make_store(tmp_path / "b").save(image(), meta(face_detail={**detail, "applied": False}))
    with Image.open(path) as png:
        theirs = parse_a1111(png.text["parameters"])
    assert theirs["Face detail"] == "no face found" and "ADetailer model" not in theirs


def test_info_text_names_the_second_passes():
    hires = {"scale": 1.5, "denoise": 0.5, "steps": 4, "upscaler": "latent", "width": 192}
    ours = parse_ours({"hires": {**hires, "height": 288}, "face_detail": {"faces": []}})
    text = format_info(ours)
    assert "hires: x1.5 latent, denoise 0.5, 4 steps -> 192x288" in text
    assert "face detail: no face" in text
    theirs = format_info(parse_a1111((DATA / "a1111_meinamix_hires_civitai.txt").read_text()))
    assert "hires: x2 R-ESRGAN 4x+ Anime6B" in theirs


def test_controlnet_apply_advanced_negative_slot_reads_the_negative():
    # ComfyUI nodes.py ControlNetApplyAdvanced: RETURN_NAMES = ("positive", "negative").
    graph = {
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "m.safetensors"}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "1girl", "clip": ["4", 1]}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "lowres", "clip": ["4", 1]}},
        "11": {"class_type": "ControlNetLoader", "inputs": {"control_net_name": "op.pth"}},
        "12": {"class_type": "LoadImage", "inputs": {"image": "pose.png"}},
        "10": {
            "class_type": "ControlNetApplyAdvanced",
            "inputs": {
                "positive": ["6", 0],
                "negative": ["7", 0],
                "control_net": ["11", 0],
                "image": ["12", 0],
                "strength": 1.0,
                "start_percent": 0.0,
                "end_percent": 1.0,
            },
        },
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 512, "height": 768}},
        "3": {
            "class_type": "KSampler",
            "inputs": {
                "model": ["4", 0],
                "positive": ["10", 0],
                "negative": ["10", 1],
                "latent_image": ["5", 0],
                "seed": 1,
                "steps": 20,
                "cfg": 7,
                "sampler_name": "euler",
                "scheduler": "normal",
            },
        },
    }
    info = parse_comfyui(graph)
    assert (info["prompt"], info["negative_prompt"]) == ("1girl", "lowres")


def test_a1111_empty_prompt_reads_the_settings_line():
    # A1111 modules/infotext_utils.py parse_generation_parameters: a last line of >= 3 entries is
    # the settings line, also when it is the only one.
    info = parse_a1111("Steps: 20, Sampler: Euler a, CFG scale: 7, Seed: 42, Size: 512x512")
    assert (info["prompt"], info["steps"], info["seed"]) == ("", 20, 42)
    info = parse_a1111("Negative prompt: lowres\nSteps: 20, Sampler: Euler a, Seed: 42")
    assert (info["prompt"], info["negative_prompt"], info["steps"]) == ("", "lowres", 20)


def test_civitai_resources_json_list_is_kept_whole():
    resources = [
        {"type": "checkpoint", "modelVersionId": 290640, "modelName": "Pony", "weight": 1.0},
        {"type": "lora", "modelVersionId": 1, "modelName": "a, b", "weight": 0.8},
    ]
    info = parse_a1111(
        "1girl\nSteps: 20, Sampler: Euler a, Seed: 1, "
        f"Civitai resources: {json.dumps(resources)}, Civitai metadata: {{}}"
    )
    assert info["Civitai resources"] == resources
    assert info["Civitai metadata"] == "{}"
    assert not any(key.startswith(('"', "{", "[")) for key in info)


def test_replay_of_an_a1111_png_restores_its_negative_prompt_and_clip_skip():
    """Issue 23 #11; A1111 modules/infotext_utils.py parse_generation_parameters: no Clip skip
    entry means 1, no Negative prompt line an empty negative."""
    info = parse_a1111((DATA / "a1111_xxmix_adetailer_loras.txt").read_text())
    plan, unmapped = replay_plan(info, "sakura")
    assert plan["output"]["negative_prompt"].startswith("ng_deepnegative_v1_75t, badhandv4, (")
    assert plan["models"] == {"clip_skip": 2}
    plan, _ = replay_plan(parse_a1111("a cat\nSteps: 20, Seed: 1, CFG scale: 7"), "sakura")
    assert (plan["output"]["negative_prompt"], plan["models"]) == ("", {"clip_skip": 1})
    plan, unmapped = replay_plan(parse_a1111("a\nSteps: 2, Seed: 1, Clip skip: 12"), "x")
    assert "clip_skip" not in plan["models"] and unmapped == ["clip skip 12 (ours: 1 to 4)"]


def test_replay_of_ours_restores_every_recorded_setting_or_names_it(tmp_path):
    meta = {
        "character": "sakura",
        "negative_prompt": "blurry",
        "clip_skip": 1,
        "controlnet_strength": 0.8,
        "ipadapter_weight": 0.4,
        "controlnet": "cn",
        "vae": None,
    }
    info = parse_ours(meta)
    plan, unmapped = replay_plan(info, None)
    assert plan["output"]["negative_prompt"] == "blurry" and unmapped == []
    assert plan["models"] == {"clip_skip": 1, "controlnet_strength": 0.8, "ipadapter_weight": 0.4}
    # The checkpoint's own VAE is restored over a configured one; the same one needs nothing.
    assert replay_vae(info, "kl-f8-anime2.safetensors", tmp_path) == {"vae": None}
    (tmp_path / "vae").mkdir()
    (tmp_path / "vae" / "anime.safetensors").write_bytes(b"")
    drawn_with = parse_ours({**meta, "vae": "anime.safetensors"})
    assert replay_vae(drawn_with, None, tmp_path) == {"vae": "anime.safetensors"}
    assert replay_vae(drawn_with, str(tmp_path / "vae" / "anime.safetensors"), tmp_path) == {}
    with pytest.raises(UserError, match="VAE 'gone.pt'"):
        replay_vae(parse_ours({**meta, "vae": "gone.pt"}), None, tmp_path)
    # What the replay's own metadata still draws differently is named, one entry each.
    planned = {**meta, "controlnet": "other", "loras": []}
    assert not_restored(info, planned) == ["controlnet: recorded 'cn', yours 'other'"]
    assert not_restored(parse_a1111("a\nSteps: 2, Seed: 1, CFG scale: 7"), planned) == []
