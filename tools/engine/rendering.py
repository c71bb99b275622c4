"""The warm diffusion engine: an SD1.5 or SDXL checkpoint + ControlNet OpenPose + IP-Adapter.

One `Engine` owns one pipeline, loaded on first use (or `ensure_loaded()`) and kept warm;
building one touches no file. Loading is `tools.engine.loading`, prompt and reference
embeddings are `tools.engine.conditioning`; this module draws batches of `RenderJob`s. Speed
settings (fused QKV, channels_last, compile, CFG cutoff, low-VRAM offload) are described, with
their measured effect, in docs/PERFORMANCE.md.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from weakref import WeakSet

from PIL import Image

from tools.engine.conditioning import Conditioning, PerImageReferences
from tools.engine.extra_networks import Embeddings, LoraAdapters
from tools.engine.loading import (
    EngineInfo,
    ModelSources,
    batch_size_for,
    load_pipeline,
    sampling_for,
)
from tools.engine.model_sources import ModelSource
from tools.engine.prompt_encoding import PromptEmbedding
from tools.engine.prompt_schedule import model_steps
from tools.engine.prompt_syntax import LoraRequest, extract_loras, merge_loras
from tools.engine.render_job import RenderJob
from tools.engine.vae import decode_latents
from tools.settings import ModelSettings, Settings

if TYPE_CHECKING:
    import torch

StepCallback = Callable[[int, int], None]

# Rough peak bytes per output pixel of a VAE decode in half precision; decides slicing/tiling.
_VAE_BYTES_PER_PIXEL = 4000


@dataclass(frozen=True)
class _Draw:
    """What every image of one `render` call shares."""

    width: int
    height: int
    ipadapter_weight: float
    controlnet_strength: float
    on_step: StepCallback | None


class Engine:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.sources = ModelSources(settings)
        self.sampling = sampling_for(settings)
        self.loras = LoraAdapters(settings.paths)
        self.embeddings = Embeddings(settings.paths)
        self.info: EngineInfo | None = None
        self.loads = 0
        self.vae_redecodes = 0
        # The VAEs that overflowed in fp16 once: decoded in fp32 from then on, as A1111's
        # modules/processing.py `decode_latent_batch` keeps `devices.dtype_vae` at fp32 after
        # its "convert VAE into 32-bit float and retry" (`auto_vae_precision`).
        self._overflowing_vaes: WeakSet[Any] = WeakSet()
        # Set by the worker's out-of-memory fallback: the VAE decodes sliced and tiled from then on.
        self.low_memory = False
        self._pipe: Any = None
        self._conditioning: Conditioning | None = None
        self._references_hook = PerImageReferences()

    # -- the configured models (resolved on first read) ------------------------------------
    @property
    def checkpoint(self) -> ModelSource:
        return self.sources.checkpoint

    @property
    def ipadapter_source(self) -> ModelSource:
        return self.sources.ipadapter

    @property
    def controlnet_source(self) -> ModelSource:
        return self.sources.controlnet

    def labels(self) -> dict[str, str]:
        """How an image's metadata names the checkpoint, ControlNet and IP-Adapter that drew it."""
        return {
            "model": self.checkpoint.label,
            "controlnet": self.controlnet_source.label,
            "ipadapter": f"{self.ipadapter_source.label}/{self.models.ipadapter_weight_name}",
        }

    def loaded_with(self) -> dict[str, Any]:
        """Metadata fields besides `labels()`: the prediction type (when known) and the
        few-step LoRA (when one is fused)."""
        fields = {} if self.sources.prediction is None else self.sources.prediction.record()
        if self.fast_lora_source is not None:
            fields["fast_lora"] = self.fast_lora_source.label
        return fields

    @property
    def fast_lora_source(self) -> ModelSource | None:
        return self.sources.fast_lora

    @property
    def family(self) -> str:
        return self.sources.family

    @property
    def models(self) -> ModelSettings:
        return self.sources.models

    def prefetch(self) -> None:
        self.sources.prefetch()

    # -- loading ---------------------------------------------------------------------------
    def ensure_loaded(self) -> Conditioning:
        """Load the pipeline now (first call only); its conditioning comes with it."""
        if self._conditioning is None:
            pipe, self.info = load_pipeline(self.sources, self.sampling, self._references_hook)
            self.loads += 1
            self._pipe = pipe
            self._conditioning = Conditioning(
                pipe,
                self.sources,
                self.loras,
                self.embeddings,
                self.settings.paths.state / "embeddings",
            )
            if self.models.compile:
                self._warm_up()
        return self._conditioning

    @property
    def pipe(self) -> Any:
        self.ensure_loaded()
        return self._pipe

    @property
    def loaded(self) -> bool:
        return self._pipe is not None

    @property
    def device(self) -> Any:
        return self.ensure_loaded().device

    @property
    def encoder_calls(self) -> int:
        """IP-Adapter encoder runs for references (a cached embedding costs none)."""
        return 0 if self._conditioning is None else self._conditioning.encoder_calls

    def _warm_up(self) -> None:
        """Compile at the configured size and batch now, so the first real batch runs at full
        speed (another batch size would compile again)."""
        resolution = self.settings.output.resolution
        blank = Image.new("RGB", (resolution.width, resolution.height))
        self.render(
            [RenderJob("", "", blank, None, 0)] * batch_size_for(self.settings),
            width=resolution.width,
            height=resolution.height,
            ipadapter_weight=0.0,
            controlnet_strength=self.models.controlnet_strength,
        )

    # -- conditioning ----------------------------------------------------------------------
    def prompt_embedding(self, prompt: str) -> PromptEmbedding:
        """The embedding the pipeline is handed for `prompt` (clip skip, chunks, weights)."""
        return self.ensure_loaded().prompt(prompt)

    def reference_embedding(self, reference: Path) -> tuple[torch.Tensor, torch.Tensor]:
        """(positive, negative) IP-Adapter embeddings of a reference image, cached."""
        return self.ensure_loaded().reference(reference)

    def image_embeddings(self, images: list[Image.Image]) -> torch.Tensor:
        """L2-normalised CLIP image embeddings from the IP-Adapter's encoder (for scoring)."""
        return self.ensure_loaded().image_embeddings(images)

    def lora_set(
        self, prompt: str, negative_prompt: str, own: tuple[LoraRequest, ...] = ()
    ) -> tuple[LoraRequest, ...]:
        """`models.loras`, then the image's own (its character's), then the prompts'
        `<lora:...>` tags; for a LoRA named twice the later weight wins."""
        # The settings as given: LoRAs need no family detection (a ComfyUI engine has no
        # local checkpoint to detect it from).
        configured = [LoraRequest(lora.name, lora.weight) for lora in self.settings.models.loras]
        _, in_prompt = extract_loras(prompt)
        _, in_negative = extract_loras(negative_prompt)
        return merge_loras(configured, own, in_prompt, in_negative)

    # -- rendering -------------------------------------------------------------------------
    def render(
        self,
        jobs: list[RenderJob],
        *,
        width: int,
        height: int,
        ipadapter_weight: float,
        controlnet_strength: float,
        on_step: StepCallback | None = None,
    ) -> list[Image.Image]:
        """Draw the jobs; jobs with different LoRA sets are drawn in separate groups (one set of
        adapters is active per call), switching adapters without reloading the checkpoint.

        Jobs without a reference are a group of their own, drawn at IP-Adapter scale 0: the
        scale is one number per call (diffusers models/attention_processor.py
        IPAdapterAttnProcessor2_0 adds `scale * ip_hidden_states` to every row), and a zero
        image embedding at the batch's scale is not neutral (models/embeddings.py
        ImageProjection projects zeros to its bias, through a LayerNorm)."""
        draw = _Draw(width, height, ipadapter_weight, controlnet_strength, on_step)
        groups: dict[tuple[tuple[LoraRequest, ...], bool], list[int]] = {}
        for index, job in enumerate(jobs):
            loras = self.lora_set(job.prompt, job.negative_prompt, job.loras)
            groups.setdefault((loras, job.reference is None), []).append(index)
        images: list[Image.Image | None] = [None] * len(jobs)
        for (loras, _text_only), indexes in groups.items():
            self.loras.use(self.pipe, loras)
            drawn = self._render_group([jobs[index] for index in indexes], draw)
            for index, image in zip(indexes, drawn, strict=True):
                images[index] = image
        return [image for image in images if image is not None]

    def _render_group(self, jobs: list[RenderJob], draw: _Draw) -> list[Image.Image]:
        import torch

        conditioning = self.ensure_loaded()
        pipe, sampling = self._pipe, self.sampling
        steps = sampling.steps
        # Prompt edits count steps as A1111 (second-order samplers: 2·steps).
        text = conditioning.text_inputs(jobs, model_steps(steps, pipe.scheduler.order))
        guided = sampling.guidance_scale > 1.0
        rows, stand_in = conditioning.reference_rows(jobs, guided)
        with_references = any(job.reference is not None for job in jobs)
        pipe.set_ip_adapter_scale(draw.ipadapter_weight if with_references else 0.0)
        cfg_cutoff = self.settings.output.cfg_cutoff
        cutoff = math.ceil(cfg_cutoff * steps) if guided and cfg_cutoff else None
        cut_inputs = self._cut_tensor_names() if guided else []
        tensor_inputs = cut_inputs + [n for n in text.tensor_names if n not in cut_inputs]

        def step_end(_pipe: Any, step: int, _timestep: Any, kwargs: dict) -> dict:
            # The next step's prompt (an edit or alternation), before the cutoff halves it.
            text.update(step + 1, kwargs, guided and _pipe._guidance_scale > 1.0)
            if cutoff is not None and step + 1 == cutoff:
                # From here on, run the conditional half only: the rest of the steps cost half.
                _pipe._guidance_scale = 0.0
                for name in cut_inputs:
                    kwargs[name] = kwargs[name].chunk(2)[-1]
            if draw.on_step is not None:
                draw.on_step(step + 1, steps)
            return kwargs

        generators = [torch.Generator("cpu").manual_seed(job.seed) for job in jobs]
        if hasattr(pipe.scheduler, "noise_sampler_seed"):
            # SDE samplers draw Brownian noise of their own: seed it per image, like the latents.
            pipe.scheduler.noise_sampler_seed = [job.seed for job in jobs]
        self._references_hook.rows = rows
        try:
            with torch.inference_mode():
                result = pipe(
                    **text.first,
                    image=[job.pose_image.convert("RGB") for job in jobs],
                    ip_adapter_image_embeds=[stand_in],
                    controlnet_conditioning_scale=draw.controlnet_strength,
                    num_inference_steps=steps,
                    guidance_scale=sampling.guidance_scale,
                    width=draw.width,
                    height=draw.height,
                    generator=generators,
                    callback_on_step_end=step_end,
                    callback_on_step_end_tensor_inputs=tensor_inputs,
                    output_type="latent",
                )
        finally:
            self._references_hook.rows = None
        return self.decode(pipe, result.images)

    def decode(self, pipe: Any, latents: torch.Tensor) -> list[Image.Image]:
        """Latents → images, for every pass (first, hires, face detail): the VAE fitted to this
        decode's batch and size, an fp16 overflow redone in fp32 (`vae.decode_latents`) and
        that VAE decoded in fp32 from then on (not decoded twice each time)."""
        factor = pipe.vae_scale_factor
        height, width = latents.shape[-2] * factor, latents.shape[-1] * factor
        self._fit_vae(latents.shape[0], width, height)
        images, redone = decode_latents(pipe, latents, pipe.vae in self._overflowing_vaes)
        if redone:
            self._overflowing_vaes.add(pipe.vae)
        self.vae_redecodes += redone
        return images

    def use_less_memory(self) -> None:
        """After an out-of-memory error (the worker's fallback): decode the VAE in slices and
        tiles from now on, whatever the size; `_fit_vae` no longer turns them off.

        Not attention slicing: its processors replace the IP-Adapter's (the soak eval caught that).
        """
        self.low_memory = True
        vae = self.pipe.vae
        vae.enable_slicing()
        vae.enable_tiling()

    def _cut_tensor_names(self) -> list[str]:
        if self.family == "sdxl":
            return ["prompt_embeds", "add_text_embeds", "add_time_ids", "image"]
        return ["prompt_embeds", "image"]

    def _fit_vae(self, batch: int, width: int, height: int) -> None:
        """Decode in slices/tiles only when this decode would not fit in free GPU memory; after
        `use_less_memory` always (a later small batch must not undo the fallback)."""
        if self.low_memory:
            return
        vae = self._pipe.vae
        need = batch * width * height * _VAE_BYTES_PER_PIXEL
        one = width * height * _VAE_BYTES_PER_PIXEL
        free = free_device_memory(self.device)
        vae.enable_slicing() if need > free / 2 else vae.disable_slicing()
        vae.enable_tiling() if one > free / 2 else vae.disable_tiling()


def free_device_memory(device: Any) -> float:
    """Bytes a new allocation on `device` can have: the driver's free memory plus what torch's
    caching allocator holds unused (after the denoising loop that is most of it); unbounded on
    the CPU."""
    import torch

    if device.type != "cuda":
        return math.inf
    free, _ = torch.cuda.mem_get_info(device)
    return free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
