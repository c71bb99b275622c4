"""What `anime-gen doctor` says about ComfyUI (`worker.backend: comfyui`): reachable, its
version (`/system_stats`), and whether it has every node pack and model name the configured
graph needs (the same check a job makes before it queues anything)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from tools.comfyui.client import ComfyUIClient, ComfyUIError
from tools.comfyui.graph import (
    Drawing,
    built_in_graph,
    check_graph,
    comfy_loras,
    resolve_models,
)
from tools.comfyui.workflow import fill_workflow, load_workflow
from tools.errors import UserError
from tools.settings import Settings


def sample_graph(settings: Settings, info: dict[str, Any]) -> tuple[dict[str, Any], set[str]]:
    """The graph a job would queue (pose and reference names are placeholders)."""
    output, models = settings.output, settings.models
    drawing = Drawing(
        prompt="", negative_prompt="", seed=0, steps=output.steps, cfg=output.guidance_scale,
        sampler=output.sampler, width=output.resolution.width, height=output.resolution.height,
        clip_skip=models.clip_skip, controlnet_strength=models.controlnet_strength,
        ipadapter_weight=models.ipadapter_weight, pose_image="pose.png",
        reference_image="reference.png", checkpoint="", controlnet="",
        ipadapter_preset=settings.comfyui.ipadapter_preset,
    )  # fmt: skip
    loras = [(lora.name, lora.weight) for lora in models.loras]
    if settings.comfyui.workflow:
        ours = replace(drawing, loras=comfy_loras(settings, loras))
        graph, slots = fill_workflow(load_workflow(settings.comfyui.workflow), ours)
        return graph, set(slots.values())
    checkpoint, controlnet, named_loras = resolve_models(settings, info, loras)
    graph = built_in_graph(
        replace(drawing, checkpoint=checkpoint, controlnet=controlnet, loras=named_loras)
    )
    return graph, set(graph)


def comfyui_status(settings: Settings, url: str) -> tuple[str, str, str]:
    """(status, detail, action) for one ComfyUI URL."""
    client = ComfyUIClient(url, timeout=5.0)
    try:
        stats = client.system_stats()
        info = client.object_info()
    except ComfyUIError as error:
        return "fail", str(error), "start ComfyUI (python main.py), or set comfyui.url"
    system = stats.get("system")
    version = system.get("comfyui_version", "?") if isinstance(system, dict) else "?"
    try:
        graph, filled = sample_graph(settings, info)
        check_graph(graph, info, filled)
    except UserError as error:
        return "fail", f"{url} (ComfyUI {version}): {error.message}", error.hint or ""
    kind = "your workflow" if settings.comfyui.workflow else "the built-in graph"
    return "ok", f"{url}, ComfyUI {version}: has every node and model {kind} needs", ""
