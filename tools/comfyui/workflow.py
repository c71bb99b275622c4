"""The user's own ComfyUI workflow (`comfyui.workflow`, exported with "Save (API)"): we fill
its slots and keep every other node and value as they tuned it.

Slots are found by node title (`_meta.title`, what "Save (API)" writes): `anime:positive`,
`anime:negative` (CLIPTextEncode), `anime:pose`, `anime:reference` (LoadImage), `anime:sampler`
(KSampler / KSamplerAdvanced), `anime:latent` (EmptyLatentImage), `anime:save` (SaveImage);
else by node type when that is unambiguous (positive/negative: what the one sampler's inputs
lead back to); else one line naming the title to add.
"""

from __future__ import annotations

import copy
import json
import logging
from pathlib import Path
from typing import Any

from tools.comfyui.graph import Drawing
from tools.errors import UserError
from tools.text import one_line

log = logging.getLogger(__name__)

MAX_WORKFLOW_BYTES = 8 * 1024 * 1024
MAX_NODES = 5000

SLOT_TYPES: dict[str, tuple[str, ...]] = {
    "positive": ("CLIPTextEncode",),
    "negative": ("CLIPTextEncode",),
    "pose": ("LoadImage",),
    "reference": ("LoadImage",),
    "sampler": ("KSampler", "KSamplerAdvanced"),
    "latent": ("EmptyLatentImage",),
    "save": ("SaveImage",),
}
REQUIRED = ("sampler", "positive", "negative", "latent", "save")
CHECKPOINT_LOADERS = ("CheckpointLoaderSimple", "CheckpointLoader")
LORA_LOADERS = ("LoraLoader", "LoraLoaderModelOnly")


def load_workflow(path: str | Path) -> dict[str, Any]:
    """Read and check an API-format workflow: {id: {class_type, inputs, _meta?}}."""
    path = Path(path).expanduser()
    hint = 'in ComfyUI, enable dev mode options and use "Save (API)"'
    try:
        if path.stat().st_size > MAX_WORKFLOW_BYTES:
            raise UserError(f"comfyui.workflow {path}: over {MAX_WORKFLOW_BYTES >> 20} MB", hint)
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise UserError(f"comfyui.workflow {path}: cannot be read ({error.strerror})") from None
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise UserError(f"comfyui.workflow {path}: not JSON (or nested too deep)", hint) from None
    if isinstance(data, dict) and "nodes" in data and "links" in data:
        raise UserError(f"comfyui.workflow {path}: this is the UI format, not the API format", hint)
    if not isinstance(data, dict) or not data or len(data) > MAX_NODES:
        raise UserError(f"comfyui.workflow {path}: expected an object of nodes", hint)
    for node_id, node in data.items():
        if (
            not isinstance(node, dict)
            or not isinstance(node.get("class_type"), str)
            or not isinstance(node.get("inputs", {}), dict)
        ):
            raise UserError(
                f"comfyui.workflow {path}: node {one_line(node_id, 40)!r} is not "
                "{class_type, inputs}",
                hint,
            )
        node.setdefault("inputs", {})  # execution.py reads every node's `inputs`
        for name, value in node["inputs"].items():
            if isinstance(value, list) and (
                len(value) != 2 or str(value[0]) not in data or not isinstance(value[1], int)
            ):
                raise UserError(
                    f"comfyui.workflow {path}: node {one_line(node_id, 40)} input "
                    f"{one_line(name, 40)!r} links to no node",
                    hint,
                )
    return data


def _title(node: dict[str, Any]) -> str:
    meta = node.get("_meta")
    return str(meta.get("title", "")).strip().lower() if isinstance(meta, dict) else ""


def _trace(graph: dict[str, Any], start: Any, kind: tuple[str, ...]) -> str | None:
    """Follow conditioning links back from `start` to the first node of `kind` (through nodes
    such as ControlNetApplyAdvanced), visiting each node once (a cyclic graph ends too)."""
    seen: set[str] = set()
    link = start
    while isinstance(link, list) and len(link) == 2 and str(link[0]) not in seen:
        node_id = str(link[0])
        seen.add(node_id)
        node = graph[node_id]
        if node["class_type"] in kind:
            return node_id
        inputs = node.get("inputs", {})
        # ControlNetApplyAdvanced's output 0 is its positive input, 1 its negative.
        names = ("positive", "conditioning") if link[1] == 0 else ("negative", "conditioning")
        link = next((inputs[n] for n in names if isinstance(inputs.get(n), list)), None)
    return None


