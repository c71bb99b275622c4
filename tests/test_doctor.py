import pytest

from assistant.doctor import check_model, check_ollama, ollama_url, run_checks
from tools.settings import load_settings


def test_doctor_lines_on_tiny_home(anime_home, monkeypatch):
    monkeypatch.setenv("ANIME_LLM_HOST", "http://127.0.0.1:9")
    checks = {check.name: check for check in run_checks(load_settings())}
    assert checks["models.checkpoint"].status == "ok"
    assert "local dir" in checks["models.checkpoint"].detail
    assert checks["ollama"].status == "warn"
    assert "ollama serve" in checks["ollama"].line()
    assert checks["python"].status == "ok"


def test_doctor_says_what_to_do_for_missing_file(anime_home):
    settings = load_settings(overrides={"models": {"checkpoint": "gone.safetensors"}})
    check = check_model(settings, "checkpoint")
    assert check.status == "fail"
    assert str(anime_home / "models") in check.line()


def test_doctor_hub_model_not_downloaded_is_a_warning(anime_home):
    settings = load_settings(overrides={"models": {"controlnet": "someone/not-cached"}})
    check = check_model(settings, "controlnet")
    assert check.status == "warn" and "downloads on the first image" in check.action


def test_ollama_reachable_with_and_without_model(anime_home):
    from tests.fake_ollama import FakeOllama

    with FakeOllama(models=("qwen2.5:7b",)) as server:
        pulled = check_ollama(load_settings(overrides={"llm": {"host": server.host}}))
        missing = check_ollama(
            load_settings(overrides={"llm": {"host": server.host, "model": "llama3:8b"}})
        )
    assert pulled.status == "ok"
    assert missing.status == "warn" and missing.action == "ollama pull llama3:8b"


def test_doctor_reports_the_aesthetic_model(anime_home):
    checks = {check.name: check for check in run_checks(load_settings())}
    assert checks["quality.aesthetic_model"].status == "ok"
    missing = load_settings(overrides={"quality": {"aesthetic_model": "/nowhere/model"}})
    check = {c.name: c for c in run_checks(missing)}["quality.aesthetic_model"]
    assert check.status == "warn" and "quality.aesthetic_model" in check.action


def test_doctor_aesthetic_hub_model_not_downloaded_says_it_downloads(anime_home):
    settings = load_settings(overrides={"quality": {"aesthetic_model": "someone/not-cached"}})
    check = {c.name: c for c in run_checks(settings)}["quality.aesthetic_model"]
    assert check.status == "warn" and "downloads on the first image" in check.action


@pytest.mark.parametrize(
    ("host", "url"),
    [
        ("0.0.0.0", "http://0.0.0.0:11434"),
        ("gpu-box", "http://gpu-box:11434"),
        ("gpu-box:9999", "http://gpu-box:9999"),
        ("http://gpu-box", "http://gpu-box:80"),
        ("0.0.0.0:11434", "http://0.0.0.0:11434"),
    ],
)
def test_doctor_reads_ollama_host_the_way_the_client_does(host, url):
    assert ollama_url(host) == url


def test_doctor_probes_a_bare_ollama_host_port(anime_home, monkeypatch):
    from tests.fake_ollama import FakeOllama

    with FakeOllama(models=("qwen2.5:7b",)) as server:
        bare = server.host.removeprefix("http://").replace("127.0.0.1", "0.0.0.0")
        monkeypatch.setenv("OLLAMA_HOST", bare)
        check = check_ollama(load_settings())
    assert check.status == "ok", check.line()
    monkeypatch.setenv("OLLAMA_HOST", "0.0.0.0")
    assert "http://0.0.0.0:11434" in check_ollama(load_settings()).detail


def test_doctor_on_a_fresh_home_with_the_default_settings_is_no_traceback(tmp_path, monkeypatch):
    """No config file: the defaults (image_encoder_folder null = the family's) are what a new
    user runs, and the tiny-model config of every other test hides them."""
    from typer.testing import CliRunner

    from assistant.gen_cli import app

    monkeypatch.setenv("ANIME_HOME", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("ANIME_LLM_HOST", "http://127.0.0.1:9")
    result = CliRunner().invoke(app, ["doctor"])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    assert "Traceback" not in result.output
    assert "models.ipadapter" in result.output


def test_doctor_with_comfyui_reports_only_the_local_models_something_here_loads(
    anime_home, monkeypatch
):
    monkeypatch.setenv("ANIME_LLM_HOST", "http://127.0.0.1:9")
    overrides = {
        "worker": {"backend": "comfyui"},
        "comfyui": {"url": "http://127.0.0.1:9"},
        "models": {"checkpoint": "someone/not-cached", "controlnet": "gone.safetensors"},
        "quality": {"enabled": False},
    }
    checks = {check.name: check for check in run_checks(load_settings(overrides=overrides))}
    assert not any(name.startswith("models.") for name in checks)  # ComfyUI draws: not needed
    assert checks["models"].status == "ok" and "none needed here" in checks["models"].detail
    assert checks["torch"].status == "ok"
    assert checks["comfyui"].status == "fail"  # what this backend needs: its ComfyUI
    gated = load_settings(overrides={**overrides, "quality": {"enabled": True}})
    checks = {check.name: check for check in run_checks(gated)}
    assert checks["models.checkpoint"].status == "warn"
    assert checks["models.controlnet"].status == "fail"
    assert "loaded here for the quality gate" in checks["models.checkpoint"].detail
    detailed = load_settings(overrides={**overrides, "output": {"face_detail": True}})
    checks = {check.name: check for check in run_checks(detailed)}
    assert "loaded here for output.face_detail" in checks["models.ipadapter"].detail
