"""Read the generation parameters of ComfyUI's API-format `prompt` graph (`tools.store.png_info`).

Follows the first-pass sampler's links upstream to its prompts, latent size, LoRAs, checkpoint
and clip skip.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from tools.store.png_fields import as_number, empty_info, file_stem


def parse_comfyui(graph: dict[str, Any]) -> dict[str, Any]:
    """ComfyUI's API-format `prompt` graph: follow the sampler's links to its inputs."""
    info = empty_info("comfyui")
    graph = _well_formed(graph)
    sampler_id = _first_pass_sampler(graph)
    if sampler_id is None:
        return info
    sampler = graph[sampler_id]["inputs"]
    info["seed"] = as_number(sampler.get("seed", sampler.get("noise_seed")), int)
    info["steps"] = as_number(sampler.get("steps"), int)
    info["cfg_scale"] = as_number(sampler.get("cfg"), float)
    name, scheduler = sampler.get("sampler_name"), sampler.get("scheduler")
    if isinstance(name, str):
        # Early ComfyUI wrote k-diffusion's function names ("sample_dpmpp_2m").
        name = name.removeprefix("sample_")
        plain = scheduler in (None, "normal", "simple")
        info["sampler"] = name if plain else f"{name}_{scheduler}"
    info["comfyui_sampler"] = name
    info["comfyui_scheduler"] = scheduler
    info["prompt"] = _linked_text(graph, sampler.get("positive"))
    info["negative_prompt"] = _linked_text(graph, sampler.get("negative"))
    latent = _upstream(graph, sampler.get("latent_image"), ("EmptyLatentImage",))
    if latent is not None:
        info["width"] = as_number(latent["inputs"].get("width"), int)
        info["height"] = as_number(latent["inputs"].get("height"), int)
    loras: list[dict[str, Any]] = []
    checkpoint_clip_skip = None
    node = _node(graph, sampler.get("model"))
    while node is not None:
        inputs = node.get("inputs", {})
        if node.get("class_type") in ("LoraLoader", "LoraLoaderModelOnly"):
            loras.insert(
                0, {"name": file_stem(inputs.get("lora_name")), "weight": _lora_weight(inputs)}
            )
        if "ckpt_name" in inputs:
            info["model"] = file_stem(inputs["ckpt_name"])
            config = re.search(r"clip_skip_(\d+)", str(inputs.get("config_name", "")))
            checkpoint_clip_skip = int(config[1]) if config else None
            break
        node = _node(graph, inputs.get("model"))
    info["loras"] = loras
    clip_layer = next(
        (
            node["inputs"].get("stop_at_clip_layer")
            for node in graph.values()
            if node.get("class_type") == "CLIPSetLastLayer"
        ),
        None,
    )
    clip_layer = as_number(clip_layer, int)
    info["clip_skip"] = abs(clip_layer) if isinstance(clip_layer, int) else checkpoint_clip_skip
    return info


def _well_formed(graph: Any) -> dict[str, Any]:
    """The graph's nodes as ComfyUI writes them (`{"class_type": str, "inputs": {...}}`);
    anything else in a crafted or damaged file is left out."""
    if not isinstance(graph, dict):
        return {}
    return {
        str(node_id): node
        for node_id, node in graph.items()
        if isinstance(node, dict)
        and isinstance(node.get("class_type"), str)
        and isinstance(node.get("inputs", {}), dict)
    }


def _first_pass_sampler(graph: dict[str, Any]) -> str | None:
    """The KSampler that starts from an empty latent (the first pass of a two-pass graph),
    else the first wired one; None without any."""
    samplers = [
        node_id
        for node_id, node in graph.items()
        if str(node.get("class_type", "")).startswith("KSampler")
        and "model" in node.get("inputs", {})
    ]
    for node_id in samplers:
        latent = _node(graph, graph[node_id]["inputs"].get("latent_image"))
        if latent is not None and latent.get("class_type") == "EmptyLatentImage":
            return node_id
    return samplers[0] if samplers else None


def _lora_weight(inputs: dict[str, Any]) -> float | None:
    weight = inputs.get("strength_model")
    return float(weight) if isinstance(weight, int | float) else None


def _node(graph: dict[str, Any], link: Any) -> dict[str, Any] | None:
    if isinstance(link, list) and link and str(link[0]) in graph:
        return graph[str(link[0])]
    return None


def _walk_upstream(graph: dict[str, Any], link: Any) -> Iterator[dict[str, Any]]:
    """The nodes reached by following links upstream from `link`, breadth first, each once.

    A node that takes and gives both conditionings (ComfyUI nodes.py `ControlNetApplyAdvanced`,
    `RETURN_NAMES = ("positive", "negative")`, and the like) is followed only through the input
    of the output slot the link comes from: `[node, 1]` is its negative."""
    queue, seen = [link], set()
    while queue:
        current = queue.pop(0)
        node = _node(graph, current)
        if node is None or (id(node), _slot(current)) in seen:
            continue
        seen.add((id(node), _slot(current)))
        yield node
        inputs = node.get("inputs", {})
        paired = isinstance(inputs.get("positive"), list) and isinstance(
            inputs.get("negative"), list
        )
        if paired and _slot(current) in (0, 1):
            queue.append(inputs["positive" if _slot(current) == 0 else "negative"])
            continue
        queue += [value for value in inputs.values() if isinstance(value, list)]


def _slot(link: Any) -> Any:
    return link[1] if isinstance(link, list) and len(link) > 1 else 0


def _upstream(graph: dict[str, Any], link: Any, classes: tuple[str, ...]) -> dict[str, Any] | None:
    """The first node of one of `classes` reached by following links upstream."""
    nodes = _walk_upstream(graph, link)
    return next((node for node in nodes if node.get("class_type") in classes), None)


# Inputs that hold a prompt's text in the text encoders and the text nodes that feed them.
_TEXT_INPUTS = ("text", "text_g", "populated_text", "wildcard_text", "string", "value")


def _linked_text(graph: dict[str, Any], link: Any) -> str | None:
    """The text of the first text encoder upstream of `link` (any CLIPTextEncode flavour),
    following a text input that is itself a link (wildcard and string nodes)."""
    for node in _walk_upstream(graph, link):
        if "CLIPTextEncode" in str(node.get("class_type", "")):
            return _text_of(graph, node.get("inputs", {}))
    return None


def _text_of(graph: dict[str, Any], inputs: dict[str, Any], depth: int = 0) -> str | None:
    for key in _TEXT_INPUTS:
        value = inputs.get(key)
        if isinstance(value, str) and (value or key != "text_g"):
            return value
        source = _node(graph, value)
        if source is not None and depth < 8:
            text = _text_of(graph, source.get("inputs", {}), depth + 1)
            if text is not None:
                return text
    return None
