"""What the fake ComfyUI (tests/fake_comfyui.py) knows: its model names, its `/object_info`
shaped like server.py's `node_info`, execution.py's `validate_prompt` answer, and the
deterministic PNG its SaveImage writes."""

from __future__ import annotations

import json
import random
from io import BytesIO
from typing import Any

CHECKPOINTS = ["counterfeit_v3.safetensors", "anything-v5.safetensors"]
CONTROLNETS = ["control_v11p_sd15_openpose.pth"]
LORAS = ["detail_tweaker.safetensors", "sakura_style.safetensors"]
PRESETS = ["LIGHT - SD1.5 only (low strength)", "STANDARD (medium strength)",
           "PLUS (high strength)", "PLUS FACE (portraits)"]  # fmt: skip
SAMPLERS = ["euler", "euler_ancestral", "dpmpp_2m", "dpmpp_sde", "dpmpp_2m_sde", "ddim", "uni_pc"]
SCHEDULERS = ["normal", "karras", "exponential", "sgm_uniform", "simple", "ddim_uniform"]


def _node(inputs: dict[str, Any], outputs: list[str], output_node: bool = False,
          module: str = "nodes") -> dict[str, Any]:  # fmt: skip
    """One `/object_info` entry, shaped like server.py's `node_info`."""
    return {"input": {"required": inputs}, "input_order": {"required": list(inputs)},
            "output": outputs, "output_is_list": [False] * len(outputs), "output_name": outputs,
            "output_node": output_node, "python_module": module, "category": "sd"}  # fmt: skip


def object_info(packs: set[str], uploads: list[str]) -> dict[str, Any]:
    combo = lambda names: [list(names), {}]  # noqa: E731  (ComfyUI's COMBO spelling)
    info = {
        "CheckpointLoaderSimple": _node(
            {"ckpt_name": combo(CHECKPOINTS)}, ["MODEL", "CLIP", "VAE"]
        ),
        "LoraLoader": _node(
            {
                "model": ["MODEL"],
                "clip": ["CLIP"],
                "lora_name": combo(LORAS),
                "strength_model": ["FLOAT", {}],
                "strength_clip": ["FLOAT", {}],
            },
            ["MODEL", "CLIP"],
        ),  # fmt: skip
        "CLIPSetLastLayer": _node({"clip": ["CLIP"], "stop_at_clip_layer": ["INT", {}]}, ["CLIP"]),
        "CLIPTextEncode": _node({"text": ["STRING", {}], "clip": ["CLIP"]}, ["CONDITIONING"]),
        "ControlNetLoader": _node({"control_net_name": combo(CONTROLNETS)}, ["CONTROL_NET"]),
        "LoadImage": _node({"image": combo(uploads)}, ["IMAGE", "MASK"]),
        "ControlNetApplyAdvanced": _node(
            {
                "positive": ["CONDITIONING"],
                "negative": ["CONDITIONING"],
                "control_net": ["CONTROL_NET"],
                "image": ["IMAGE"],
                "strength": ["FLOAT", {}],
                "start_percent": ["FLOAT", {}],
                "end_percent": ["FLOAT", {}],
            },
            ["CONDITIONING", "CONDITIONING"],
        ),  # fmt: skip
        "EmptyLatentImage": _node(
            {"width": ["INT", {}], "height": ["INT", {}], "batch_size": ["INT", {}]}, ["LATENT"]
        ),  # fmt: skip
        "KSampler": _node(
            {
                "model": ["MODEL"],
                "seed": ["INT", {}],
                "steps": ["INT", {}],
                "cfg": ["FLOAT", {}],
                "sampler_name": combo(SAMPLERS),
                "scheduler": combo(SCHEDULERS),
                "positive": ["CONDITIONING"],
                "negative": ["CONDITIONING"],
                "latent_image": ["LATENT"],
                "denoise": ["FLOAT", {}],
            },
            ["LATENT"],
        ),  # fmt: skip
        "VAEDecode": _node({"samples": ["LATENT"], "vae": ["VAE"]}, ["IMAGE"]),
        "SaveImage": _node({"images": ["IMAGE"], "filename_prefix": ["STRING", {}]}, [], True),
    }
    if "ipadapter" in packs:
        module = "custom_nodes.ComfyUI_IPAdapter_plus"
        info["IPAdapterUnifiedLoader"] = _node(
            {"model": ["MODEL"], "preset": combo(PRESETS)}, ["MODEL", "IPADAPTER"], module=module
        )
        info["IPAdapterAdvanced"] = _node(
            {"model": ["MODEL"], "ipadapter": ["IPADAPTER"], "image": ["IMAGE"],
             "weight": ["FLOAT", {}], "weight_type": [["linear", "ease in"], {}],
             "combine_embeds": [["concat", "add"], {}], "start_at": ["FLOAT", {}],
             "end_at": ["FLOAT", {}], "embeds_scaling": [["V only", "K+V"], {}]},
            ["MODEL"], module=module)  # fmt: skip
    for name, entry in info.items():
        entry["name"] = entry["display_name"] = name
    return info


