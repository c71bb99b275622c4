"""Read the generation parameters of a PNG: ours, A1111/Forge's and ComfyUI's.

Pure Python (PIL and json only) so `anime-gen info` stays fast. Every reader returns the contract
shape of `anime-gen info --json`: the fields below (null when a file lacks them), `source`, and
any further keys the file carries.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from PIL import Image

from tools.errors import UserError

OUR_METADATA_KEY = "anime-chat"
FIELDS = (
    "prompt",
    "negative_prompt",
    "steps",
    "sampler",
    "cfg_scale",
    "seed",
    "width",
    "height",
    "model",
    "clip_skip",
)
_INLINE_LORA = re.compile(r"<lora:([^:>]+)(?::([-+]?[0-9.]+))?[^>]*>")
# One `Key: value` entry of A1111's last line; a value may be "quoted, with commas".
_A1111_ENTRY = re.compile(r'\s*([\w \-/+]+?):\s*("(?:\\.|[^\\"])*"|[^,]*)(?:,|$)')
# A1111 schedule types that are part of the sampler name when not "Automatic".
_SCHEDULE_SUFFIX = {"karras": "Karras", "exponential": "Exponential", "sgm uniform": "SGM Uniform"}


def read_png_info(path: Path) -> dict[str, Any]:
    """The parameters of the image at `path`, in the `info --json` shape."""
    try:
        with Image.open(path) as image:
            text = dict(getattr(image, "text", {}) or image.info)
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot read {path}: {exc}", "give a PNG image file") from exc
    if OUR_METADATA_KEY in text:
        return parse_ours(json.loads(text[OUR_METADATA_KEY]))
    if isinstance(text.get("prompt"), str) and text["prompt"].lstrip().startswith("{"):
        return parse_comfyui(json.loads(text["prompt"]))
    if isinstance(text.get("parameters"), str):
        return parse_a1111(text["parameters"])
    raise UserError(
        f"{path} carries no generation parameters",
        "only PNGs written by anime-chat, A1111/Forge or ComfyUI record them",
    )


def _empty(source: str) -> dict[str, Any]:
    return {**dict.fromkeys(FIELDS), "loras": [], "source": source}


def parse_ours(meta: dict[str, Any]) -> dict[str, Any]:
    """Our JSON chunk, mapped onto the contract names; the rest kept as extra keys."""
    info = _empty("anime-chat")
    info.update({key: value for key, value in meta.items() if key not in info})
    info.pop("guidance_scale", None)
    for field in FIELDS:
        if field in meta:
            info[field] = meta[field]
    info["cfg_scale"] = meta.get("guidance_scale", meta.get("cfg_scale"))
    info["loras"] = [
        {"name": lora["name"], "weight": lora.get("weight")} for lora in meta.get("loras") or []
    ]
    return info


def parse_a1111_entries(line: str) -> dict[str, str]:
    """`Steps: 20, Sampler: Euler a, Lora hashes: "a: 1, b: 2"` → {key: value} (unquoted)."""
    entries: dict[str, str] = {}
    for match in _A1111_ENTRY.finditer(line):
        key, value = match.group(1).strip(), match.group(2).strip()
        if not key:
            continue
        if value.startswith('"') and value.endswith('"') and len(value) >= 2:
            value = json.loads(value) if _is_json_string(value) else value[1:-1]
        entries[key] = value
    return entries


def _is_json_string(value: str) -> bool:
    try:
        json.loads(value)
    except ValueError:
        return False
    return True


def parse_a1111(parameters: str) -> dict[str, Any]:
    """A1111/Forge's `parameters` text: prompt lines, `Negative prompt:` lines, settings line."""
    lines = parameters.strip().split("\n")
    settings_line = ""
    if len(lines) > 1 and re.match(r"\s*Steps:", lines[-1]):
        settings_line = lines.pop()
    prompt_lines, negative_lines = [], []
    target = prompt_lines
    for line in lines:
        if line.startswith("Negative prompt:"):
            target = negative_lines
            line = line[len("Negative prompt:") :].strip()
        target.append(line)
    entries = parse_a1111_entries(settings_line)
    info = _empty("a1111")
    info["prompt"] = "\n".join(prompt_lines).strip()
    info["negative_prompt"] = "\n".join(negative_lines).strip() if negative_lines else None
    info["steps"] = _number(entries.pop("Steps", None), int)
    info["sampler"] = _a1111_sampler(entries.pop("Sampler", None), entries.get("Schedule type"))
    info["cfg_scale"] = _number(entries.pop("CFG scale", None), float)
    info["seed"] = _number(entries.pop("Seed", None), int)
    size = entries.pop("Size", None)
    if size and re.fullmatch(r"\d+x\d+", size):
        width, height = size.split("x")
        info["width"], info["height"] = int(width), int(height)
    info["model"] = entries.pop("Model", None)
    info["clip_skip"] = _number(entries.pop("Clip skip", None), int)
    info["loras"] = _loras(info["prompt"], entries.get("Lora hashes"))
    info.update({key: value for key, value in entries.items() if key not in info})
    return info


