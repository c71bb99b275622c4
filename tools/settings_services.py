"""The service sections of `Settings`: the studio server and the user's ComfyUI backend.

Split from `tools/settings_sections.py` (the line limit); the same conventions hold: each value
also accepts the text an environment variable holds.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BeforeValidator, Field

from tools.settings_sections import Duration, LoraSetting, Section, parse_loras

HOST_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?")


def parse_host_names(value: Any) -> Any:
    """`server.allowed_hosts` from a list, or from "name,name" (environment variables); each a
    bare host name, lower-cased (Host headers are compared without case or port)."""
    if isinstance(value, str):
        value = [part for part in (part.strip() for part in value.split(",")) if part]
    if not isinstance(value, list):
        return value
    names = []
    for name in value:
        if not isinstance(name, str) or not HOST_NAME.fullmatch(name):
            raise ValueError(f"{name!r} is not a host name (no scheme, port, path or wildcard)")
        names.append(name.lower())
    return names


class ServerSettings(Section):
    host: str = "127.0.0.1"
    port: int = Field(7788, ge=0, le=65535)
    # Host names besides loopback that a request may name (a client in a container reaches
    # the host as host.docker.internal): an explicit opt-in; the token is still required.
    allowed_hosts: Annotated[list[str], BeforeValidator(parse_host_names)] = Field(
        default_factory=list
    )
    # The server's own idle exit; it holds CPU-side state only (the GPU worker has
    # worker.keep_alive), so it can stay warm far longer and spare the cold start.
    keep_alive: Duration = 7200.0


DEFAULT_COMFYUI_URL = "http://127.0.0.1:8188"


def parse_urls(value: Any) -> Any:
    """`comfyui.url`: one URL, a list, or "URL,URL" (environment variables)."""
    if isinstance(value, str):
        urls = [part.strip().rstrip("/") for part in value.split(",") if part.strip()]
        return urls[0] if len(urls) == 1 else urls
    return value


def _check_url(url: str) -> str:
    if not re.fullmatch(r"https?://[^\s/?#]+(/[^\s?#]*)?", url):
        raise ValueError(f"'{url}' is not an http:// URL like {DEFAULT_COMFYUI_URL}")
    return url.rstrip("/")


ComfyURL = Annotated[str, BeforeValidator(lambda value: _check_url(str(value)))]


class ComfyUISettings(Section):
    """The user's own ComfyUI as the render backend (`worker.backend: comfyui`, docs/COMFYUI.md)."""

    url: Annotated[ComfyURL | list[ComfyURL], BeforeValidator(parse_urls)] = DEFAULT_COMFYUI_URL
    # null: our built-in graph; else a workflow file exported with ComfyUI's "Save (API)".
    workflow: str | None = None
    # One prompt, from queueing to its last output (also how long a job waits for ComfyUI).
    timeout: Duration = 600.0
    # A ComfyUI install: its models/ folders (and extra_model_paths.yaml) are searched by name.
    root: str | None = None
    # The names ComfyUI knows the models by; null: the file name of the matching models.* key.
    checkpoint: str | None = None
    controlnet: str | None = None
    ipadapter_preset: str = "PLUS (high strength)"
    loras: Annotated[list[LoraSetting] | None, BeforeValidator(parse_loras)] = None

    @property
    def urls(self) -> list[str]:
        return [self.url] if isinstance(self.url, str) else list(self.url)