def validate_prompt(prompt: Any, info: dict[str, Any]) -> tuple[bool, Any, dict[str, Any]]:
    """execution.py's `validate_prompt`: (ok, error, node_errors)."""
    if not isinstance(prompt, dict):
        return False, {"type": "invalid_prompt", "message": "Prompt is not a dict"}, {}
    for node_id, node in prompt.items():
        class_type = node.get("class_type") if isinstance(node, dict) else None
        if class_type is None:
            error = {"type": "invalid_prompt", "message": "Cannot execute because a node is "
                     "missing the class_type property.", "details": f"Node ID '#{node_id}'",
                     "extra_info": {}}  # fmt: skip
            return False, error, {}
        if class_type not in info:
            error = {"type": "invalid_prompt", "details": f"Node ID '#{node_id}'",
                     "message": f"Cannot execute because node {class_type} does not exist.",
                     "extra_info": {}}  # fmt: skip
            return False, error, {}
    outputs = [i for i, node in prompt.items() if info[node["class_type"]]["output_node"]]
    if not outputs:
        error = {"type": "prompt_no_outputs", "message": "Prompt has no outputs",
                 "details": "", "extra_info": {}}  # fmt: skip
        return False, error, {}
    node_errors: dict[str, Any] = {}
    for node_id, node in prompt.items():
        errors = []
        required = info[node["class_type"]]["input"]["required"]
        inputs = node.get("inputs", {})
        for name, spec in required.items():
            value = inputs.get(name)
            if value is None:
                errors.append({"type": "required_input_missing", "details": name,
                               "message": "Required input is missing",
                               "extra_info": {"input_name": name}})  # fmt: skip
            elif isinstance(value, list):
                if len(value) != 2 or str(value[0]) not in prompt:
                    errors.append({"type": "bad_linked_input", "message": "Bad linked input, "
                                   "must be a length-2 list of [node_id, slot_index]",
                                   "details": name,
                                   "extra_info": {"input_name": name}})  # fmt: skip
            elif isinstance(spec[0], list) and value not in spec[0]:
                errors.append({"type": "value_not_in_list", "message": "Value not in list",
                               "details": f"{name}: '{value}' not in {spec[0]}",
                               "extra_info": {"input_name": name}})  # fmt: skip
        if errors:
            node_errors[node_id] = {"errors": errors, "dependent_outputs": outputs,
                                    "class_type": node["class_type"]}  # fmt: skip
    if node_errors:
        error = {"type": "prompt_outputs_failed_validation", "message": "Prompt outputs failed "
                 "validation", "details": "", "extra_info": {}}  # fmt: skip
        return False, error, node_errors
    return True, None, {}


def render_png(seed: int, width: int, height: int, prompt: dict[str, Any] | None) -> bytes:
    """A deterministic picture of the seed, saved as SaveImage does (a `prompt` text chunk)."""
    from PIL import Image
    from PIL.PngImagePlugin import PngInfo

    rng = random.Random(seed)
    pixels = bytes(rng.randrange(256) for _ in range(width * height * 3))
    info = PngInfo()
    if prompt is not None:
        info.add_text("prompt", json.dumps(prompt))
    buffer = BytesIO()
    Image.frombytes("RGB", (width, height), pixels).save(buffer, "PNG", pnginfo=info)
    return buffer.getvalue()