def _a1111_sampler(sampler: str | None, schedule: str | None) -> str | None:
    if sampler is None:
        return None
    suffix = _SCHEDULE_SUFFIX.get((schedule or "").strip().lower())
    if suffix and not sampler.endswith(suffix):
        return f"{sampler} {suffix}"
    return sampler


def _number(value: Any, kind: type) -> Any:
    if value is None:
        return None
    try:
        return kind(float(value)) if kind is int else kind(value)
    except (TypeError, ValueError):
        return None


def _loras(prompt: str, hashes: str | None) -> list[dict[str, Any]]:
    """Inline `<lora:NAME:W>` tags (with their weights), then any only named in `Lora hashes`."""
    loras: dict[str, float | None] = {}
    for name, weight in _INLINE_LORA.findall(prompt):
        loras[name] = float(weight) if weight else 1.0
    for entry in (hashes or "").split(","):
        name = entry.split(":")[0].strip()
        if name and name not in loras:
            loras[name] = None
    return [{"name": name, "weight": weight} for name, weight in loras.items()]


def parse_comfyui(graph: dict[str, Any]) -> dict[str, Any]:
    """ComfyUI's API-format `prompt` graph: follow the sampler's links to its inputs."""
    info = _empty("comfyui")
    sampler_id = next(
        (
            node_id
            for node_id, node in graph.items()
            if str(node.get("class_type", "")).startswith("KSampler")
        ),
        None,
    )
    if sampler_id is None:
        return info
    sampler = graph[sampler_id]["inputs"]
    info["seed"] = _number(sampler.get("seed", sampler.get("noise_seed")), int)
    info["steps"] = _number(sampler.get("steps"), int)
    info["cfg_scale"] = _number(sampler.get("cfg"), float)
    name, scheduler = sampler.get("sampler_name"), sampler.get("scheduler")
    if name is not None:
        info["sampler"] = name if scheduler in (None, "normal") else f"{name}_{scheduler}"
    info["comfyui_sampler"] = name
    info["comfyui_scheduler"] = scheduler
    info["prompt"] = _linked_text(graph, sampler.get("positive"))
    info["negative_prompt"] = _linked_text(graph, sampler.get("negative"))
    latent = _upstream(graph, sampler.get("latent_image"), ("EmptyLatentImage",))
    if latent is not None:
        info["width"] = _number(latent["inputs"].get("width"), int)
        info["height"] = _number(latent["inputs"].get("height"), int)
    loras: list[dict[str, Any]] = []
    node = _node(graph, sampler.get("model"))
    while node is not None:
        inputs = node.get("inputs", {})
        if node.get("class_type") in ("LoraLoader", "LoraLoaderModelOnly"):
            loras.insert(
                0, {"name": _stem(inputs.get("lora_name")), "weight": _lora_weight(inputs)}
            )
        if "ckpt_name" in inputs:
            info["model"] = _stem(inputs["ckpt_name"])
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
    info["clip_skip"] = abs(int(clip_layer)) if clip_layer is not None else None
    return info


