"""What A1111 calls "extra networks": LoRAs and textual-inversion embeddings (the external VAE:
`tools/engine/vae.py`).

Where they are found (a file the user downloaded from Civitai works as it is):
- LoRAs: `<home>/models/lora/NAME.safetensors`, a path, or a hub id; loaded with diffusers
  `load_lora_weights(adapter_name=...)` (kohya/A1111 and diffusers key layouts) and switched with
  `set_adapters`, so changing the set between images never reloads the checkpoint.
- Embeddings: `<home>/models/embeddings/NAME.safetensors|.pt|.bin`, used by writing NAME in
  either prompt; loaded with `load_textual_inversion` when a prompt first names them.
"""

from __future__ import annotations

import logging
import re
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prompts import load_prompt
from tools.engine.comfyui_folders import comfyui_dirs, inside, is_dir, is_file
from tools.engine.lru import evict
from tools.engine.model_sources import fetch_hub, is_hub_id
from tools.engine.prompt_syntax import LoraRequest
from tools.engine.vae import vae_label as vae_label  # the producer imports it from here
from tools.errors import UserError
from tools.user_paths import expand_user

if TYPE_CHECKING:
    import torch

    from tools.settings import Paths

log = logging.getLogger(__name__)

LORA_SUFFIXES = (".safetensors",)
# LoRAs kept loaded as adapters, the least recently used deleted beyond it; as A1111's
# extensions-builtin/Lora/networks.py `purge_networks_from_memory` (`lora_in_memory_limit`).
# A set needs at most this many at once; more in one set stay loaded while it is drawn.
LORAS_IN_MEMORY = 8
EMBEDDING_SUFFIXES = (".safetensors", ".pt", ".bin")


def lora_folder(paths: Paths) -> Path:
    return paths.models / "lora"


def embeddings_folder(paths: Paths) -> Path:
    return paths.models / "embeddings"


# --- LoRAs ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class LoraFile:
    """A LoRA found on disk: the folder and file name `load_lora_weights` takes."""

    folder: Path
    weight_name: str | None


def find_lora(name: str, paths: Paths) -> LoraFile:
    """`name` as a file in `<home>/models/lora/`, a path, or a hub id; else a user error."""
    folder = lora_folder(paths)
    given = expand_user(name)
    folders = [folder, *comfyui_dirs(paths.comfyui_root, "loras")]
    candidates = (
        [given]
        if given.is_absolute()
        else [
            found
            for d in folders
            for file in (name, f"{name}.safetensors")
            if (found := inside(d, file)) is not None
        ]
    )
    if not given.is_absolute() and given.suffix:
        candidates.append(given)
    for candidate in candidates:
        if is_file(candidate) and candidate.suffix.lower() in LORA_SUFFIXES:
            return LoraFile(candidate.parent.resolve(), candidate.name)
        if is_dir(candidate):
            return LoraFile(candidate.resolve(), None)
    if is_hub_id(name) and not given.suffix:
        return LoraFile(fetch_hub(name, ["*.safetensors"], "LoRA"), None)
    raise UserError(
        f"LoRA '{name}' not found in {folder}",
        f"put {Path(name).name.removesuffix('.safetensors')}.safetensors in {folder}, "
        "or give a path or a hub id",
    )


def check_lora(name: str, paths: Paths) -> None:
    """Fail now, with the folder named, if a local LoRA is missing (hub ids are checked when
    they download)."""
    if not (is_hub_id(name) and not Path(name).suffix):
        find_lora(name, paths)


def adapter_name(name: str) -> str:
    """A peft adapter name for a LoRA (module names cannot hold dots or slashes)."""
    return "lora_" + re.sub(r"\W", "_", Path(name).name.removesuffix(".safetensors"))


class LoraAdapters:
    """The LoRAs loaded into one pipeline (at most `limit`, least recently used first out), and
    which of them are active with what weights."""

    def __init__(self, paths: Paths, limit: int = LORAS_IN_MEMORY) -> None:
        self.paths = paths
        self.limit = limit
        self.loaded: OrderedDict[str, str] = OrderedDict()  # LoRA name → adapter, oldest use first
        self.active: tuple[LoraRequest, ...] = ()
        self.loads = 0

    def use(self, pipe: Any, loras: tuple[LoraRequest, ...]) -> None:
        """Make exactly `loras` active (none: LoRA layers off), loading any that are new."""
        if loras == self.active:
            return
        wanted = {lora.name for lora in loras}
        for lora in loras:
            if lora.name in self.loaded:
                self.loaded.move_to_end(lora.name)
                continue
            # Room for the new one first: an evicted LoRA used again is loaded again.
            for name, adapter in evict(self.loaded, self.limit - 1, keep=wanted):
                pipe.delete_adapters(adapter)  # diffusers loaders/lora_base.py delete_adapters
                log.info("LoRA %s unloaded (adapter %s): least recently used", name, adapter)
            self._load(pipe, lora.name)
        if loras:
            pipe.enable_lora()
            pipe.set_adapters(
                [self.loaded[lora.name] for lora in loras],
                adapter_weights=[lora.component_weights() for lora in loras],
            )
        elif self.loaded:
            pipe.disable_lora()
        self.active = loras

    def _load(self, pipe: Any, name: str) -> None:
        found = find_lora(name, self.paths)
        adapter = adapter_name(name)
        _unfuse_self_attention(pipe.unet)
        kwargs = {"weight_name": found.weight_name} if found.weight_name else {}
        try:
            pipe.load_lora_weights(
                str(found.folder), adapter_name=adapter, local_files_only=True, **kwargs
            )
        except (ValueError, KeyError, RuntimeError) as error:
            raise UserError(
                f"LoRA '{name}' does not fit this checkpoint ({str(error).splitlines()[0][:120]})",
                "use a LoRA made for the checkpoint's family (SD1.5 or SDXL)",
            ) from None
        self.loaded[name] = adapter
        self.loads += 1
        log.info("LoRA %s loaded as adapter %s", name, adapter)


