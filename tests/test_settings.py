from pathlib import Path

import pytest

from tools.errors import ConfigError
from tools.settings import Resolution, load_settings


def write_config(home: Path, text: str) -> Path:
    path = home / ".anime-config.yaml"
    path.write_text(text)
    return path


def test_defaults_without_file(tmp_path):
    settings = load_settings(env={}, home=tmp_path)
    assert settings.output.resolution == Resolution(512, 768)
    assert settings.models.ipadapter_weight == 0.95
    assert settings.quality.min_consistency == 0.90
    assert settings.worker.keep_alive == 600
    assert settings.paths.characters == tmp_path / ".anime-characters"


def test_anime_home_relocates_everything(tmp_path):
    settings = load_settings(env={"ANIME_HOME": str(tmp_path)})
    assert settings.home == tmp_path
    assert settings.paths.output == tmp_path / "anime-output"


def test_seed_keys_from_file(tmp_path):
    write_config(
        tmp_path,
        "models:\n  checkpoint: counterfeit_v3.safetensors\n  ipadapter_weight: 0.8\n"
        "  controlnet_strength: 0.6\noutput:\n  resolution: 768x1024\n  organize_by_date: false\n"
        "worker:\n  hang_timeout: 90s\n  keep_alive: 2m\n",
    )
    settings = load_settings(env={}, home=tmp_path)
    assert settings.models.checkpoint == "counterfeit_v3.safetensors"
    assert settings.models.controlnet_strength == 0.6
    assert settings.output.resolution == Resolution(768, 1024)
    assert settings.output.organize_by_date is False
    assert settings.worker.hang_timeout == 90
    assert settings.worker.keep_alive == 120


def test_precedence_flag_over_env_over_file(tmp_path):
    write_config(tmp_path, "llm:\n  model: from-file\noutput:\n  resolution: 512x512\n")
    env = {"ANIME_LLM_MODEL": "from-env", "ANIME_OUTPUT_RESOLUTION": "640x640"}
    settings = load_settings(overrides={"llm": {"model": "from-flag"}}, env=env, home=tmp_path)
    assert settings.llm.model == "from-flag"
    assert settings.output.resolution == Resolution(640, 640)


def test_ollama_host_env_fills_unset_host(tmp_path):
    settings = load_settings(env={"OLLAMA_HOST": "http://127.0.0.1:9"}, home=tmp_path)
    assert settings.ollama_host() == "http://127.0.0.1:9"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("models: [unclosed\n", "not valid YAML"),
        ("models:\n  chekpoint: x\n", "unknown key 'models.chekpoint'"),
        ("output:\n  resolution: big\n", "output.resolution"),
        ("output:\n  resolution: 100000x5\n", "output.resolution"),
        ("models:\n  ipadapter_weight: lots\n", "models.ipadapter_weight"),
        ("worker:\n  hang_timeout: soon\n", "worker.hang_timeout"),
        ("colours: {}\n", "unknown key 'colours'"),
        ("- a\n- b\n", "expected a mapping"),
    ],
)
def test_bad_file_names_file_and_key(tmp_path, text, expected):
    path = write_config(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_settings(env={}, home=tmp_path)
    message = err.value.message
    assert str(path) in message
    assert expected in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("value", "scale"), [(1.5, 1.5), ("2", 2.0), ("1.5x", 1.5), ({"scale": 2}, 2.0)]
)
def test_hires_from_a_bare_scale_or_a_mapping(tmp_path, value, scale):
    hires = load_settings(overrides={"output": {"hires": value}}, env={}, home=tmp_path).output
    assert hires.hires.scale == scale
    assert (hires.hires.denoise, hires.hires.steps, hires.hires.upscaler) == (0.5, None, "latent")


def test_second_passes_are_off_by_default_and_read_from_file_and_env(tmp_path):
    assert load_settings(env={}, home=tmp_path).output.hires is None
    assert load_settings(env={}, home=tmp_path).output.face_detail is None
    write_config(tmp_path, "output:\n  hires: {scale: 2, upscaler: lanczos}\n  face_detail: true\n")
    output = load_settings(env={}, home=tmp_path).output
    assert (output.hires.scale, output.hires.upscaler) == (2.0, "lanczos")
    assert output.face_detail.denoise == 0.4
    env = {"ANIME_OUTPUT_HIRES": "off", "ANIME_OUTPUT_FACE_DETAIL": "false"}
    output = load_settings(env=env, home=tmp_path).output
    assert output.hires is None and output.face_detail is None
    env = {
        "ANIME_OUTPUT_HIRES": "{scale: 1.25, steps: 8}",
        "ANIME_OUTPUT_FACE_DETAIL": "{padding: 16}",
    }
    output = load_settings(env=env, home=tmp_path).output
    assert (output.hires.scale, output.hires.steps, output.face_detail.padding) == (1.25, 8, 16)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"hires": 1.0}, "output.hires.scale: Input should be greater than 1"),
        ({"hires": "big"}, "'big' is not a scale (e.g. 1.5)"),
        ({"hires": {"scale": 2, "upscaler": "esrgan"}}, "output.hires.upscaler"),
        ({"hires": {"scael": 2}}, "unknown key 'output.hires.scael'"),
        ({"face_detail": "maybe"}, "'maybe' is not true, false or a mapping"),
        ({"face_detail": {"denoise": 0}}, "output.face_detail.denoise"),
    ],
)
def test_second_pass_settings_explain_bad_values(tmp_path, override, message):
    with pytest.raises(ConfigError) as error:
        load_settings(overrides={"output": override}, env={}, home=tmp_path)
    assert message in str(error.value)


