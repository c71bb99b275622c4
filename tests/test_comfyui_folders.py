"""`comfyui.root`: the studio's own pipeline finds a ComfyUI install's embeddings and VAEs (as it
finds its checkpoints, ControlNets and LoRAs, tests/test_comfyui.py), in `models/<folder>` and
through `extra_model_paths.yaml` (ComfyUI's `folder_paths.py` / `utils/extra_config.py`); a
hostile file is one line, never a traceback."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest

from tools.settings import load_settings


def settings_with_root(tmp_path, root, **env):
    return load_settings(env={"ANIME_COMFYUI_ROOT": str(root), **env}, home=tmp_path / "home")


def test_embeddings_in_comfyuis_models_folder_and_extra_paths_are_used(tmp_path, tiny_models):
    from tools.engine.extra_networks import available_embeddings, default_negative_prompt

    root = tmp_path / "ComfyUI"
    (root / "models/embeddings").mkdir(parents=True)
    embedding = next((tiny_models / "embeddings").iterdir())
    shutil.copyfile(embedding, root / "models/embeddings/EasyNegative.safetensors")
    webui = tmp_path / "webui"
    (webui / "embeddings").mkdir(parents=True)
    shutil.copyfile(embedding, webui / "embeddings/badhandv4.pt")
    (root / "extra_model_paths.yaml").write_text(
        f"a111:\n  base_path: {webui}\n  embeddings: embeddings\n"
    )
    paths = settings_with_root(tmp_path, root).paths
    found = available_embeddings(paths)
    assert found["EasyNegative"] == root / "models/embeddings/EasyNegative.safetensors"
    assert found["badhandv4"] == webui / "embeddings/badhandv4.pt"
    assert default_negative_prompt(paths).startswith("EasyNegative, badhandv4, ")
    assert "EasyNegative" not in available_embeddings(load_settings(env={}, home=paths.home).paths)


def test_a_vae_in_comfyuis_vae_folder_is_found_by_its_file_name(tmp_path, tiny_models):
    from tools.engine.loading import ModelSources
    from tools.engine.vae import find_vae

    root = tmp_path / "ComfyUI"
    (root / "models/vae").mkdir(parents=True)
    shutil.copyfile(tiny_models / "vae.safetensors", root / "models/vae/kl-f8-anime2.safetensors")
    env = {
        "ANIME_MODELS_CHECKPOINT": str(tiny_models / "sd15"),
        "ANIME_MODELS_CONTROLNET": str(tiny_models / "controlnet"),
        "ANIME_MODELS_IPADAPTER": str(tiny_models / "ip-adapter"),
        "ANIME_MODELS_VAE": "kl-f8-anime2.safetensors",
    }
    settings = settings_with_root(tmp_path, root, **env)
    ModelSources(settings).prefetch()  # would fail: "VAE not found"
    from tools.engine.comfyui_folders import setting_dirs

    assert find_vae(
        "kl-f8-anime2.safetensors", settings.paths.models, setting_dirs(str(root), "vae")
    ) == (
        "file",
        (root / "models/vae/kl-f8-anime2.safetensors").resolve(),
    )
    from tools.errors import UserError

    with pytest.raises(UserError):  # a name cannot climb out of ComfyUI's folder
        find_vae(
            "../vae/kl-f8-anime2.safetensors",
            tmp_path / "elsewhere",
            setting_dirs(str(root), "vae"),
        )


def test_doctor_finds_the_checkpoint_in_comfyuis_folder(tmp_path, tiny_models):
    from assistant.doctor import check_model

    root = tmp_path / "ComfyUI"
    (root / "models/checkpoints").mkdir(parents=True)
    shutil.copyfile(tiny_models / "sd15.safetensors", root / "models/checkpoints/mine.safetensors")
    settings = settings_with_root(tmp_path, root, ANIME_MODELS_CHECKPOINT="mine.safetensors",
                                  ANIME_MODELS_FAMILY="sd15")  # fmt: skip
    check = check_model(settings, "checkpoint")
    assert check.status == "ok" and str(root / "models/checkpoints") in check.detail


HOSTILE = {
    "bad YAML": ("a111: [unclosed\n", "is not valid YAML at line"),
    "huge": ("# padding\n" * 200_000, "is over 1 MB; not read"),
    "a list": ("- checkpoints\n", "is not a mapping of sections"),
    "deep": ("[" * 5000 + "]" * 5000, "is nested too deep"),
    "no folders": (
        'a: {checkpoints: 7, loras: [x], vae: "' + "x" * 300 + '", base_path: 9}\nb: oops\n',
        "has entries that are no folder names",
    ),
    "not UTF-8": (b"a111:\n  base_path: \xff\xfe\n", "is not UTF-8 text"),
    "a 5000-digit number": ("a:\n  checkpoints: " + "1" * 5000 + "\n", "has a value that cannot"),
    # One anchored 300-line string aliased 300 times: 90,000 folders from a 3 KB file.
    "/dev/zero": (Path("/dev/zero"), "is no regular file; not read"),
    "aliases": (
        'a:\n  loras: &s "'
        + "\\n".join(f"d{i}" for i in range(300))
        + '"\n'
        + "".join(f"  k{i}: *s\n" for i in range(300)),
        "has over 1000 entries; the rest are skipped",
    ),
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_a_hostile_extra_model_paths_yaml_is_one_line(tmp_path, tiny_models, caplog, case):
    from assistant.doctor import check_comfyui_root
    from tools.engine.loading import ModelSources

    root = tmp_path / "ComfyUI"
    (root / "models/checkpoints").mkdir(parents=True)
    shutil.copyfile(tiny_models / "sd15.safetensors", root / "models/checkpoints/mine.safetensors")
    text, expected = HOSTILE[case]
    config = root / "extra_model_paths.yaml"
    if isinstance(text, Path):  # a device: its stat says size 0, its read never ends
        config.symlink_to(text)
    else:
        config.write_bytes(text if isinstance(text, bytes) else text.encode())
    settings = settings_with_root(tmp_path, root, ANIME_MODELS_CHECKPOINT="mine.safetensors")
    with caplog.at_level(logging.WARNING):
        sources = ModelSources(settings)
        assert sources.checkpoint.location == str(root / "models/checkpoints/mine.safetensors")
        ModelSources(settings).checkpoint  # noqa: B018  (the same file again: no second line)
    lines = [r.getMessage() for r in caplog.records if "extra_model_paths" in r.getMessage()]
    assert len(lines) == 1 and expected in lines[0] and "\n" not in lines[0]
    (check,) = check_comfyui_root(settings)
    assert check.status == "warn" and expected in check.detail


def test_absolute_folders_and_dotdot_are_followed_as_comfyui_does(tmp_path, tiny_models):
    from assistant.doctor import check_comfyui_root
    from tools.engine.comfyui_folders import comfyui_dirs

    root = tmp_path / "ComfyUI"
    root.mkdir()
    shared = tmp_path / "shared/Lora"
    shared.mkdir(parents=True)
    shutil.copyfile(tiny_models / "lora/tiny.safetensors", shared / "style.safetensors")
    (root / "extra_model_paths.yaml").write_text(
        f"abs:\n  base_path: /\n  loras: {shared}\n"
        "rel:\n  loras: |\n    ../shared/Lora\n    " + "y" * 300 + "\n    /no/such/dir\n"
    )
    assert comfyui_dirs(str(root), "loras") == [shared, root / "../shared/Lora"]
    from tools.engine.extra_networks import find_lora

    found = find_lora("style", settings_with_root(tmp_path, root).paths)
    assert (found.folder, found.weight_name) == (shared.resolve(), "style.safetensors")
    (check,) = check_comfyui_root(settings_with_root(tmp_path, root))
    assert check.status == "ok" and str(shared) in check.detail