def _unfuse_self_attention(unet: Any) -> None:
    """A LoRA adapts to_q/to_k/to_v; fused self-attention runs a merged to_qkv copy instead and
    would ignore it. Put the plain processor back on the self-attention layers only: the
    cross-attention layers carry the IP-Adapter's processors and are not fused."""
    from diffusers.models.attention_processor import AttnProcessor2_0, FusedAttnProcessor2_0

    processors = unet.attn_processors
    if not any(isinstance(p, FusedAttnProcessor2_0) for p in processors.values()):
        return
    unet.set_attn_processor(
        {
            name: AttnProcessor2_0() if isinstance(processor, FusedAttnProcessor2_0) else processor
            for name, processor in processors.items()
        }
    )
    for module in unet.modules():
        if getattr(module, "fused_projections", False):
            module.fused_projections = False


# --- Textual-inversion embeddings --------------------------------------------------------------


def available_embeddings(paths: Paths) -> dict[str, Path]:
    """Embedding name (file stem) → file, for the files in `<home>/models/embeddings/`, then
    in a ComfyUI install's `embeddings` folders (`comfyui.root`); ours win a name."""
    found: dict[str, Path] = {}
    for folder in [embeddings_folder(paths), *comfyui_dirs(paths.comfyui_root, "embeddings")]:
        try:
            files = sorted(folder.iterdir())
        except OSError:
            continue  # no such folder, or unreadable
        for file in files:
            if is_file(file) and file.suffix.lower() in EMBEDDING_SUFFIXES:
                found.setdefault(file.stem, file)
    return found


def named_in(text: str, names: list[str]) -> list[str]:
    """The names among `names` that `text` uses as words (case-insensitive, like A1111's)."""
    return [
        name
        for name in names
        if re.search(rf"(?<![\w]){re.escape(name)}(?![\w])", text, flags=re.IGNORECASE)
    ]


class Embeddings:
    """Textual-inversion embeddings loaded into one pipeline's tokenizer(s) and encoder(s)."""

    def __init__(self, paths: Paths) -> None:
        self.paths = paths
        self.tokens: dict[str, list[str]] = {}  # name → the tokenizer tokens of its vectors

    def load_named(self, pipe: Any, family: str, texts: list[str]) -> bool:
        """Load every embedding the texts name that is not loaded yet; True if any was."""
        available = available_embeddings(self.paths)
        wanted = [
            name for name in named_in(" ".join(texts), list(available)) if name not in self.tokens
        ]
        for name in wanted:
            self._load(pipe, family, name, available[name])
        return bool(wanted)

    def _load(self, pipe: Any, family: str, name: str, file: Path) -> None:
        vectors = _read_embedding(file)
        token = f"<emb-{name}>"
        try:
            if family == "sdxl":
                for key, tokenizer, encoder in (
                    ("clip_l", pipe.tokenizer, pipe.text_encoder),
                    ("clip_g", pipe.tokenizer_2, pipe.text_encoder_2),
                ):
                    if key not in vectors:
                        raise ValueError(f"no '{key}' vectors (an SD1.5 embedding?)")
                    pipe.load_textual_inversion(
                        vectors[key], token=token, tokenizer=tokenizer, text_encoder=encoder
                    )
            else:
                if "emb_params" not in vectors:
                    raise ValueError("no 'emb_params' vectors (an SDXL embedding?)")
                pipe.load_textual_inversion(vectors["emb_params"], token=token)
        except (ValueError, RuntimeError) as error:
            raise UserError(
                f"embedding '{name}' ({file}) does not fit this checkpoint: "
                f"{str(error).splitlines()[0][:120]}",
                "use an embedding made for the checkpoint's family (SD1.5 or SDXL)",
            ) from None
        count = len(vectors["clip_l" if family == "sdxl" else "emb_params"])
        self.tokens[name] = [token] + [f"{token}_{i}" for i in range(1, count)]
        log.info("embedding %s loaded (%d vectors)", name, count)


def _read_embedding(file: Path) -> dict[str, torch.Tensor]:
    """The vectors of an embedding file: A1111 `emb_params` (SD1.5), `clip_l`/`clip_g` (SDXL),
    or the older `.pt` layout (`string_to_param`)."""
    import torch

    if file.suffix.lower() == ".safetensors":
        from safetensors.torch import load_file

        data: dict[str, Any] = load_file(str(file))
    else:
        data = torch.load(str(file), map_location="cpu", weights_only=True)
    if "string_to_param" in data:
        data = {"emb_params": data["string_to_param"]["*"]}
    elif len(data) == 1 and "emb_params" not in data and "clip_l" not in data:
        data = {"emb_params": next(iter(data.values()))}
    return {key: value if value.ndim == 2 else value[None, :] for key, value in data.items()}


def embeddings_named(text: str, paths: Paths) -> list[str]:
    """The installed embeddings that `text` uses (for the image's metadata)."""
    return named_in(text, list(available_embeddings(paths)))


def default_negative_prompt(paths: Paths) -> str:
    """The default negative tags, plus the usual negative embeddings that the user has in
    `<home>/models/embeddings/` (the others are left out, silently)."""
    tags = load_prompt("negative_tags")
    present = {name.lower(): name for name in available_embeddings(paths)}
    wanted = load_prompt("negative_embeddings").replace(",", " ").split()
    names = [present[name.lower()] for name in wanted if name.lower() in present]
    return ", ".join([*names, tags]) if names else tags
