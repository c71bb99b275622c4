import pytest

from tools.engine.model_sources import _pick_weights, resolve_source
from tools.errors import UserError


def test_hub_id_dir_and_file(tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    (models / "counterfeit_v3.safetensors").write_bytes(b"x")
    (models / "my-diffusers").mkdir()
    (models / "my-diffusers" / "model_index.json").write_text("{}")
    (models / "not-a-model").mkdir()
    assert resolve_source("gsdf/Counterfeit-V2.5", models, "checkpoint").kind == "hub"
    found = resolve_source("counterfeit_v3.safetensors", models, "checkpoint")
    assert (found.kind, found.label) == ("file", "counterfeit_v3.safetensors")
    assert resolve_source("my-diffusers", models, "checkpoint").kind == "dir"
    with pytest.raises(UserError, match="without model_index.json"):
        resolve_source("not-a-model", models, "checkpoint")


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


def test_first_download_prints_size_then_fetches_only_chosen_files(monkeypatch, tmp_path, capsys):
    import huggingface_hub
    from huggingface_hub.errors import LocalEntryNotFoundError

    from tools.engine.model_sources import fetch_hub

    calls = []

    def fake_snapshot(repo_id, local_files_only=False, allow_patterns=None):
        calls.append((local_files_only, allow_patterns))
        if local_files_only:
            raise LocalEntryNotFoundError("not cached")
        return str(tmp_path)

    class Sibling:
        def __init__(self, name, size):
            self.rfilename, self.size = name, size

    class FakeApi:
        def model_info(self, repo_id, files_metadata=False):
            siblings = [
                Sibling("model_index.json", 1_000),
                Sibling("unet/diffusion_pytorch_model.safetensors", 1_700_000_000),
                Sibling("unet/diffusion_pytorch_model.bin", 3_400_000_000),
            ]
            return type("Info", (), {"siblings": siblings})()

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot)
    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    assert fetch_hub("someone/anime", ["unet/*"], "checkpoint") == tmp_path
    assert "downloading checkpoint someone/anime (1.70 GB)" in capsys.readouterr().err
    assert calls[-1] == (
        False,
        ["model_index.json", "unet/diffusion_pytorch_model.safetensors"],
    )


def test_offline_hub_model_is_a_user_error_with_a_way_out(monkeypatch):
    import huggingface_hub
    from huggingface_hub.errors import LocalEntryNotFoundError

    from tools.engine.model_sources import fetch_hub

    def not_cached(*args, **kwargs):
        raise LocalEntryNotFoundError("not cached")

    class OfflineApi:
        def model_info(self, *args, **kwargs):
            raise OSError("offline")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", not_cached)
    monkeypatch.setattr(huggingface_hub, "HfApi", OfflineApi)
    with pytest.raises(UserError, match="cannot be fetched") as err:
        fetch_hub("someone/anime", [], "checkpoint")
    assert "local file or folder" in err.value.hint


def test_front_end_prefetch_downloads_hub_models_in_the_foreground(
    anime_home, tiny_models, monkeypatch, capsys
):
    import huggingface_hub
    from huggingface_hub.errors import LocalEntryNotFoundError

    from tools.jobs.client import prefetch_models
    from tools.settings import load_settings

    downloads = []

    def fake_snapshot(repo_id, local_files_only=False, allow_patterns=None):
        if local_files_only:
            raise LocalEntryNotFoundError("not cached")
        downloads.append(repo_id)
        return str(tiny_models / "controlnet")

    class FakeApi:
        def model_info(self, repo_id, files_metadata=False):
            sibling = type("S", (), {"rfilename": "diffusion_pytorch_model.safetensors",
                                     "size": 1_450_000_000})()  # fmt: skip
            return type("Info", (), {"siblings": [sibling]})()

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot)
    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    prefetch_models(load_settings(overrides={"models": {"controlnet": "someone/openpose"}}))
    assert downloads == ["someone/openpose"]
    assert "downloading controlnet someone/openpose (1.45 GB)" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("output", "downloaded"),
    [({}, []), ({"hires": 2}, ["someone/openpose"]), ({"face_detail": True}, ["someone/openpose"])],
)
def test_with_comfyui_drawing_the_front_end_prefetches_for_hires_and_face_detail(
    anime_home, tiny_models, monkeypatch, output, downloaded
):
    """They redraw ComfyUI's images with the local pipeline (tools/engine/second_pass.py), so
    they download here in the foreground too, not unseen in the worker."""
    import huggingface_hub
    from huggingface_hub.errors import LocalEntryNotFoundError

    from tools.jobs.client import prefetch_models
    from tools.settings import load_settings

    downloads = []

    def fake_snapshot(repo_id, local_files_only=False, allow_patterns=None):
        if local_files_only:
            raise LocalEntryNotFoundError("not cached")
        downloads.append(repo_id)
        return str(tiny_models / "controlnet")

    class FakeApi:
        def model_info(self, repo_id, files_metadata=False):
            return type("Info", (), {"siblings": []})()

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot)
    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    overrides = {"models": {"controlnet": "someone/openpose"}, "worker": {"backend": "comfyui"},
                 "quality": {"enabled": False}, "output": output}  # fmt: skip
    prefetch_models(load_settings(overrides=overrides))
    assert downloads == downloaded
