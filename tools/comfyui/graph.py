"""Our built-in ComfyUI graph (API format) from standard nodes, the mapping of our settings to
its inputs, and the check of a graph against ComfyUI's `/object_info` before it is queued.

Node and input names are ComfyUI's own (`nodes.py`) and cubiq/ComfyUI_IPAdapter_plus's
(`IPAdapterUnifiedLoader`, `IPAdapterAdvanced`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import PurePath
from typing import TYPE_CHECKING, Any

from tools.errors import UserError
from tools.text import one_line

if TYPE_CHECKING:
    from tools.settings import Settings

# Our sampler names -> ComfyUI's (sampler_name, scheduler) (comfy/samplers.py's KSAMPLER_NAMES).
SAMPLERS: dict[str, tuple[str, str]] = {
    "euler_a": ("euler_ancestral", "normal"),
    "euler": ("euler", "normal"),
    "dpmpp_2m": ("dpmpp_2m", "normal"),
    "dpmpp_2m_karras": ("dpmpp_2m", "karras"),
    "dpmpp_sde_karras": ("dpmpp_sde", "karras"),
    "dpmpp_2m_sde_karras": ("dpmpp_2m_sde", "karras"),
    "ddim": ("ddim", "ddim_uniform"),
    "unipc": ("uni_pc", "normal"),
}

IPADAPTER_PACK = "cubiq/ComfyUI_IPAdapter_plus"
IPADAPTER_NODES = ("IPAdapterUnifiedLoader", "IPAdapterAdvanced")
MODEL_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".pth", ".bin")


@dataclass(frozen=True)
class Drawing:
    """One image as ComfyUI's inputs: what our settings and the job's RenderJob map to."""

    prompt: str
    negative_prompt: str
    seed: int
    steps: int
    cfg: float
    sampler: str  # ours, e.g. "dpmpp_2m_karras"
    width: int
    height: int
    clip_skip: int
    controlnet_strength: float
    ipadapter_weight: float
    pose_image: str  # names ComfyUI gave our uploads (LoadImage's `image`)
    reference_image: str | None
    checkpoint: str
    controlnet: str
    ipadapter_preset: str
    loras: tuple[tuple[str, float], ...] = field(default=())

    @property
    def comfy_sampler(self) -> tuple[str, str]:
        if self.sampler not in SAMPLERS:
            raise UserError(
                f"output.sampler '{self.sampler}' has no ComfyUI equivalent",
                f"use one of: {', '.join(SAMPLERS)}",
            )
        return SAMPLERS[self.sampler]


def built_in_graph(drawing: Drawing, prefix: str = "anime-chat") -> dict[str, Any]:
    """CheckpointLoaderSimple -> LoraLoader* -> CLIPSetLastLayer -> CLIPTextEncode x2 ->
    ControlNetApplyAdvanced (pose) -> IPAdapterUnifiedLoader/IPAdapterAdvanced (reference) ->
    EmptyLatentImage -> KSampler -> VAEDecode -> SaveImage. Node titles are our slot names."""
    graph: dict[str, Any] = {}

    def node(node_id: str, class_type: str, title: str | None = None, **inputs: Any) -> None:
        graph[node_id] = {"class_type": class_type, "inputs": inputs}
        graph[node_id]["_meta"] = {"title": title or class_type}

    node("checkpoint", "CheckpointLoaderSimple", ckpt_name=drawing.checkpoint)
    model, clip = ["checkpoint", 0], ["checkpoint", 1]
    for i, (name, weight) in enumerate(drawing.loras):
        node(f"lora{i}", "LoraLoader", model=model, clip=clip, lora_name=name,
             strength_model=weight, strength_clip=weight)  # fmt: skip
        model, clip = [f"lora{i}", 0], [f"lora{i}", 1]
    node("clip_skip", "CLIPSetLastLayer", clip=clip, stop_at_clip_layer=-drawing.clip_skip)
    node("positive", "CLIPTextEncode", "anime:positive", text=drawing.prompt, clip=["clip_skip", 0])
    node("negative", "CLIPTextEncode", "anime:negative", text=drawing.negative_prompt,
         clip=["clip_skip", 0])  # fmt: skip
    node("controlnet", "ControlNetLoader", control_net_name=drawing.controlnet)
    node("pose", "LoadImage", "anime:pose", image=drawing.pose_image)
    node("apply_pose", "ControlNetApplyAdvanced", positive=["positive", 0],
         negative=["negative", 0], control_net=["controlnet", 0], image=["pose", 0],
         strength=drawing.controlnet_strength, start_percent=0.0, end_percent=1.0)  # fmt: skip
    if drawing.reference_image is not None and drawing.ipadapter_weight > 0:
        node("ipadapter", "IPAdapterUnifiedLoader", model=model, preset=drawing.ipadapter_preset)
        node("reference", "LoadImage", "anime:reference", image=drawing.reference_image)
        node("apply_reference", "IPAdapterAdvanced", model=["ipadapter", 0],
             ipadapter=["ipadapter", 1], image=["reference", 0], weight=drawing.ipadapter_weight,
             weight_type="linear", combine_embeds="concat", start_at=0.0, end_at=1.0,
             embeds_scaling="V only")  # fmt: skip
        model = ["apply_reference", 0]
    node("latent", "EmptyLatentImage", "anime:latent", width=drawing.width,
         height=drawing.height, batch_size=1)  # fmt: skip
    sampler_name, scheduler = drawing.comfy_sampler
    node("sampler", "KSampler", "anime:sampler", model=model, seed=drawing.seed,
         steps=drawing.steps, cfg=drawing.cfg, sampler_name=sampler_name, scheduler=scheduler,
         positive=["apply_pose", 0], negative=["apply_pose", 1], latent_image=["latent", 0],
         denoise=1.0)  # fmt: skip
    node("decode", "VAEDecode", samples=["sampler", 0], vae=["checkpoint", 2])
    node("save", "SaveImage", "anime:save", images=["decode", 0], filename_prefix=prefix)
    return graph


def model_name(configured: str | None, model_setting: str | None, key: str) -> str | None:
    """`comfyui.<key>`, else the file name of `models.<key>` when that names a model file; None
    when neither does (`check_graph` then lists the names ComfyUI has)."""
    if configured:
        return configured
    if model_setting and model_setting.lower().endswith(MODEL_SUFFIXES):
        return PurePath(model_setting).name
    return None


def lora_file(name: str) -> str:
    return name if name.lower().endswith(MODEL_SUFFIXES) else f"{name}.safetensors"


def combo_values(spec: Any) -> list[str] | None:
    """The allowed values of a COMBO input in `/object_info`: `[[names], {...}]` (older
    ComfyUI) or `["COMBO", {"options": [names]}]` (newer); None for any other input."""
    if not isinstance(spec, list) or not spec:
        return None
    if isinstance(spec[0], list):
        return [str(value) for value in spec[0]]
    if spec[0] == "COMBO" and len(spec) > 1 and isinstance(spec[1], dict):
        options = spec[1].get("options")
        return [str(value) for value in options] if isinstance(options, list) else None
    return None


# Which of our settings a COMBO value came from, for the hint.
SETTING_FOR = {
    ("CheckpointLoaderSimple", "ckpt_name"): "comfyui.checkpoint",
    ("ControlNetLoader", "control_net_name"): "comfyui.controlnet",
    ("LoraLoader", "lora_name"): "comfyui.loras",
    ("IPAdapterUnifiedLoader", "preset"): "comfyui.ipadapter_preset",
    ("KSampler", "sampler_name"): "output.sampler",
}


def check_graph(graph: dict[str, Any], info: dict[str, Any], filled: set[str]) -> None:
    """Refuse, in one line, a graph ComfyUI would: a node class it lacks (naming the pack to
    install), or a model name of ours it does not have (listing the names it has). `filled`:
    the node ids whose inputs we set; other nodes are the user's and ComfyUI judges them."""
    for node_id, node in graph.items():
        class_type = node["class_type"]
        shown_type, shown_id = one_line(class_type), one_line(node_id, 40)
        if class_type not in info:
            if class_type.startswith("IPAdapter"):
                raise UserError(
                    f"ComfyUI lacks the IPAdapter nodes ({shown_type}): the node pack "
                    f"{IPADAPTER_PACK} is not installed",
                    f"install it with ComfyUI-Manager (search 'IPAdapter plus') or git clone "
                    f"https://github.com/{IPADAPTER_PACK} into ComfyUI/custom_nodes/, then "
                    "restart ComfyUI",
                )
            raise UserError(
                f"ComfyUI has no node '{shown_type}' (node {shown_id} of the workflow)",
                "install the custom node pack that provides it (ComfyUI-Manager: "
                "'Install Missing Custom Nodes'), then restart ComfyUI",
            )
        if node_id not in filled or class_type == "LoadImage":
            continue  # LoadImage: our own upload, which ComfyUI listed after this info was read
        required = _required_inputs(info, class_type)
        for name, value in node["inputs"].items():
            allowed = combo_values(required.get(name))
            if allowed is None or isinstance(value, list) or str(value) in allowed:
                continue
            setting = SETTING_FOR.get((class_type, name), f"{shown_type}.{one_line(name, 40)}")
            shown = one_line(", ".join(allowed[:30]), 2000) + (" ..." if len(allowed) > 30 else "")
            raise UserError(
                f"ComfyUI has no {one_line(name, 40)} '{one_line(value)}' "
                f"(ComfyUI has: {shown or 'none'})",
                f"set {setting} to one of those names, or put the file in ComfyUI's models folder",
            )