def _lora_weight(inputs: dict[str, Any]) -> float | None:
    weight = inputs.get("strength_model")
    return float(weight) if isinstance(weight, int | float) else None


def _stem(name: Any) -> Any:
    if not isinstance(name, str):
        return name
    return re.sub(r"\.(safetensors|ckpt|pt|pth|bin)$", "", name.replace("\\", "/").split("/")[-1])


def _node(graph: dict[str, Any], link: Any) -> dict[str, Any] | None:
    if isinstance(link, list) and link and str(link[0]) in graph:
        return graph[str(link[0])]
    return None


def _upstream(graph: dict[str, Any], link: Any, classes: tuple[str, ...]) -> dict[str, Any] | None:
    """The first node of one of `classes` reached by following links upstream (breadth first)."""
    queue, seen = [link], set()
    while queue:
        node = _node(graph, queue.pop(0))
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        if node.get("class_type") in classes:
            return node
        queue += [value for value in node.get("inputs", {}).values() if isinstance(value, list)]
    return None


def _linked_text(graph: dict[str, Any], link: Any) -> str | None:
    node = _upstream(graph, link, ("CLIPTextEncode", "CLIPTextEncodeSDXL"))
    if node is None:
        return None
    text = node["inputs"].get("text", node["inputs"].get("text_g"))
    return text if isinstance(text, str) else None


def format_info(info: dict[str, Any]) -> str:
    """Human-readable `anime-gen info` lines."""
    lines = [f"source: {info['source']}"]
    for field in FIELDS:
        if info.get(field) is not None:
            lines.append(f"{field}: {info[field]}")
    for lora in info.get("loras") or []:
        weight = "" if lora["weight"] is None else f" ({lora['weight']})"
        lines.append(f"lora: {lora['name']}{weight}")
    return "\n".join(lines)


# Sampler names as A1111 and ComfyUI write them → our `output.sampler` values.
_SAMPLER_NAMES = {
    "euler a": "euler_a",
    "euler_ancestral": "euler_a",
    "euler": "euler",
    "dpm++ 2m": "dpmpp_2m",
    "dpmpp_2m": "dpmpp_2m",
    "ddim": "ddim",
}


def replay_plan(info: dict[str, Any], character: str | None) -> tuple[dict[str, Any], list[str]]:
    """What `--from-png` draws: (request fields, settings overrides) and what it cannot map.

    Ours: the recorded character, pose id, user prompt, seed and settings. Others: their settings
    and prompt for the character named; anything without an equivalent here is listed.
    """
    ours = info["source"] == "anime-chat"
    who = character or (info.get("character") if ours else None)
    if not who:
        raise UserError(
            f"this image comes from {info['source']}: no character of ours is recorded",
            "add --character NAME",
        )
    unmapped: list[str] = []
    sampler = _SAMPLER_NAMES.get(str(info.get("sampler") or "").lower())
    if info.get("sampler") and sampler is None:
        unmapped.append(f"sampler '{info['sampler']}'")
    output: dict[str, Any] = {
        "steps": info.get("steps"),
        "guidance_scale": info.get("cfg_scale"),
        "sampler": sampler,
    }
    if info.get("width") and info.get("height"):
        output["resolution"] = f"{info['width']}x{info['height']}"
    request: dict[str, Any] = {"character": who, "seed": info.get("seed"), "count": 1}
    if ours:
        request["pose"] = (info.get("pose") or {}).get("id")
        request["prompt"] = info.get("user_prompt") or ""
    else:
        request["random_pose"] = True
        request["prompt"] = _INLINE_LORA.sub("", info.get("prompt") or "").strip(" ,")
        if info.get("model"):
            unmapped.append(f"checkpoint '{info['model']}' (ours: models.checkpoint)")
        unmapped += [f"LoRA '{lora['name']}'" for lora in info.get("loras") or []]
    return {"request": request, "output": output}, unmapped
