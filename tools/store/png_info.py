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
from tools.store.png_fields import FIELDS, as_number, empty_info, file_stem
from tools.store.png_info_comfyui import parse_comfyui
from tools.text import plural

# Read from here too (`from tools.store.png_info import parse_comfyui`).
__all__ = [
    "FIELDS",
    "OUR_METADATA_KEY",
    "as_number",
    "empty_info",
    "file_stem",
    "format_info",
    "parse_a1111",
    "parse_comfyui",
    "parse_ours",
    "read_png_info",
]

OUR_METADATA_KEY = "anime-chat"
INLINE_LORA = re.compile(r"<lora:([^:>]+)(?::([-+]?[0-9.]+))?[^>]*>")
# One `Key: value` entry of A1111's last line (A1111 modules/infotext_utils.py `re_param_code`);
# a value may be "quoted, with commas" or, as Civitai writes `Hashes` and `Civitai resources`, a
# JSON {"object"} or [{"list"}], taken whole by `_json_value`.
_A1111_ENTRY = re.compile(r'\s*([\w \-/+]+?):\s*("(?:\\.|[^\\"])*"|[^,]*)(?:,|$)')
_A1111_KEY = re.compile(r"\s*([\w \-/+]+?):\s*")
# Civitai's JSON-valued entries, read back as JSON rather than text.
_JSON_ENTRIES = ("Civitai resources",)
# A1111 schedule types that are part of the sampler name when not "Automatic".
_SCHEDULE_SUFFIX = {"karras": "Karras", "exponential": "Exponential", "sgm uniform": "SGM Uniform"}


def read_png_info(path: Path) -> dict[str, Any]:
    """The parameters of the image at `path`, in the `info --json` shape."""
    try:
        with Image.open(path) as image:
            text = dict(getattr(image, "text", {}) or image.info)
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise UserError(f"cannot read {path}: {exc}", "give a PNG image file") from exc
    try:
        if OUR_METADATA_KEY in text:
            return parse_ours(json.loads(text[OUR_METADATA_KEY]))
        if isinstance(text.get("prompt"), str) and text["prompt"].lstrip().startswith("{"):
            return parse_comfyui(json.loads(text["prompt"]))
        if isinstance(text.get("parameters"), str):
            return parse_a1111(text["parameters"])
    # A damaged or crafted record: the file's text is there but is not what its tool writes.
    except (ValueError, TypeError, AttributeError, KeyError, IndexError, RecursionError) as exc:
        raise UserError(
            f"{path}: its generation parameters are damaged ({type(exc).__name__}: {exc})",
            "the file was changed after it was written; its pixels may still be fine",
        ) from None
    raise UserError(
        f"{path} carries no generation parameters",
        "only PNGs written by anime-chat, A1111/Forge or ComfyUI record them",
    )


def parse_ours(meta: dict[str, Any]) -> dict[str, Any]:
    """Our JSON chunk, mapped onto the contract names; the rest kept as extra keys."""
    info = empty_info("anime-chat")
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
    position = 0
    while position < len(line):
        key_match = _A1111_KEY.match(line, position)
        whole = _json_value(line, key_match.end()) if key_match else None
        if key_match and whole is not None:
            key, value, position = key_match.group(1).strip(), whole[0], whole[1]
        else:
            match = _A1111_ENTRY.match(line, position)
            if match is None or match.end() == position:
                # Text that is no entry (A1111's finditer skips it too): on to the next comma.
                comma = line.find(",", position)
                position = len(line) if comma < 0 else comma + 1
                continue
            key, value, position = match.group(1).strip(), match.group(2).strip(), match.end()
        if value.startswith('"') and value.endswith('"') and len(value) >= 2:
            value = json.loads(value) if _is_json_string(value) else value[1:-1]
        if key:
            entries[key] = value
    return entries


