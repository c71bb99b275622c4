import pytest

from tools.errors import UserError
from tools.model_sources import _pick_weights, resolve_source


def test_hub_id_dir_and_file(tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    (models / "counterfeit_v3.safetensors").write_bytes(b"x")
    (models / "my-diffusers").mkdir()
    assert resolve_source("gsdf/Counterfeit-V2.5", models, "checkpoint").kind == "hub"
    found = resolve_source("counterfeit_v3.safetensors", models, "checkpoint")
    assert (found.kind, found.label) == ("file", "counterfeit_v3.safetensors")
    assert resolve_source("my-diffusers", models, "checkpoint").kind == "dir"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("missing.safetensors", "checkpoint not found"),
        ("/abs/missing", "checkpoint not found"),
        ("not a hub id", "neither a local path nor a hub id"),
    ],
)
def test_unresolvable_sources_are_user_errors(tmp_path, value, message):
    with pytest.raises(UserError, match=message):
        resolve_source(value, tmp_path, "checkpoint")


def test_wrong_file_type(tmp_path):
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(UserError, match="not a .safetensors"):
        resolve_source(str(tmp_path / "notes.txt"), tmp_path, "checkpoint")


def test_pick_weights_prefers_one_safetensors_per_folder():
    files = [
        "model_index.json",
        "unet/config.json",
        "unet/diffusion_pytorch_model.bin",
        "unet/diffusion_pytorch_model.safetensors",
        "unet/diffusion_pytorch_model.fp16.safetensors",
        "vae/diffusion_pytorch_model.bin",
        "safety_checker/model.safetensors",
    ]
    chosen = _pick_weights(files, ["unet/*", "vae/*"])
    assert "unet/diffusion_pytorch_model.safetensors" in chosen
    assert "unet/diffusion_pytorch_model.bin" not in chosen
    assert "vae/diffusion_pytorch_model.bin" in chosen
    assert "safety_checker/model.safetensors" not in chosen
