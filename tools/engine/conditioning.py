"""What a render is conditioned on besides the pose: prompt embeddings and reference embeddings.

Prompt embeddings come from `tools.engine.prompt_encoding` (75-token chunks, A1111 weights,
clip skip), cached per prompt and LoRA set (the least recently used dropped past
`PROMPT_CACHE_SIZE`); a prompt with A1111 edits or alternation is a schedule of texts
(`tools.engine.prompt_schedule`), each encoded and cached as a prompt, switched per step by
`tools.engine.text_schedule.TextSchedule`. IP-Adapter image embeddings are computed once per
reference image (cached on disk, keyed by file hash and encoder, and in memory, the least recently
used dropped past `REFERENCE_CACHE_SIZE`), so a batch of a character pays for neither again.
`PerImageReferences` hands each image of a batch exactly its own reference.
"""

from __future__ import annotations

import hashlib
import logging
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PIL import Image

from tools.engine.extra_networks import Embeddings, LoraAdapters
from tools.engine.lora_hashes import file_digest
from tools.engine.lru import evict
from tools.engine.prompt_encoding import PromptEmbedding, PromptEncoder
from tools.engine.prompt_schedule import (
    NESTING_IGNORED,
    Schedule,
    nests_too_deep,
    prompt_schedule,
    prompt_warnings,
    text_at,
)
from tools.engine.prompt_syntax import LoraRequest, extract_loras
from tools.engine.text_schedule import TextSchedule
from tools.quality.clip_images import pad_to_square

if TYPE_CHECKING:
    import torch

    from tools.engine.loading import ModelSources
    from tools.engine.render_job import RenderJob

log = logging.getLogger(__name__)

# Part of the reference-embedding cache key: bump it when the image handed to the encoder changes.
REFERENCE_FRAMING = "square"
# Prompt embeddings kept (on the device), the least recently used dropped beyond it.
PROMPT_CACHE_SIZE = 128
# Reference embeddings kept in memory (a long-lived worker sees ever new reference images); one
# dropped is read back from its disk cache when used again.
REFERENCE_CACHE_SIZE = 64