def test_a_typo_in_hires_lists_the_hires_keys(tmp_path):
    with pytest.raises(ConfigError) as error:
        load_settings(overrides={"output": {"hires": {"scael": 2}}}, env={}, home=tmp_path)
    assert error.value.hint == "known keys: scale, denoise, steps, upscaler"


# --- ANIME_ variables that name no setting -------------------------------------------------------


@pytest.fixture
def cli_home(tmp_path, monkeypatch):
    monkeypatch.setenv("ANIME_HOME", str(tmp_path))
    return tmp_path


def test_an_unknown_anime_variable_is_named_once_with_the_closest_key(cli_home, monkeypatch):
    from typer.testing import CliRunner

    from assistant.gen_cli import app

    monkeypatch.setenv("ANIME_OUTPUT_STEP", "30")
    result = CliRunner().invoke(app, ["characters", "list"])
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.stderr.splitlines() if "ANIME_OUTPUT_STEP " in line]
    assert len(warnings) == 1, result.stderr
    assert warnings[0].startswith("warning: ")
    assert "ANIME_OUTPUT_STEPS (output.steps)" in warnings[0]


def test_anime_chat_names_an_unknown_variable_too(cli_home, monkeypatch):
    from typer.testing import CliRunner

    from assistant.chat_cli import app

    monkeypatch.setenv("ANIME_WORKER_KEEPALIVE", "1h")
    result = CliRunner().invoke(app, ["-c", "draw sakura", "--plan-only", "--planner", "rules"])
    assert result.exit_code == 0, result.output
    assert result.stderr.count("ANIME_WORKER_KEEPALIVE") == 1, result.stderr
    assert "ANIME_WORKER_KEEP_ALIVE (worker.keep_alive)" in result.stderr


def test_settings_and_other_anime_variables_are_not_warned_about(cli_home, monkeypatch):
    from typer.testing import CliRunner

    from assistant.gen_cli import app

    for name, value in [
        ("ANIME_OUTPUT_STEPS", "30"),
        ("ANIME_WORKER_FAULTS", "oom:1"),
        ("ANIME_CHAT_IMAGES", "off"),
        ("ANIME_IN_PROCESS", "1"),
    ]:
        monkeypatch.setenv(name, value)
    result = CliRunner().invoke(app, ["characters", "list"])
    assert result.exit_code == 0, result.output
    assert "warning" not in result.stderr


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("ANIME_HOEM", "did you mean ANIME_HOME?"),
        ("ANIME_SERVER_KEEP_ALIVEE", "did you mean ANIME_SERVER_KEEP_ALIVE (server.keep_alive)?"),
        ("ANIME_WORKER_ZZZ", "known keys of worker: keep_alive, hang_timeout"),
        ("ANIME_ZZZ", "settings are ANIME_<SECTION>_<KEY>; sections: models, output"),
    ],
)
def test_an_unknown_variable_names_the_closest_or_the_known_keys(name, expected):
    from tools.settings import unknown_environment

    (line,) = unknown_environment({name: "x", "ANIME_OUTPUT_STEPS": "3", "ANIME_HOME": "/h"})
    assert line.startswith(f"{name} is not a setting (ignored)")
    assert expected in line
    assert "\n" not in line


def test_every_anime_variable_the_code_reads_is_a_setting_or_known():
    """A new ANIME_ variable that is not a setting must be added to `OTHER_ENV`, else the
    CLIs would warn about it."""
    import re

    from tools.settings import unknown_environment

    root = Path(__file__).resolve().parent.parent
    names = set()
    for folder in ("assistant", "tools", "posebank", "evals"):
        for path in (root / folder).rglob("*.py"):
            names.update(re.findall(r"\bANIME_[A-Z][A-Z0-9_]*[A-Z0-9]\b", path.read_text()))
    assert {"ANIME_HOME", "ANIME_WORKER_FAULTS", "ANIME_IN_PROCESS"} <= names
    assert unknown_environment(dict.fromkeys(names, "1")) == []


def test_the_light_list_of_setting_names_is_the_settings_own():
    """`tools.env_names.SETTING_ENV` (read by thin clients without pydantic) names every setting
    and nothing else."""
    from tools.env_names import SETTING_ENV
    from tools.settings import _setting_names

    assert set(_setting_names()) == SETTING_ENV


def test_a_typo_is_still_warned_about_by_a_thin_client(monkeypatch):
    from tools.env_names import unlisted_names

    monkeypatch.setenv("ANIME_OUTPUT_STEPZ", "3")
    monkeypatch.setenv("ANIME_OUTPUT_STEPS", "3")
    assert unlisted_names() == ["ANIME_OUTPUT_STEPZ"]
