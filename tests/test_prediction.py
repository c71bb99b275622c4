"""v-prediction and zero-SNR checkpoints (tools/engine/prediction.py, issue 23 #8)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from tools.engine.model_sources import ModelSource
from tools.engine.prediction import Prediction, prediction_for, scheduler_overrides
from tools.errors import ConfigError
from tools.settings import load_settings


def marked_file(path: Path, *keys: str) -> Path:
    tensors = {"model.diffusion_model.x": torch.zeros(1)}
    tensors.update({key: torch.zeros(0) for key in keys})
    save_file(tensors, str(path))
    return path


def test_the_v_pred_and_ztsnr_keys_of_a_single_file_are_read_as_comfyui_does(tmp_path):
    """ComfyUI comfy/supported_models.py SDXL.model_type: "v_pred" → V_PREDICTION, "ztsnr" →
    zsnr; diffusers' single-file loader looks for neither."""
    v_pred = ModelSource("file", str(marked_file(tmp_path / "noob.safetensors", "v_pred")))
    zsnr = ModelSource("file", str(marked_file(tmp_path / "z.safetensors", "v_pred", "ztsnr")))
    plain = ModelSource("file", str(marked_file(tmp_path / "eps.safetensors")))
    assert prediction_for("auto", v_pred) == Prediction("v_prediction")
    assert prediction_for("auto", zsnr) == Prediction("v_prediction", zero_snr=True)
    assert prediction_for("auto", plain) == Prediction("epsilon")
    assert prediction_for("epsilon", zsnr) == Prediction("epsilon")
    assert prediction_for("v_prediction", plain) == Prediction("v_prediction")
    assert prediction_for("auto", ModelSource("hub", "someone/model")) is None
    assert prediction_for("v_prediction", ModelSource("hub", "x/y")) == Prediction("v_prediction")


def test_scheduler_options_rescale_zero_snr_only_where_the_scheduler_can():
    from diffusers import DPMSolverSDEScheduler, EulerAncestralDiscreteScheduler

    zsnr = Prediction("v_prediction", zero_snr=True)
    assert scheduler_overrides(zsnr, EulerAncestralDiscreteScheduler) == {
        "prediction_type": "v_prediction",
        "rescale_betas_zero_snr": True,
    }
    assert scheduler_overrides(zsnr, DPMSolverSDEScheduler) == {"prediction_type": "v_prediction"}
    assert scheduler_overrides(None, EulerAncestralDiscreteScheduler) == {}


def test_prediction_type_setting_accepts_auto_epsilon_v_prediction(tmp_path):
    assert load_settings(env={}, home=tmp_path).models.prediction_type == "auto"
    env = {"ANIME_MODELS_PREDICTION_TYPE": "v_prediction"}
    assert load_settings(env=env, home=tmp_path).models.prediction_type == "v_prediction"
    with pytest.raises(ConfigError):
        load_settings(env={"ANIME_MODELS_PREDICTION_TYPE": "vpred"}, home=tmp_path)


@pytest.mark.slow
def test_a_v_pred_single_file_is_detected_sampled_and_recorded(anime_home, tiny_models):
    from PIL import Image

    from tools.engine.rendering import Engine
    from tools.generation.runtime import Runtime
    from tools.generation.specs import GenerationRequest

    tensors = load_file(str(tiny_models / "sd15.safetensors"))
    tensors.update(v_pred=torch.zeros(0), ztsnr=torch.zeros(0))
    checkpoint = anime_home / "noob_vpred.safetensors"
    save_file(tensors, str(checkpoint))
    models = {"checkpoint": str(checkpoint), "checkpoint_config": str(tiny_models / "sd15")}
    settings = load_settings(overrides={"models": models})
    engine = Engine(settings)
    engine.ensure_loaded()
    config = engine.pipe.scheduler.config
    assert (config.prediction_type, config.rescale_betas_zero_snr) == ("v_prediction", True)
    runtime = Runtime(settings, engine=engine)
    runtime.characters.add("sakura", Image.new("RGB", (96, 128), (240, 200, 210)))
    spec = runtime.planner.plan(GenerationRequest(character="sakura", random_pose=True, seed=1))[0]
    meta = runtime.producer.metadata(spec, spec.seed)
    assert (meta["prediction_type"], meta["zero_snr"]) == ("v_prediction", True)
    # The same file without the keys stays epsilon, as before.
    shutil.copy(tiny_models / "sd15.safetensors", checkpoint)
    plain = Engine(load_settings(overrides={"models": models}))
    plain.ensure_loaded()
    assert plain.pipe.scheduler.config.prediction_type == "epsilon"
