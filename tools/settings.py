"""One `Settings` model, resolved once: CLI flag > environment > config file > default.

Home is `$ANIME_HOME` if set, else `~`; every path the project touches lives below it (see
`Paths`). The config file is `<home>/.anime-config.yaml`. Environment overrides are named
`ANIME_<SECTION>_<KEY>` (e.g. `ANIME_OUTPUT_RESOLUTION=768x1024`); `OLLAMA_HOST` fills
`llm.host` when the file leaves it unset. The section models and the parsing of their values are
in `tools/settings_sections.py` and
`tools/settings_services.py`.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, Field, ValidationError

from tools.env_names import OTHER_ENV, resolve_home, unlisted_names
from tools.errors import ConfigError
from tools.settings_sections import (
    DEFAULT_CONTROLNET,
    FaceDetailSettings,
    HiresSettings,
    LLMSettings,
    LoraSetting,
    ModelSettings,
    OutputSettings,
    QualitySettings,
    Resolution,
    Section,
    WorkerSettings,
)
from tools.settings_services import ComfyUISettings, ServerSettings

# The section models are imported from here too (`from tools.settings import HiresSettings`).
__all__ = [
    "CONFIG_FILENAME",
    "ComfyUISettings",
    "DEFAULT_CONTROLNET",
    "FaceDetailSettings",
    "HiresSettings",
    "LLMSettings",
    "LoraSetting",
    "ModelSettings",
    "OutputSettings",
    "Paths",
    "QualitySettings",
    "Resolution",
    "ServerSettings",
    "Settings",
    "WorkerSettings",
    "load_settings",
    "resolve_home",
    "unknown_environment",
]

CONFIG_FILENAME = ".anime-config.yaml"


@dataclass(frozen=True)
class Paths:
    """Every location below home, in one place."""

    home: Path
    # `comfyui.root`: a ComfyUI install whose model folders are searched too (LoRAs, ...).
    comfyui_root: str | None = None

    @property
    def config_file(self) -> Path:
        return self.home / CONFIG_FILENAME

    @property
    def characters(self) -> Path:
        return self.home / ".anime-characters"

    @property
    def output(self) -> Path:
        return self.home / "anime-output"

    @property
    def state(self) -> Path:
        return self.home / ".anime-chat"

    @property
    def models(self) -> Path:
        return self.home / "models"

    @property
    def user_poses(self) -> Path:
        return self.state / "poses"


class Settings(Section):
    models: ModelSettings = ModelSettings()
    output: OutputSettings = OutputSettings()
    quality: QualitySettings = QualitySettings()
    llm: LLMSettings = LLMSettings()
    worker: WorkerSettings = WorkerSettings()
    server: ServerSettings = ServerSettings()
    comfyui: ComfyUISettings = ComfyUISettings()
    home: Path = Field(default_factory=Path.home, exclude=True)

    @property
    def paths(self) -> Paths:
        return Paths(self.home, self.comfyui.root)

    def ollama_host(self) -> str:
        return self.llm.host or "http://localhost:11434"


_SECTIONS = ("models", "output", "quality", "llm", "worker", "server", "comfyui")


def _read_file(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark else ""
        raise ConfigError(
            f"{path}: not valid YAML{where}",
            "fix the syntax or move the file away to use the defaults",
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot be read ({exc})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of sections ({', '.join(_SECTIONS)})")
    return data


def _env_layer(env: Mapping[str, str]) -> dict[str, dict[str, str]]:
    layer: dict[str, dict[str, str]] = {}
    for section in _SECTIONS:
        fields = Settings.model_fields[section].annotation.model_fields  # type: ignore[union-attr]
        for key in fields:
            value = env.get(f"ANIME_{section}_{key}".upper())
            if value is not None:
                layer.setdefault(section, {})[key] = value
    return layer


def _setting_names() -> dict[str, str]:
    """`ANIME_<SECTION>_<KEY>` -> `section.key`, for every setting."""
    return {
        f"ANIME_{section}_{key}".upper(): f"{section}.{key}"
        for section in _SECTIONS
        for key in Settings.model_fields[section].annotation.model_fields  # type: ignore[union-attr]
    }


def unknown_environment(env: Mapping[str, str] | None = None) -> list[str]:
    """One line for each `ANIME_` variable that names no setting (a typo, or a key of a newer
    version), which `load_settings` ignores: the closest name, else the keys it could mean."""
    settings = _setting_names()
    lines = []
    for name in unlisted_names(env):
        line = f"{name} is not a setting (ignored); "
        close = difflib.get_close_matches(name, [*settings, *OTHER_ENV], n=1, cutoff=0.8)
        section = next((s for s in _SECTIONS if name.startswith(f"ANIME_{s.upper()}_")), None)
        if close:
            key = settings.get(close[0])
            line += f"did you mean {close[0]}{f' ({key})' if key else ''}?"
        elif section is not None:
            keys = Settings.model_fields[section].annotation.model_fields  # type: ignore[union-attr]
            line += f"known keys of {section}: {', '.join(keys)}"
        else:
            line += f"settings are ANIME_<SECTION>_<KEY>; sections: {', '.join(_SECTIONS)}"
        lines.append(line)
    return lines


def _merge(base: dict[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in top.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _merge(dict(merged[key]), value)
        else:
            merged[key] = value
    return merged


# Mappings inside a section, for the "known keys" of a typo in them.
_NESTED_SECTIONS: dict[tuple[str, ...], type[BaseModel]] = {
    ("output", "hires"): HiresSettings,
    ("output", "face_detail"): FaceDetailSettings,
}


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _explain(error: ValidationError, source: str) -> ConfigError:
    first = error.errors()[0]
    key = ".".join(str(part) for part in first["loc"])
    if first["type"] == "extra_forbidden":
        section = first["loc"][0] if len(first["loc"]) > 1 else None
        known = (
            Settings.model_fields[section].annotation.model_fields  # type: ignore[union-attr]
            if section in _SECTIONS
            else _SECTIONS
        )
        nested = _NESTED_SECTIONS.get(tuple(first["loc"][:-1]))
        if nested is not None:
            known = nested.model_fields
        return ConfigError(f"{source}: unknown key '{key}'", f"known keys: {', '.join(known)}")
    message = first["msg"].removeprefix("Value error, ")
    # A value from a file or the environment may hold line breaks: the error stays one line.
    return ConfigError(f"{source}: {key}: {_CONTROL.sub(lambda c: repr(c[0])[1:-1], message)}")


def load_settings(
    overrides: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    home: Path | None = None,
) -> Settings:
    """Resolve settings once. `overrides` are CLI flags as nested sections."""
    env = os.environ if env is None else env
    home = home or resolve_home(env)
    path = home / CONFIG_FILENAME
    file_layer = _read_file(path)
    try:
        Settings.model_validate(file_layer)
    except ValidationError as exc:
        raise _explain(exc, str(path)) from None

    merged = _merge(file_layer, _env_layer(env))
    if env.get("OLLAMA_HOST") and not merged.get("llm", {}).get("host"):
        merged = _merge(merged, {"llm": {"host": env["OLLAMA_HOST"]}})
    merged = _merge(merged, {k: v for k, v in (overrides or {}).items() if v is not None})
    try:
        return Settings.model_validate({**merged, "home": home})
    except ValidationError as exc:
        raise _explain(exc, "environment or command-line override") from None