class PerImageReferences:
    """UNet pre-hook that gives each image of a batch exactly its own IP-Adapter embedding.

    diffusers repeats `ip_adapter_image_embeds` by the batch size (`prepare_ip_adapter_image_
    embeds` treats them as one reference set shared by every image), and the attention processor
    then folds the repeats into each image's key/value tokens: every image would attend to every
    reference of the batch. `Engine.render` therefore hands diffusers a one-image placeholder and
    sets `rows` here, one row per UNet batch row (unconditional rows first, as diffusers orders
    the doubled CFG batch); after the CFG cutoff the UNet runs the conditional rows only.
    """

    def __init__(self) -> None:
        self.rows: torch.Tensor | None = None

    def __call__(self, _module: Any, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        added = kwargs.get("added_cond_kwargs")
        if self.rows is None or not added or "image_embeds" not in added:
            return args, kwargs
        sample = args[0] if args else kwargs["sample"]
        rows = self.rows
        if sample.shape[0] != rows.shape[0]:
            rows = rows[rows.shape[0] - sample.shape[0] :]
        kwargs["added_cond_kwargs"] = {**added, "image_embeds": [rows]}
        return args, kwargs


class Conditioning:
    """Prompt and reference embeddings for one loaded pipeline, with their caches."""

    def __init__(
        self,
        pipe: Any,
        sources: ModelSources,
        loras: LoraAdapters,
        embeddings: Embeddings,
        cache_dir: Path,
    ) -> None:
        self.pipe = pipe
        self.sources = sources
        self.loras = loras
        self.embeddings = embeddings
        self.cache_dir = cache_dir
        # Asking the pipeline walks every module (milliseconds a call): once is enough. With
        # CPU offload the modules rest on the CPU; this is where inputs go.
        self.device = pipe._execution_device
        self.encoder_calls = 0
        self._prompts: OrderedDict[tuple[str, tuple[LoraRequest, ...]], PromptEmbedding] = (
            OrderedDict()
        )
        self._prompt_encoder: PromptEncoder | None = None
        self._references: OrderedDict[str, tuple[torch.Tensor, torch.Tensor]] = OrderedDict()
        self._blank_reference: tuple[torch.Tensor, torch.Tensor] | None = None

    # -- prompts -----------------------------------------------------------------------------
    def prompt(self, prompt: str) -> PromptEmbedding:
        """The prompt's embedding (its `<lora:...>` tags already taken out), cached per prompt
        and active LoRA set: a LoRA may adapt the text encoder too."""
        key = (prompt, self.loras.active)
        if key in self._prompts:
            self._prompts.move_to_end(key)
            return self._prompts[key]
        family = self.sources.family
        if self.embeddings.load_named(self.pipe, family, [prompt]) or self._prompt_encoder is None:
            self._prompt_encoder = PromptEncoder(
                self.pipe,
                family,
                self.sources.models.clip_skip,
                self.device,
                self.embeddings.tokens,
            )
        embedding = self._prompt_encoder.encode(prompt)
        self._prompts[key] = embedding
        evict(self._prompts, PROMPT_CACHE_SIZE)
        return embedding

    def text_inputs(
        self, jobs: list[RenderJob], steps: int = 1, hires_steps: int | None = None
    ) -> TextSchedule:
        """Prompt and negative embeddings of the jobs over a pass of `steps` model steps (see
        `prompt_schedule` for `hires_steps`): the pipeline's inputs at step 0, and the
        embeddings of each later step at which a prompt edit or alternation changes a row.

        Each distinct text of the schedules is encoded once (and cached as any prompt: the
        step boundaries are recomputed per pass, so the cache keys on the text alone). All are
        repeated to the least common multiple of their chunk counts (a prompt may be several
        77-token chunks), as ComfyUI lines up conditionings of different lengths; a batch
        without edits is exactly what it was before edits existed."""
        import math

        rows = []
        # One line per pass, however many images: A1111 splits the prompt only, not the
        # negative (modules/prompt_parser.py `get_multicond_prompt_list`).
        lines = {line for job in jobs for line in prompt_warnings(job.prompt)}
        if any(nests_too_deep(job.negative_prompt) for job in jobs):
            lines.add(NESTING_IGNORED)
        for line in sorted(lines):
            log.warning(line)
        # Each distinct text scheduled once, as A1111's `promptdict` over `set(prompts)`
        # (modules/prompt_parser.py): a batch repeats its prompt, and a long one costs steps ×
        # its length to schedule.
        schedules: dict[str, Schedule] = {}
        for job in jobs:
            pair = extract_loras(job.prompt)[0], extract_loras(job.negative_prompt)[0]
            for text in pair:
                if text not in schedules:
                    schedules[text] = prompt_schedule(text, steps, hires_steps)
            rows.append((schedules[pair[0]], schedules[pair[1]]))
        # A1111 modules/prompt_parser.py `reconstruct_cond_batch`: step s uses the first entry
        # ending at or after s, so a row's text changes at step end + 1.
        starts = sorted(
            {0} | {end + 1 for row in rows for schedule in row for end, _ in schedule[:-1]}
        )
        texts = {
            start: [
                (text_at(positive, start), text_at(negative, start)) for positive, negative in rows
            ]
            for start in starts
        }
        # Each distinct text once per pass, whatever the LRU keeps: an alternation's texts recur
        # after more than PROMPT_CACHE_SIZE others.
        prompts: dict[str, PromptEmbedding] = {}
        negatives: dict[str, PromptEmbedding] = {}

        def once(encoded: dict[str, PromptEmbedding], encode, text: str) -> PromptEmbedding:
            if text not in encoded:
                encoded[text] = encode(text)
            return encoded[text]

        steps_rows = {}
        previous = None
        for start in starts:
            if texts[start] == previous:
                continue
            previous = texts[start]
            steps_rows[start] = [
                (once(prompts, self.prompt, positive), once(negatives, self.negative, negative))
                for positive, negative in texts[start]
            ]
        chunks = math.lcm(*(e.chunks for e in [*prompts.values(), *negatives.values()]))
        return TextSchedule(steps_rows, chunks, self.sources.family == "sdxl")

    def negative(self, text: str) -> PromptEmbedding:
        """The negative prompt's embedding; for SDXL an empty one is zeros (embeddings and
        pooled), as A1111's modules/sd_models_xl.py `get_learned_conditioning` (lines 12-34,
        `force_zero_negative_prompt`) and diffusers' `force_zeros_for_empty_prompt` do."""
        import torch

        embedding = self.prompt(text)
        if text != "" or self.sources.family != "sdxl":
            return embedding
        if not getattr(self.pipe.config, "force_zeros_for_empty_prompt", True):
            return embedding
        pooled = None if embedding.pooled is None else torch.zeros_like(embedding.pooled)
        return PromptEmbedding(torch.zeros_like(embedding.embeds), pooled)

    # -- references --------------------------------------------------------------------------
    def reference_rows(
        self, jobs: list[RenderJob], guided: bool
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(rows, stand-in): one reference row per UNet row (see PerImageReferences), and the
        one-image stand-in diffusers is handed."""
        import torch

        positives, negatives = [], []
        for job in jobs:
            if job.reference is None:
                positive, negative = self.zero_reference()
            else:
                positive, negative = self.reference(job.reference)
            positives.append(positive[None, :])
            negatives.append(negative[None, :])
        if guided:
            return torch.cat(negatives + positives), torch.cat([negatives[0], positives[0]])
        return torch.cat(positives), positives[0]

    def reference(self, reference: Path) -> tuple[torch.Tensor, torch.Tensor]:
        """(positive, negative) IP-Adapter embeddings of a reference image, cached."""
        import torch
        from safetensors.torch import load_file, save

        from tools.atomic import write_atomic

        key = f"{file_digest(reference)}-{self._encoder_key()}"
        if key in self._references:
            self._references.move_to_end(key)
            return self._references[key]
        cache_file = self.cache_dir / f"{key}.safetensors"
        if cache_file.exists():
            tensors = load_file(str(cache_file), device=str(self.device))
            pair = (tensors["positive"], tensors["negative"])
        else:
            with Image.open(reference) as image:
                picture = pad_to_square(image)
            with torch.inference_mode():
                positive, negative = self.pipe.encode_image(
                    picture, self.device, 1, self._uses_hidden_states()
                )
            self.encoder_calls += 1
            pair = (positive, negative)
            payload = save(
                {"positive": positive.contiguous().cpu(), "negative": negative.contiguous().cpu()}
            )
            write_atomic(cache_file, lambda handle: handle.write(payload))
        self._references[key] = pair
        evict(self._references, REFERENCE_CACHE_SIZE)
        return pair

    def zero_reference(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Embeddings standing in for 'no reference' (text-only images, IP-Adapter scale 0)."""
        import torch

        if self._blank_reference is None:
            size = self.pipe.feature_extractor.crop_size
            blank = Image.new("RGB", (size["width"], size["height"]), "white")
            with torch.inference_mode():
                positive, negative = self.pipe.encode_image(
                    blank, self.device, 1, self._uses_hidden_states()
                )
            self._blank_reference = (torch.zeros_like(positive), negative)
        return self._blank_reference

    def image_embeddings(self, images: list[Image.Image]) -> torch.Tensor:
        """L2-normalised CLIP image embeddings from the IP-Adapter's encoder (for scoring)."""
        import torch

        pixels = self.pipe.feature_extractor(
            [pad_to_square(image) for image in images], return_tensors="pt"
        ).pixel_values.to(self.device, dtype=self.pipe.image_encoder.dtype)
        with torch.inference_mode():
            embeds = self.pipe.image_encoder(pixels).image_embeds.float()
        return torch.nn.functional.normalize(embeds, dim=-1)

    def _encoder_key(self) -> str:
        """What a cached reference embedding depends on besides the image: the adapter, its
        encoder, the encoder's dtype (an fp32 cache is wrong for an fp16 UNet) and how the image
        was framed (`square` since references are padded to a square)."""
        models = self.sources.models
        return hashlib.sha256(
            f"{self.sources.ipadapter.location}|{models.ipadapter_weight_name}|"
            f"{models.image_encoder_folder}|{self.pipe.image_encoder.dtype}|"
            f"{REFERENCE_FRAMING}".encode()
        ).hexdigest()[:16]

    def _uses_hidden_states(self) -> bool:
        from diffusers.models.embeddings import ImageProjection

        projection = self.pipe.unet.encoder_hid_proj.image_projection_layers[0]
        return not isinstance(projection, ImageProjection)
