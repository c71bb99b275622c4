"""The SDXL family (Animagine / Illustrious / Pony checkpoints) through the SDXL pipelines."""

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from safetensors.torch import save_file

from tools.engine import Engine, RenderJob, detect_family
from tools.model_sources import ModelSource
from tools.settings import CONFIG_FILENAME, load_settings


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


def test_family_from_single_file_keys_and_hub_names(tmp_path: Path):
    import torch

    sdxl_file = tmp_path / "animagine.safetensors"
    save_file({"conditioner.embedders.1.model.ln_final.weight": torch.zeros(1)}, str(sdxl_file))
    sd15_file = tmp_path / "counterfeit.safetensors"
    save_file({"cond_stage_model.transformer.text_model.x": torch.zeros(1)}, str(sd15_file))
    assert detect_family(ModelSource("file", str(sdxl_file))) == "sdxl"
    assert detect_family(ModelSource("file", str(sd15_file))) == "sd15"
    assert detect_family(ModelSource("hub", "cagliostrolab/animagine-xl-3.1")) == "sdxl"
    assert detect_family(ModelSource("hub", "gsdf/Counterfeit-V2.5")) == "sd15"


def test_family_setting_overrides_detection(tmp_path: Path, tiny_models: Path):
    settings = load_settings(
        overrides={"models": {"checkpoint": str(tiny_models / "sd15"), "family": "sdxl"}},
        home=tmp_path,
        env={},
    )
    assert Engine(settings).family == "sdxl"
    assert detect_family(ModelSource("dir", str(tiny_models / "sd15"))) == "sd15"
