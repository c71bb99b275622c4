"""The SDXL family (Animagine / Illustrious / Pony checkpoints) through the SDXL pipelines."""

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image
from safetensors.torch import save_file

from tools.engine.families import detect_family, models_for_family
from tools.engine.model_sources import ModelSource, image_encoder_subfolder
from tools.engine.rendering import Engine, RenderJob
from tools.errors import UserError
from tools.settings import CONFIG_FILENAME, ModelSettings, load_settings


@pytest.fixture(scope="module")
def tiny_sdxl(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from evals.tiny_sdxl import build_tiny_sdxl

    return build_tiny_sdxl(tmp_path_factory.mktemp("tiny-sdxl"))


@pytest.fixture
def sdxl_home(tmp_path: Path, tiny_sdxl: Path) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    shutil.copyfile(tiny_sdxl, home / CONFIG_FILENAME)
    return home


def draw(engine: Engine, reference: Path | None, seed: int = 1) -> np.ndarray:
    job = RenderJob("1girl, red hair", "lowres", Image.new("RGB", (128, 192)), reference, seed)
    image = engine.render(
        [job], width=128, height=192, ipadapter_weight=0.9, controlnet_strength=0.5
    )[0]
    return np.asarray(image)


@pytest.mark.slow
def test_sdxl_checkpoint_is_detected_and_draws_with_a_reference(sdxl_home, reference_image):
    engine = Engine(load_settings(home=sdxl_home, env={}))
    with_reference = draw(engine, reference_image)
    assert engine.info.family == "sdxl"
    assert type(engine.pipe).__name__ == "StableDiffusionXLControlNetPipeline"
    assert with_reference.shape == (192, 128, 3)
    assert np.array_equal(draw(engine, reference_image), with_reference)
    assert not np.array_equal(draw(engine, None), with_reference)
    assert engine.encoder_calls == 1


@pytest.mark.slow
def test_sdxl_cfg_cutoff_halves_the_late_steps(sdxl_home, reference_image):
    overrides = {"output": {"cfg_cutoff": 0.5}}
    engine = Engine(load_settings(overrides=overrides, home=sdxl_home, env={}))
    batches: list[int] = []
    engine.pipe.unet.register_forward_pre_hook(lambda _m, args: batches.append(args[0].shape[0]))
    assert draw(engine, reference_image).shape == (192, 128, 3)
    assert batches == [2, 2, 1, 1]


def test_family_from_single_file_keys(tmp_path: Path):
    import torch

    sdxl_file = tmp_path / "animagine.safetensors"
    save_file({"conditioner.embedders.1.model.ln_final.weight": torch.zeros(1)}, str(sdxl_file))
    sd15_file = tmp_path / "counterfeit.safetensors"
    save_file({"cond_stage_model.transformer.text_model.x": torch.zeros(1)}, str(sd15_file))
    assert detect_family(ModelSource("file", str(sdxl_file))) == "sdxl"
    assert detect_family(ModelSource("file", str(sd15_file))) == "sd15"


def cache_model_index(cache: Path, repo_id: str, pipeline_class: str) -> None:
    """A Hugging Face cache entry holding only the repo's model_index.json (as after a partial
    download)."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    (snapshot / "model_index.json").write_text(json.dumps({"_class_name": pipeline_class}))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)


def test_hub_family_comes_from_the_cached_model_index_not_the_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    cache_model_index(tmp_path, "someone/anime-mix", "StableDiffusionXLPipeline")
    cache_model_index(tmp_path, "someone/pony-xl-style", "StableDiffusionPipeline")
    assert detect_family(ModelSource("hub", "someone/anime-mix")) == "sdxl"
    assert detect_family(ModelSource("hub", "someone/pony-xl-style")) == "sd15"
    with pytest.raises(UserError, match="not downloaded yet"):
        detect_family(ModelSource("hub", "someone/elsewhere"), download=False)
    with pytest.raises(UserError, match="cannot read its model_index.json"):
        detect_family(ModelSource("hub", "someone/elsewhere"))  # offline in tests


def test_unset_controlnet_and_ipadapter_settings_follow_the_family(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    sd15 = models_for_family(ModelSettings(), "sd15")
    assert sd15.controlnet == "lllyasviel/control_v11p_sd15_openpose"
    assert (sd15.ipadapter, sd15.ipadapter_subfolder, sd15.ipadapter_weight_name) == (
        "h94/IP-Adapter",
        "models",
        "ip-adapter_sd15.safetensors",
    )
    sdxl = models_for_family(ModelSettings(), "sdxl")
    assert sdxl.controlnet == "xinsir/controlnet-openpose-sdxl-1.0"
    assert (sdxl.ipadapter_subfolder, sdxl.ipadapter_weight_name) == (
        "sdxl_models",
        "ip-adapter_sdxl.safetensors",
    )
    assert image_encoder_subfolder(sdxl.ipadapter_subfolder, sdxl.image_encoder_folder) == (
        "sdxl_models/image_encoder"
    )
    # The ViT-H SDXL adapters use the encoder in models/, relative to the repo root (diffusers).
    vit_h = models_for_family(
        ModelSettings(ipadapter_weight_name="ip-adapter-plus_sdxl_vit-h.safetensors"), "sdxl"
    )
    assert vit_h.ipadapter_subfolder == "sdxl_models"
    assert image_encoder_subfolder(vit_h.ipadapter_subfolder, vit_h.image_encoder_folder) == (
        "models/image_encoder"
    )
    # What the user set stays.
    own = models_for_family(ModelSettings(controlnet="me/pose-xl"), "sdxl")
    assert own.controlnet == "me/pose-xl"
    settings = load_settings(
        overrides={
            "models": {"family": "sdxl", "ipadapter_weight_name": vit_h.ipadapter_weight_name}
        },
        home=tmp_path,
        env={},
    )
    fetched: list[list[str]] = []
    monkeypatch.setattr(
        "tools.engine.loading.local_path",
        lambda _source, patterns, _what: fetched.append(patterns),
    )
    engine = Engine(settings)
    engine.sources.ipadapter_dir()
    assert fetched == [
        ["sdxl_models/ip-adapter-plus_sdxl_vit-h.safetensors", "models/image_encoder/*"]
    ]
    assert engine.controlnet_source.location == "xinsir/controlnet-openpose-sdxl-1.0"


def family_default_home(tmp_path: Path, tiny_sdxl: Path, **models: str) -> Path:
    """A home whose config names only the SDXL checkpoint and the IP-Adapter repo folder."""
    directory = tiny_sdxl.parent
    home = tmp_path / "home"
    home.mkdir()
    config = {
        "models": {
            "checkpoint": str(directory / "checkpoint"),
            "ipadapter": str(directory / "ip-adapter"),
            **models,
        },
        "output": {"resolution": "128x192", "steps": 2},
    }
    (home / CONFIG_FILENAME).write_text(yaml.safe_dump(config), encoding="utf-8")
    return home


@pytest.mark.slow
def test_sdxl_checkpoint_loads_with_the_family_default_controlnet_and_ipadapter(
    tmp_path: Path, tiny_sdxl: Path, reference_image: Path, monkeypatch: pytest.MonkeyPatch
):
    from tools.engine import families

    # The SDXL default ControlNet id, pointed at the tiny one (resolved the same way).
    tiny_controlnet = str(tiny_sdxl.parent / "controlnet")
    sdxl = replace(families.FAMILY_DEFAULTS["sdxl"], controlnet=tiny_controlnet)
    monkeypatch.setitem(families.FAMILY_DEFAULTS, "sdxl", sdxl)
    engine = Engine(load_settings(home=family_default_home(tmp_path, tiny_sdxl), env={}))
    assert draw(engine, reference_image).shape == (192, 128, 3)
    assert engine.info.family == "sdxl" and engine.info.controlnet == "controlnet"
    assert engine.info.ipadapter == "ip-adapter/ip-adapter_sdxl.safetensors"


@pytest.mark.slow
def test_a_controlnet_or_ipadapter_of_the_other_family_is_one_clear_error(
    tmp_path: Path, tiny_sdxl: Path, tiny_models: Path
):
    home = family_default_home(tmp_path, tiny_sdxl, controlnet=str(tiny_models / "controlnet"))
    with pytest.raises(UserError) as error:
        Engine(load_settings(home=home, env={})).pipe  # noqa: B018
    assert error.value.message == (
        "models.controlnet controlnet is for SD1.5 but the checkpoint checkpoint is SDXL"
    )
    assert "xinsir/controlnet-openpose-sdxl-1.0" in error.value.hint
    overrides = {
        "models": {
            "controlnet": str(tiny_sdxl.parent / "controlnet"),
            "ipadapter": str(tiny_models / "ip-adapter"),
            "ipadapter_subfolder": "models",
            "ipadapter_weight_name": "ip-adapter_sd15.safetensors",
        }
    }
    with pytest.raises(UserError, match="models.ipadapter ip-adapter is for SD1.5"):
        Engine(load_settings(overrides=overrides, home=home, env={})).pipe  # noqa: B018


def test_family_setting_overrides_detection(tmp_path: Path, tiny_models: Path):
    settings = load_settings(
        overrides={"models": {"checkpoint": str(tiny_models / "sd15"), "family": "sdxl"}},
        home=tmp_path,
        env={},
    )
    assert Engine(settings).family == "sdxl"
    assert detect_family(ModelSource("dir", str(tiny_models / "sd15"))) == "sd15"


@pytest.mark.slow
def test_sdxl_hires_and_face_detail_passes(sdxl_home, monkeypatch):
    from types import SimpleNamespace

    from tools.engine.face_detail import face_detail_pass
    from tools.engine.hires import hires_pass
    from tools.settings import FaceDetailSettings, HiresSettings

    animeface = pytest.importorskip("animeface")
    engine = Engine(load_settings(home=sdxl_home, env={}))
    job = RenderJob("1girl", "lowres", Image.new("RGB", (128, 192)), None, 3)
    image = engine.render(
        [job], width=128, height=192, ipadapter_weight=0.9, controlnet_strength=0.5
    )[0]
    upscaled, record = hires_pass(engine, job, image, HiresSettings(scale=1.5))
    assert upscaled.size == (192, 288) and record["upscaler"] == "latent"
    assert type(engine.pipe).__name__ == "StableDiffusionXLControlNetPipeline"
    position = SimpleNamespace(x=60, y=40, width=50, height=50)
    face = SimpleNamespace(face=SimpleNamespace(pos=position), likelihood=0.9)
    monkeypatch.setattr(animeface, "detect", lambda _image: [face])
    detailed, record = face_detail_pass(engine, job, upscaled, FaceDetailSettings())
    assert record["applied"] is True and detailed.size == (192, 288)
    assert not np.array_equal(np.asarray(detailed), np.asarray(upscaled))