def find_slots(graph: dict[str, Any]) -> dict[str, str]:
    """Slot name -> node id; a required slot that cannot be found is a UserError."""
    slots: dict[str, str] = {}
    for slot, kinds in SLOT_TYPES.items():
        titled = [i for i, n in graph.items() if _title(n) == f"anime:{slot}"]
        if len(titled) > 1:
            raise UserError(f"the workflow has {len(titled)} nodes titled 'anime:{slot}'",
                            "keep that title on one node")  # fmt: skip
        if titled:
            if graph[titled[0]]["class_type"] not in kinds:
                raise UserError(
                    f"the workflow's node 'anime:{slot}' is a "
                    f"{one_line(graph[titled[0]]['class_type'])}",
                    f"that title belongs on a {' or '.join(kinds)} node",
                )
            slots[slot] = titled[0]
    if "sampler" not in slots:
        slots.update(_only("sampler", graph))
    sampler = graph[slots["sampler"]] if "sampler" in slots else None
    for slot in ("positive", "negative"):
        if slot not in slots and sampler is not None:
            found = _trace(graph, sampler.get("inputs", {}).get(slot), SLOT_TYPES[slot])
            if found is not None:
                slots[slot] = found
    for slot in ("latent", "save"):
        if slot not in slots:
            slots.update(_only(slot, graph))
    for slot, consumer in (("pose", "ControlNetApply"), ("reference", "IPAdapter")):
        if slot not in slots:
            slots.update(_feeding(graph, consumer, slot))
    for slot in REQUIRED:
        if slot not in slots:
            kinds = " or ".join(SLOT_TYPES[slot])
            raise UserError(
                f"cannot tell which {kinds} node of the workflow is '{slot}'",
                f"in ComfyUI, title that node 'anime:{slot}' (right-click > Title), then "
                "Save (API) again",
            )
    return slots


def _only(slot: str, graph: dict[str, Any]) -> dict[str, str]:
    found = [i for i, n in graph.items() if n["class_type"] in SLOT_TYPES[slot]]
    return {slot: found[0]} if len(found) == 1 else {}


def _feeding(graph: dict[str, Any], consumer: str, slot: str) -> dict[str, str]:
    """The one LoadImage whose image feeds a node whose type starts with `consumer`."""
    found = {
        str(value[0])
        for node in graph.values()
        if node["class_type"].startswith(consumer)
        for value in node.get("inputs", {}).values()
        if isinstance(value, list) and graph[str(value[0])]["class_type"] == "LoadImage"
    }
    return {slot: found.pop()} if len(found) == 1 else {}


def fill_workflow(
    workflow: dict[str, Any], drawing: Drawing, prefix: str = "anime-chat"
) -> tuple[dict[str, Any], dict[str, str]]:
    """A copy of the workflow with our slots filled, and the slots (slot -> node id)."""
    graph = copy.deepcopy(workflow)
    slots = find_slots(graph)

    def inputs(slot: str) -> dict[str, Any]:
        return graph[slots[slot]].setdefault("inputs", {})

    inputs("positive")["text"] = drawing.prompt
    inputs("negative")["text"] = drawing.negative_prompt
    sampler = inputs("sampler")
    seed_key = (
        "noise_seed" if graph[slots["sampler"]]["class_type"] == "KSamplerAdvanced" else "seed"
    )
    sampler_name, scheduler = drawing.comfy_sampler
    sampler.update({seed_key: drawing.seed, "steps": drawing.steps, "cfg": drawing.cfg,
                    "sampler_name": sampler_name, "scheduler": scheduler})  # fmt: skip
    inputs("latent").update(width=drawing.width, height=drawing.height, batch_size=1)
    inputs("save")["filename_prefix"] = prefix
    if "pose" in slots:
        inputs("pose")["image"] = drawing.pose_image
    if "reference" in slots and drawing.reference_image is not None:
        inputs("reference")["image"] = drawing.reference_image
    for i, node_id in enumerate(insert_loras(graph, drawing.loras)):
        slots[f"lora{i}"] = node_id  # ours: checked against /object_info like the slots
    return graph, slots