def _json_value(line: str, start: int) -> tuple[str, int] | None:
    """A JSON object or list starting at `start`, whole (its commas are its own), with the
    position after it and its comma; None when none starts there."""
    if start >= len(line) or line[start] not in "[{":
        return None
    try:
        _, end = json.JSONDecoder().raw_decode(line, start)
    except ValueError:
        return None
    rest = re.match(r"\s*(?:,|$)", line[end:])
    if rest is None:
        return None
    return line[start:end], end + rest.end()


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
    # A1111 modules/infotext_utils.py `parse_generation_parameters`: the last line is the
    # settings when it holds at least 3 entries, also when it is the only line (empty prompt).
    if len(parse_a1111_entries(lines[-1])) >= 3:
        settings_line = lines.pop()
    prompt_lines, negative_lines = [], []
    target = prompt_lines
    for line in lines:
        if line.startswith("Negative prompt:"):
            target = negative_lines
            line = line[len("Negative prompt:") :].strip()
        target.append(line)
    entries = parse_a1111_entries(settings_line)
    info = empty_info("a1111")
    info["prompt"] = "\n".join(prompt_lines).strip()
    info["negative_prompt"] = "\n".join(negative_lines).strip() if negative_lines else None
    info["steps"] = as_number(entries.pop("Steps", None), int)
    info["sampler"] = _a1111_sampler(entries.pop("Sampler", None), entries.get("Schedule type"))
    info["cfg_scale"] = as_number(entries.pop("CFG scale", None), float)
    info["seed"] = as_number(entries.pop("Seed", None), int)
    size = entries.pop("Size", None)
    if size and re.fullmatch(r"\d+x\d+", size):
        width, height = size.split("x")
        info["width"], info["height"] = int(width), int(height)
    info["model"] = entries.pop("Model", None)
    info["clip_skip"] = as_number(entries.pop("Clip skip", None), int)
    info["loras"] = _loras(info["prompt"], entries.get("Lora hashes"))
    if entries.get("Lora hashes"):
        info["lora_hashes"] = lora_hashes(entries["Lora hashes"])
    if entries.get("TI hashes"):
        info["ti_hashes"] = lora_hashes(entries["TI hashes"])
    for key in _JSON_ENTRIES:
        if key in entries and _is_json_string(entries[key]):
            entries[key] = json.loads(entries[key])
    info.update({key: value for key, value in entries.items() if key not in info})
    return info


def _a1111_sampler(sampler: str | None, schedule: str | None) -> str | None:
    if sampler is None:
        return None
    suffix = _SCHEDULE_SUFFIX.get((schedule or "").strip().lower())
    if suffix and not sampler.endswith(suffix):
        return f"{sampler} {suffix}"
    return sampler


def _loras(prompt: str, hashes: str | None) -> list[dict[str, Any]]:
    """Inline `<lora:NAME:W>` tags (with their weights), then any only named in `Lora hashes`."""
    loras: dict[str, float | None] = {}
    for name, weight in INLINE_LORA.findall(prompt):
        loras[name] = float(weight) if weight else 1.0
    for entry in (hashes or "").split(","):
        name = entry.split(":")[0].strip()
        if name and name not in loras:
            loras[name] = None
    return [{"name": name, "weight": weight} for name, weight in loras.items()]


def lora_hashes(text: str) -> dict[str, str]:
    """A1111's `Lora hashes` (or `TI hashes`) value, "name: hash, name: hash" → {name: hash}."""
    pairs = (entry.rpartition(":") for entry in text.split(","))
    return {name.strip(): digest.strip() for name, _, digest in pairs if name.strip()}


def format_info(info: dict[str, Any]) -> str:
    """Human-readable `anime-gen info` lines."""
    lines = [f"source: {info['source']}"]
    for field in FIELDS:
        if info.get(field) is not None:
            lines.append(f"{field}: {info[field]}")
    for lora in info.get("loras") or []:
        weight = "" if lora["weight"] is None else f" ({lora['weight']})"
        lines.append(f"lora: {lora['name']}{weight}")
    hires, detail = info.get("hires"), info.get("face_detail")
    if hires:
        lines.append(
            f"hires: x{hires['scale']} {hires['upscaler']}, denoise {hires['denoise']}, "
            f"{plural(hires['steps'], 'step')} -> {hires['width']}x{hires['height']}"
        )
    elif info.get("Hires upscale"):
        lines.append(f"hires: x{info['Hires upscale']} {info.get('Hires upscaler') or ''}".strip())
    if detail:
        found = len(detail.get("faces") or [])
        lines.append(f"face detail: {found} face(s) redrawn" if found else "face detail: no face")
    elif info.get("ADetailer model"):
        lines.append(f"face detail: ADetailer {info['ADetailer model']}")
    lines += [f"warning: {warning}" for warning in info.get("warnings") or []]
    return "\n".join(lines)