def _required_inputs(info: dict[str, Any], class_type: str) -> dict[str, Any]:
    """`/object_info`'s required inputs of a node, or {} where its answer has another shape."""
    entry = info.get(class_type)
    spec = entry.get("input") if isinstance(entry, dict) else None
    required = spec.get("required") if isinstance(spec, dict) else None
    return required if isinstance(required, dict) else {}


def missing_model(key: str, node: str, input_name: str, info: dict[str, Any]) -> UserError:
    """A model name neither `comfyui.<key>` nor `models.<key>` gives: the names ComfyUI has."""
    allowed = combo_values(_required_inputs(info, node).get(input_name)) or []
    return UserError(
        f"comfyui.{key} is not set and models.{key} is no model file "
        f"(ComfyUI has: {one_line(', '.join(allowed[:30]), 2000) or 'none'})",
        f"set comfyui.{key} to one of those names in ~/.anime-config.yaml",
    )


def resolve_models(
    settings: Settings, info: dict[str, Any], loras: list[tuple[str, float]]
) -> tuple[str, str, tuple[tuple[str, float], ...]]:
    """(checkpoint, ControlNet, LoRAs) by the names ComfyUI knows them: `comfyui.*`, else the
    file names of `models.*` (`loras`: the image's LoRA set, used when `comfyui.loras` is null)."""
    comfyui, models = settings.comfyui, settings.models
    checkpoint = model_name(comfyui.checkpoint, models.checkpoint, "checkpoint")
    if checkpoint is None:
        raise missing_model("checkpoint", "CheckpointLoaderSimple", "ckpt_name", info)
    controlnet = model_name(comfyui.controlnet, models.controlnet, "controlnet")
    if controlnet is None:
        raise missing_model("controlnet", "ControlNetLoader", "control_net_name", info)
    return checkpoint, controlnet, comfy_loras(settings, loras)


def comfy_loras(
    settings: Settings, loras: list[tuple[str, float]]
) -> tuple[tuple[str, float], ...]:
    """The LoRAs by the names ComfyUI knows them: `comfyui.loras`, else the image's LoRA set
    (`models.loras`, its character's, its prompt's tags) as file names."""
    if settings.comfyui.loras is not None:
        return tuple((lora.name, lora.weight) for lora in settings.comfyui.loras)
    return tuple((lora_file(name), weight) for name, weight in loras)