def insert_loras(graph: dict[str, Any], loras: tuple[tuple[str, float], ...]) -> list[str]:
    """Put a `LoraLoader` for each of the image's LoRAs between the workflow's checkpoint loader
    and its consumers, as our built-in graph does (the character's LoRA is what keeps it
    consistent, the prompt's tags what the user asked for). The user's own LoraLoaders stay as
    they are, after ours; a LoRA their graph loads already (by file name, from any subfolder)
    keeps their node and weight (not loaded twice). Returns the ids of the nodes added (in
    `graph`, changed in place)."""
    if not loras:
        return []
    theirs = {
        _file_name(node["inputs"].get("lora_name")): node_id
        for node_id, node in graph.items()
        if node["class_type"] in LORA_LOADERS
    }
    wanted = []
    for name, weight in loras:
        if _file_name(name) in theirs:
            log.info("the workflow loads LoRA %s itself (node %s): its weight there is kept",
                     name, theirs[_file_name(name)])  # fmt: skip
        else:
            wanted.append((name, weight))
    if not wanted:
        return []
    loader = _checkpoint_loader(graph)
    added, model, clip = [], [loader, 0], [loader, 1]
    for name, weight in wanted:
        node_id = next(
            f"anime_lora{i}" for i in range(len(graph) + 1) if f"anime_lora{i}" not in graph
        )
        inputs = {"model": model, "clip": clip, "lora_name": name,
                  "strength_model": weight, "strength_clip": weight}  # fmt: skip
        graph[node_id] = {"class_type": "LoraLoader", "inputs": inputs,
                          "_meta": {"title": f"anime:lora {name}"}}  # fmt: skip
        added.append(node_id)
        model, clip = [node_id, 0], [node_id, 1]
    rewire = {(loader, 0): model, (loader, 1): clip}
    for node_id, node in graph.items():
        if node_id in added:
            continue
        for name, value in node["inputs"].items():
            if isinstance(value, list) and (str(value[0]), value[1]) in rewire:
                node["inputs"][name] = list(rewire[(str(value[0]), value[1])])
    return added


def _file_name(lora_name: object) -> str:
    """A LoRA's file name: ComfyUI names one in a subfolder of `models/loras` by its relative
    path (folder_paths.py `get_filename_list`), with `\\` on Windows; ours are bare."""
    return str(lora_name).replace("\\", "/").rsplit("/", 1)[-1]


def _checkpoint_loader(graph: dict[str, Any]) -> str:
    """The node whose outputs 0 and 1 (MODEL, CLIP) our LoRAs go after: titled
    `anime:checkpoint`, else the one checkpoint loader."""
    titled = [i for i, n in graph.items() if _title(n) == "anime:checkpoint"]
    if len(titled) == 1 and graph[titled[0]]["class_type"] not in CHECKPOINT_LOADERS:
        raise UserError(
            f"the workflow's node 'anime:checkpoint' is a "
            f"{one_line(graph[titled[0]]['class_type'])}, which has no MODEL and CLIP outputs "
            "for the image's LoRAs",
            f"that title belongs on a {' or '.join(CHECKPOINT_LOADERS)} node",
        )
    found = titled or [i for i, n in graph.items() if n["class_type"] in CHECKPOINT_LOADERS]
    if len(found) == 1:
        return found[0]
    raise UserError(
        f"the image has LoRAs (the character's, the prompt's or models.loras) but the workflow "
        f"has {len(found) or 'no'} checkpoint loader{'s' if len(found) != 1 else ''} to put "
        "them after",
        "title the CheckpointLoaderSimple node 'anime:checkpoint', or set comfyui.loras: [] "
        "to draw with the workflow's LoRAs only",
    )
