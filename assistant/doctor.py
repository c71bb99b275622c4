"""`anime-gen doctor`: what is installed, reachable and configured, and what to do about it."""

from __future__ import annotations

import importlib.metadata
import json
import platform
import shutil
import urllib.request
from dataclasses import dataclass
from typing import Literal

from tools.engine.comfyui_folders import comfyui_dirs, extra_paths, setting_dirs
from tools.engine.local_models import local_model_uses
from tools.engine.model_sources import cached_snapshot, resolve_source, weight_patterns
from tools.errors import UserError
from tools.settings import Settings
from tools.user_paths import expand_user

Status = Literal["ok", "warn", "fail"]


@dataclass
class Check:
    name: str
    status: Status
    detail: str
    action: str = ""

    def line(self) -> str:
        text = f"[{self.status:>4}] {self.name}: {self.detail}"
        return f"{text} -> {self.action}" if self.action else text


def check_python() -> Check:
    version = platform.python_version()
    ok = tuple(int(p) for p in version.split(".")[:2]) >= (3, 11)
    return Check("python", "ok" if ok else "fail", version, "" if ok else "use Python 3.11+")


def check_torch(needed: bool = True) -> Check:
    """torch and its GPU; `needed` False: nothing draws here (ComfyUI does), so no GPU is fine."""
    try:
        import torch
    except ImportError:
        return Check("torch", "fail", "not installed", "pip install torch torchvision")
    if not needed and not torch.cuda.is_available():
        return Check(
            "torch", "ok", f"{torch.__version__}, no CUDA GPU (none needed: ComfyUI draws)"
        )
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        return Check(
            "torch",
            "ok",
            f"{torch.__version__}, CUDA {torch.version.cuda}: {props.name}, "
            f"{props.total_memory / 2**30:.0f} GiB",
        )
    return Check(
        "torch",
        "warn",
        f"{torch.__version__}, no CUDA GPU: CPU fp32 works but takes minutes an image",
        "install a CUDA build of torch on a machine with an NVIDIA GPU",
    )


def ollama_url(host: str) -> str:
    """`host` (OLLAMA_HOST / llm.host: `host`, `host:port`, `http://host`, ...) as the URL the
    ollama client connects to; its own parser, so doctor probes the port chat will use."""
    from ollama._client import _parse_host

    return _parse_host(host)


def check_model(settings: Settings, key: str) -> Check:
    from tools.engine.families import configured_models

    models = configured_models(settings)
    value = getattr(models, key)
    also = setting_dirs(settings.comfyui.root, key)
    try:
        source = resolve_source(value, settings.paths.models, key, also)
    except UserError as error:
        return Check(f"models.{key}", "fail", error.message, error.hint or "")
    if source.kind != "hub":
        return Check(f"models.{key}", "ok", f"local {source.kind}: {source.location}")
    if cached_snapshot(source.location, weight_patterns(models, key)) is not None:
        return Check(f"models.{key}", "ok", f"{source.location} downloaded (Hugging Face cache)")
    return Check(
        f"models.{key}",
        "warn",
        f"{source.location} is not downloaded yet",
        "it downloads on the first image (needs internet once)",
    )


def check_aesthetic(settings: Settings) -> Check:
    from tools.quality.aesthetic import aesthetic_status

    status, detail = aesthetic_status(settings)
    if status == "download":
        return Check(
            "quality.aesthetic_model",
            "warn",
            detail,
            "it downloads on the first image (needs internet once)",
        )
    if status == "warn":
        return Check(
            "quality.aesthetic_model",
            "warn",
            detail,
            "set quality.aesthetic_model to a local classifier folder or a hub id",
        )
    return Check("quality.aesthetic_model", "ok", detail)


