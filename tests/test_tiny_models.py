"""The tiny-model fixture: real loaders accept every part, in every format users have."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from evals.tiny_models import BUILD_VERSION, CONFIG_NAME, STAMP_NAME, build_tiny_models
from tools.settings import Resolution, load_settings


def test_config_validates_and_points_at_the_models(anime_home, tiny_models):
    settings = load_settings(home=anime_home)
    assert settings.models.checkpoint == str(tiny_models / "sd15")
    assert (tiny_models / "sd15" / "model_index.json").is_file()
    assert (tiny_models / "controlnet" / "config.json").is_file()
    assert (tiny_models / "ip-adapter" / "models" / "ip-adapter_sd15.safetensors").is_file()
    assert (tiny_models / "ip-adapter" / "models" / "image_encoder" / "config.json").is_file()
    assert settings.output.resolution == Resolution(128, 192)
    assert settings.quality.aesthetic_model == str(tiny_models / "aesthetic")
    assert settings.quality.min_consistency == 0.0


def test_single_file_config_validates(tiny_models, tmp_path):
    config = yaml.safe_load((tiny_models / CONFIG_NAME).read_text())
    config["models"]["checkpoint"] = str(tiny_models / "sd15.safetensors")
    config["models"]["checkpoint_config"] = str(tiny_models / "sd15")
    (tmp_path / ".anime-config.yaml").write_text(yaml.safe_dump(config))
    assert load_settings(env={}, home=tmp_path).models.checkpoint_config == str(
        tiny_models / "sd15"
    )


def test_rebuild_of_a_complete_build_builds_nothing(tiny_models, monkeypatch):
    def build_again(directory):
        raise AssertionError(f"a complete build was built again in {directory}")

    monkeypatch.setattr("evals.tiny_models._build_all", build_again)
    config = build_tiny_models(tiny_models)
    assert config == tiny_models / CONFIG_NAME
    assert (tiny_models / STAMP_NAME).read_text().strip() == BUILD_VERSION


def _files(directory: Path) -> dict[str, bytes]:
    return {
        str(path.relative_to(directory)): path.read_bytes()
        for path in sorted(directory.rglob("*"))
        if path.is_file() and path.name != CONFIG_NAME
    }


def test_stale_build_is_replaced_by_an_identical_one(tiny_models, tmp_path):
    stale = tmp_path / "models"
    (stale / "sd15").mkdir(parents=True)
    (stale / "sd15" / "leftover.bin").write_bytes(b"old")
    (stale / STAMP_NAME).write_text("0\n")
    build_tiny_models(stale)
    rebuilt, original = _files(stale), _files(tiny_models)
    assert rebuilt.keys() == original.keys()
    assert [name for name in rebuilt if rebuilt[name] != original[name]] == []
    assert not any(path.name.startswith(".partial-") for path in stale.iterdir())


def test_tokenizer_keeps_prompt_words_whole_and_spells_the_rest(tiny_models):
    from transformers import CLIPTokenizer

    tokenizer = CLIPTokenizer.from_pretrained(tiny_models / "sd15" / "tokenizer")
    tokens = tokenizer.tokenize("Masterpiece, long red hair, Zephyr ☆")
    assert tokens[:5] == ["masterpiece</w>", ",</w>", "long</w>", "red</w>", "hair</w>"]
    assert "".join(tokens[6:]).replace("</w>", "") == "zephyrâĺĨ"  # bytes, never unknown
    assert tokenizer.unk_token_id not in tokenizer("Zephyr ☆").input_ids[1:-1]
    assert tokenizer.model_max_length == 77


def _assert_same_weights(left, right) -> None:
    left_state, right_state = left.state_dict(), right.state_dict()
    assert left_state.keys() == right_state.keys()
    import torch

    unequal = [key for key in left_state if not torch.equal(left_state[key], right_state[key])]
    assert unequal == []


def test_single_file_checkpoint_holds_the_same_weights(tiny_models):
    from diffusers import (
        ControlNetModel,
        StableDiffusionControlNetPipeline,
        StableDiffusionPipeline,
    )

    folder = StableDiffusionPipeline.from_pretrained(tiny_models / "sd15", local_files_only=True)
    single = StableDiffusionPipeline.from_single_file(
        str(tiny_models / "sd15.safetensors"),
        config=str(tiny_models / "sd15"),
        local_files_only=True,
    )
    for part in ("unet", "vae", "text_encoder"):
        _assert_same_weights(getattr(folder, part), getattr(single, part))

    controlnet = ControlNetModel.from_pretrained(tiny_models / "controlnet", local_files_only=True)
    with_control = StableDiffusionControlNetPipeline.from_single_file(
        str(tiny_models / "sd15.safetensors"),
        controlnet=controlnet,
        config=str(tiny_models / "sd15"),
        local_files_only=True,
    )
    _assert_same_weights(folder.unet, with_control.unet)
    assert with_control.controlnet is controlnet


def test_single_file_uses_ldm_names(tiny_models):
    from safetensors import safe_open

    with safe_open(tiny_models / "sd15.safetensors", "pt") as checkpoint:
        prefixes = {key.split(".")[0] for key in checkpoint.keys()}  # noqa: SIM118
        attention = checkpoint.get_tensor("first_stage_model.encoder.mid.attn_1.q.weight")
    assert prefixes == {"model", "first_stage_model", "cond_stage_model"}
    assert attention.ndim == 4  # LDM keeps the VAE's attention as 1×1 convolutions


def test_ip_adapter_and_controlnet_generate_on_cpu(tiny_models, reference_image):
    import numpy as np
    from diffusers import (
        ControlNetModel,
        StableDiffusionControlNetPipeline,
        StableDiffusionPipeline,
    )
    from PIL import Image

    base = StableDiffusionPipeline.from_pretrained(tiny_models / "sd15", local_files_only=True)
    controlnet = ControlNetModel.from_pretrained(tiny_models / "controlnet", local_files_only=True)
    pipe = StableDiffusionControlNetPipeline(**base.components, controlnet=controlnet)
    pipe.load_ip_adapter(
        str(tiny_models / "ip-adapter"),
        subfolder="models",
        weight_name="ip-adapter_sd15.safetensors",
        image_encoder_folder="image_encoder",
        local_files_only=True,
    )
    cross_attention = [name for name in pipe.unet.attn_processors if "attn2" in name]
    assert all(
        "IPAdapter" in type(pipe.unet.attn_processors[name]).__name__ for name in cross_attention
    )

    import torch

    def generate(pose: Image.Image) -> np.ndarray:
        return pipe(
            "a girl, long red hair",
            image=pose,
            ip_adapter_image=Image.open(reference_image),
            height=64,
            width=64,
            num_inference_steps=1,
            generator=torch.Generator().manual_seed(0),
            output_type="np",
        ).images[0]

    black = generate(Image.new("RGB", (64, 64)))
    assert black.shape == (64, 64, 3)
    assert np.isfinite(black).all()
    # The pose map must matter: a ControlNet with zero output convs would ignore it.
    assert not np.allclose(black, generate(Image.new("RGB", (64, 64), (255, 255, 255))))


def test_aesthetic_model_classifies_an_image(tiny_models, reference_image):
    from PIL import Image
    from transformers import AutoModelForImageClassification, pipeline

    model = AutoModelForImageClassification.from_pretrained(tiny_models / "aesthetic")
    assert model.config.id2label == {0: "hq", 1: "lq"}
    scores = pipeline("image-classification", model=str(tiny_models / "aesthetic"))(
        Image.open(reference_image)
    )
    assert {score["label"] for score in scores} == {"hq", "lq"}
    assert sum(score["score"] for score in scores) == pytest.approx(1.0)


@pytest.mark.slow  # a fresh interpreter builds everything: ~6 s
def test_command_line_writes_the_config(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "evals.tiny_models", str(tmp_path / "models")],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    config_path = tmp_path / "models" / CONFIG_NAME
    assert result.stdout.strip() == str(config_path)
    config = yaml.safe_load(config_path.read_text())
    assert config["models"]["controlnet"] == str(tmp_path / "models" / "controlnet")
    assert (tmp_path / "models" / "sd15.safetensors").is_file()