def check_ollama(settings: Settings) -> Check:
    host = ollama_url(settings.ollama_host())
    try:
        with urllib.request.urlopen(f"{host}/api/tags", timeout=2) as response:
            models = [m.get("name", "") for m in json.load(response).get("models", [])]
    except (OSError, ValueError):
        return Check(
            "ollama",
            "warn",
            f"not reachable at {host}; chat uses the built-in rule planner",
            "install Ollama and run `ollama serve`",
        )
    wanted = settings.llm.model
    if any(name == wanted or name.split(":")[0] == wanted for name in models):
        return Check("ollama", "ok", f"{host}, model {wanted} pulled")
    return Check(
        "ollama", "warn", f"{host} is up but {wanted} is not pulled", f"ollama pull {wanted}"
    )


def check_disk(settings: Settings) -> Check:
    home = settings.paths.home
    free = shutil.disk_usage(home if home.exists() else home.parent).free / 2**30
    if free < 2:
        return Check("disk", "fail", f"{free:.1f} GiB free at {home}", "free some space")
    if free < 15:
        return Check("disk", "warn", f"{free:.1f} GiB free at {home}", "models need about 6 GiB")
    return Check("disk", "ok", f"{free:.0f} GiB free at {home}")


def check_config(settings: Settings) -> Check:
    path = settings.paths.config_file
    if path.exists():
        return Check("config", "ok", f"{path} is valid")
    return Check("config", "ok", f"no {path}; using defaults")


def check_packages() -> Check:
    versions = []
    for name in ("diffusers", "transformers", "chromadb", "ollama"):
        try:
            versions.append(f"{name} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            return Check("packages", "fail", f"{name} missing", "pip install -e .")
    return Check("packages", "ok", ", ".join(versions))


def check_comfyui(settings: Settings) -> list[Check]:
    """With `worker.backend: comfyui`: each ComfyUI URL, its version, the nodes and models."""
    if settings.worker.backend != "comfyui":
        return []
    from tools.comfyui.doctor import comfyui_status

    return [Check("comfyui", *comfyui_status(settings, url)) for url in settings.comfyui.urls]


def check_comfyui_root(settings: Settings) -> list[Check]:
    """`comfyui.root`: the ComfyUI folders searched for model files, and the one line about a
    broken `extra_model_paths.yaml`."""
    root = settings.comfyui.root
    if not root:
        return []
    base = expand_user(root)
    if not base.is_dir():
        return [Check("comfyui.root", "warn", f"{base} is no folder", "set comfyui.root to "
                      "your ComfyUI folder (the one with main.py and models/)")]  # fmt: skip
    folders = [
        str(folder)
        for kind in ("checkpoints", "controlnet", "loras", "vae", "embeddings")
        for folder in comfyui_dirs(root, kind)
    ]
    shown = ", ".join(folders[:8]) + (f" and {len(folders) - 8} more" if len(folders) > 8 else "")
    problem = extra_paths(base).problem
    if problem:
        return [Check("comfyui.root", "warn", problem, "fix the file as ComfyUI's "
                      "extra_model_paths.yaml.example shows")]  # fmt: skip
    return [Check("comfyui.root", "ok", f"model files also found in {shown or 'no folder yet'}")]


def check_local_models(settings: Settings) -> list[Check]:
    """`models.checkpoint` / `controlnet` / `ipadapter`, where something here loads them."""
    uses = local_model_uses(settings)
    if not uses:
        return [Check("models", "ok", "none needed here: ComfyUI draws, and the quality gate, "
                      "output.hires and output.face_detail are off")]  # fmt: skip
    checks = [check_model(settings, key) for key in ("checkpoint", "controlnet", "ipadapter")]
    if uses != ["drawing"]:
        for check in checks:
            check.detail += f" (loaded here for {', '.join(uses)}; ComfyUI draws)"
    return checks


def run_checks(settings: Settings) -> list[Check]:
    return [
        check_python(),
        check_config(settings),
        check_packages(),
        check_torch(needed=bool(local_model_uses(settings))),
        *check_local_models(settings),
        check_aesthetic(settings),
        check_ollama(settings),
        *check_comfyui(settings),
        *check_comfyui_root(settings),
        check_disk(settings),
    ]
