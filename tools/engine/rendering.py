"""The warm diffusion engine: an SD1.5 or SDXL checkpoint + ControlNet OpenPose + IP-Adapter.

One `Engine` owns one pipeline, loaded on first use and kept warm. Prompt embeddings come from
`tools.engine.prompt_encoding` (75-token chunks, A1111 weights, clip skip; cached per prompt and
LoRA set); LoRAs, embeddings and an external VAE from `tools.engine.extra_networks`. IP-Adapter
image embeddings are computed once per reference image (cached in memory and on disk, keyed by file
hash and encoder), so a batch of a character pays for neither again. Speed settings (fused QKV,
channels_last, compile, CFG cutoff, low-VRAM offload) are described, with their measured effect,
in docs/PERFORMANCE.md.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PIL import Image

from tools.engine.extra_networks import (
    Embeddings,
    LoraAdapters,
    decode_latents,
    find_lora,
    find_vae,
    load_vae,
)
from tools.engine.families import (
    check_controlnet_family,
    check_ipadapter_family,
    detect_family,
    models_for_family,
)
from tools.engine.model_sources import (
    SD15_CONFIG_REPO,
    ModelSource,
    fetch_hub,
    local_path,
    resolve_source,
    weight_patterns,
)
from tools.engine.prompt_encoding import PromptEmbedding, PromptEncoder, pad_to_chunks
from tools.engine.prompt_syntax import LoraRequest, extract_loras, merge_loras
from tools.engine.samplers import SAMPLER_TABLE
from tools.errors import UserError
from tools.quality.clip_images import pad_to_square
from tools.settings import ModelSettings, Settings

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

StepCallback = Callable[[int, int], None]

SDXL_CONFIG_REPO = "stabilityai/stable-diffusion-xl-base-1.0"
# Part of the reference-embedding cache key: bump it when the image handed to the encoder changes.
REFERENCE_FRAMING = "square"
# Rough peak bytes per output pixel of a VAE decode in half precision; decides slicing/tiling.
_VAE_BYTES_PER_PIXEL = 4000

SAMPLERS = {name: (class_name, label) for name, (class_name, label, _) in SAMPLER_TABLE.items()}
# Few-step mode: the scheduler each kind of distilled LoRA was trained with (Hyper-SD: TCD).
FAST_SAMPLERS = {
    "lcm": ("LCMScheduler", "LCM"),
    "tcd": ("TCDScheduler", "TCD"),
}


@dataclass(frozen=True)
class Sampling:
    """How many steps, at what guidance, with which scheduler: normal or few-step mode."""

    steps: int
    guidance_scale: float
    scheduler_class: str
    sampler: str
    fast_lora: str | None = None
    scheduler_options: tuple[tuple[str, Any], ...] = ()


def sampling_for(settings: Settings) -> Sampling:
    output, fast_lora = settings.output, settings.models.fast_lora
    if fast_lora:
        class_name, label = FAST_SAMPLERS[output.fast_sampler]
        return Sampling(output.fast_steps, output.fast_guidance_scale, class_name, label, fast_lora)
    class_name, label, options = SAMPLER_TABLE[output.sampler]
    return Sampling(
        output.steps, output.guidance_scale, class_name, label, None, tuple(options.items())
    )


@dataclass(frozen=True)
class RenderJob:
    """One image to draw. Jobs rendered together must share size, steps, CFG and weights."""

    prompt: str
    negative_prompt: str
    pose_image: Image.Image
    reference: Path | None
    seed: int
    # LoRAs of this image besides models.loras and the prompt's own <lora:NAME:W> tags.
    loras: tuple[LoraRequest, ...] = ()


@dataclass
class EngineInfo:
    """What loaded, for metadata and `doctor`."""

    model: str
    controlnet: str
    ipadapter: str
    device: str
    dtype: str
    family: str = "sd15"


def pick_device(preference: str) -> str:
    import torch

    if preference != "auto":
        return preference
    if torch.cuda.is_available():
        return "cuda"
    return "cpu"


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def batch_size_for(settings: Settings) -> int:
    """Images per engine call. "auto": 4 on CUDA, where a batch fills the GPU better; 1 on the
    CPU (compute-bound: no gain, and the first image would come later) and with low_vram."""
    size = settings.output.batch_size
    if size != "auto":
        return size
    models = settings.models
    return 4 if pick_device(models.device) == "cuda" and not models.low_vram else 1


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


class Engine:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        configured = settings.models
        self.checkpoint = resolve_source(configured.checkpoint, settings.paths.models, "checkpoint")
        self.ipadapter_source = resolve_source(
            configured.ipadapter, settings.paths.models, "ipadapter"
        )
        self.fast_lora_source = (
            resolve_source(configured.fast_lora, settings.paths.models, "fast_lora")
            if configured.fast_lora
            else None
        )
        self.sampling = sampling_for(settings)
        self.embedding_dir = settings.paths.state / "embeddings"
        self._pipe: Any = None
        self._device: Any = None
        self.info: EngineInfo | None = None
        self._text_cache: dict[tuple[str, tuple[LoraRequest, ...]], PromptEmbedding] = {}
        self._prompt_encoder: PromptEncoder | None = None
        self.loras = LoraAdapters(settings.paths)
        self.embeddings = Embeddings(settings.paths)
        self.vae_redecodes = 0
        self._reference_cache: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self._blank_reference: tuple[torch.Tensor, torch.Tensor] | None = None
        self._references_hook = PerImageReferences()
        self.encoder_calls = 0
        self.loads = 0

    @cached_property
    def family(self) -> str:
        if self.settings.models.family != "auto":
            return self.settings.models.family
        return detect_family(self.checkpoint)

    @cached_property
    def models(self) -> ModelSettings:
        """The model settings, unset ControlNet / IP-Adapter ones filled for the family."""
        return models_for_family(self.settings.models, self.family)

    @cached_property
    def controlnet_source(self) -> ModelSource:
        assert self.models.controlnet is not None
        return resolve_source(self.models.controlnet, self.settings.paths.models, "controlnet")

    # -- loading ---------------------------------------------------------------------------
    @property
    def pipe(self) -> Any:
        if self._pipe is None:
            self._pipe = self._load()
            if self.models.compile:
                self._warm_up()
        return self._pipe

    @property
    def loaded(self) -> bool:
        return self._pipe is not None

    @property
    def device(self) -> Any:
        """Where inputs go; with CPU offload the pipeline's modules rest on the CPU."""
        if self._device is None:
            # Asking the pipeline walks every module (milliseconds a call): once is enough.
            self._device = self.pipe._execution_device
        return self._device

    def _load(self) -> Any:
        import diffusers
        import torch
        import transformers
        from diffusers import (
            ControlNetModel,
            StableDiffusionControlNetPipeline,
            StableDiffusionXLControlNetPipeline,
        )

        # Downloads keep their own progress bars; loading local weights needs none.
        diffusers.utils.logging.disable_progress_bar()
        transformers.utils.logging.disable_progress_bar()
        family = self.family
        pipeline_class = (
            StableDiffusionXLControlNetPipeline
            if family == "sdxl"
            else StableDiffusionControlNetPipeline
        )
        device = pick_device(self.models.device)
        dtype = torch.float16 if device == "cuda" else torch.float32
        controlnet_dir = self._controlnet_dir()
        check_controlnet_family(
            controlnet_dir, family, self.controlnet_source.label, self.checkpoint.label
        )
        controlnet = ControlNetModel.from_pretrained(controlnet_dir, dtype=dtype)
        common: dict[str, Any] = {
            "controlnet": controlnet,
            "dtype": dtype,
            "feature_extractor": None,
        }
        if family == "sd15":
            common.update(safety_checker=None, requires_safety_checker=False)
        if self.checkpoint.kind == "file":
            pipe = pipeline_class.from_single_file(
                self.checkpoint.location,
                config=str(self._single_file_config(family)),
                local_files_only=True,
                **common,
            )
        else:
            pipe = pipeline_class.from_pretrained(self._checkpoint_dir(), **common)
        pipe.scheduler = self._scheduler(pipe.scheduler.config)
        if self.models.vae:
            pipe.vae = load_vae(
                self.models.vae,
                self.settings.paths.models,
                pipe.vae,
                dtype,
                self.settings.paths.state / "vae-config",
            )
        if self.fast_lora_source is not None:
            self._fuse_fast_lora(pipe)
        if self.models.fuse_qkv:
            # Before the IP-Adapter: its loader keeps the self-attention processors (fused) and
            # swaps only the cross-attention ones. Not the ControlNet: its fuse_qkv_projections
            # (AttentionMixin's) fuses only the new attention modules, so on SD's `Attention` it
            # does nothing (tests/test_engine.py pins that).
            pipe.unet.fuse_qkv_projections()
            pipe.vae.fuse_qkv_projections()
        ipadapter_dir = self._ipadapter_dir()
        check_ipadapter_family(
            ipadapter_dir / self.models.ipadapter_subfolder / self.models.ipadapter_weight_name,
            pipe.unet.config.cross_attention_dim,
            family,
            self.ipadapter_source.label,
            self.checkpoint.label,
        )
        pipe.load_ip_adapter(
            str(ipadapter_dir),
            subfolder=self.models.ipadapter_subfolder,
            weight_name=self.models.ipadapter_weight_name,
            image_encoder_folder=self.models.image_encoder_folder,
            local_files_only=True,
        )
        if device == "cuda" and self.models.channels_last:
            pipe.unet.to(memory_format=torch.channels_last)
            pipe.controlnet.to(memory_format=torch.channels_last)
        if self.models.low_vram and device == "cuda":
            pipe.enable_model_cpu_offload()
        else:
            pipe.to(device)
        pipe.unet.register_forward_pre_hook(self._references_hook, with_kwargs=True)
        if self.models.compile:
            pipe.unet.compile()
            pipe.controlnet.compile()
        pipe.set_progress_bar_config(disable=True)
        self.loads += 1
        self.info = EngineInfo(
            model=self.checkpoint.label,
            controlnet=self.controlnet_source.label,
            ipadapter=f"{self.ipadapter_source.label}/{self.models.ipadapter_weight_name}",
            device=device,
            dtype=str(dtype).removeprefix("torch."),
            family=family,
        )
        log.info("engine loaded: %s", self.info)
        return pipe

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

    # -- where the weights are (downloading hub models the first time) -------------------------
    def _controlnet_dir(self) -> Path:
        return local_path(
            self.controlnet_source, weight_patterns(self.models, "controlnet"), "controlnet"
        )

    def _checkpoint_dir(self) -> Path:
        return local_path(self.checkpoint, weight_patterns(self.models, "checkpoint"), "checkpoint")

    def _ipadapter_dir(self) -> Path:
        return local_path(
            self.ipadapter_source, weight_patterns(self.models, "ipadapter"), "ipadapter"
        )

    def _fast_lora_location(self) -> Path:
        assert self.fast_lora_source is not None
        return local_path(self.fast_lora_source, ["*.safetensors"], "fast_lora")

    def prefetch(self) -> None:
        """Download whatever is not cached yet, without loading anything.

        Front ends call this before queuing work, so a first download shows its size and
        progress bar in the user's terminal (the worker runs in the background).
        """
        self._controlnet_dir()
        if self.checkpoint.kind == "file":
            self._single_file_config(self.family)
        else:
            self._checkpoint_dir()
        self._ipadapter_dir()
        if self.fast_lora_source is not None:
            self._fast_lora_location()
        for lora in self.models.loras:
            find_lora(lora.name, self.settings.paths)
        if self.models.vae:
            kind, location = find_vae(self.models.vae, self.settings.paths.models)
            if kind == "hub":
                fetch_hub(str(location), ["*.safetensors", "*.bin"], "VAE")

    def _single_file_config(self, family: str) -> Path:
        """Architecture configs for a single-file checkpoint; local first, so offline works."""
        if self.models.checkpoint_config:
            source = resolve_source(
                self.models.checkpoint_config, self.settings.paths.models, "checkpoint_config"
            )
            if source.kind == "file":
                raise UserError(
                    "models.checkpoint_config must be a diffusers folder or a hub id",
                    "point it at a folder with model_index.json",
                )
            return local_path(source, [], "checkpoint_config")
        if family == "sdxl":
            return fetch_hub(SDXL_CONFIG_REPO, [], "SDXL configs for the single-file checkpoint")
        return fetch_hub(SD15_CONFIG_REPO, [], "SD1.5 configs for the single-file checkpoint")

    def _scheduler(self, config: Any) -> Any:
        import diffusers

        return getattr(diffusers, self.sampling.scheduler_class).from_config(
            config, **dict(self.sampling.scheduler_options)
        )

    def _fuse_fast_lora(self, pipe: Any) -> None:
        """Merge the few-step LoRA into the UNet's weights (needs `peft`). Before QKV fusion:
        fused projections are new layers the LoRA's to_q/to_k/to_v keys would miss."""
        try:
            import peft  # noqa: F401
        except ImportError as error:
            raise UserError(
                "models.fast_lora needs the peft package", "pip install peft"
            ) from error
        location = self._fast_lora_location()
        if location.is_file():
            pipe.load_lora_weights(
                str(location.parent), weight_name=location.name, adapter_name="fast"
            )
        else:
            pipe.load_lora_weights(str(location), adapter_name="fast")
        pipe.fuse_lora(adapter_names=["fast"])
        # The merged weights stay; peft's wrapper layers go, so the UNet runs as fast as before.
        pipe.unload_lora_weights()

    # -- embeddings --------------------------------------------------------------------------
    def _encode_prompt(self, prompt: str) -> torch.Tensor:
        """Text embedding with clip skip in the A1111 sense: 2 = the penultimate layer."""
        return self._prompt_embedding(prompt).embeds

    def _prompt_embedding(self, prompt: str) -> PromptEmbedding:
        """The prompt's embedding (its `<lora:...>` tags already taken out), cached per prompt
        and active LoRA set: a LoRA may adapt the text encoder too."""
        key = (prompt, self.loras.active)
        if key in self._text_cache:
            return self._text_cache[key]
        pipe = self.pipe
        family = self.info.family if self.info is not None else self.family
        if self.embeddings.load_named(pipe, family, [prompt]) or self._prompt_encoder is None:
            self._prompt_encoder = PromptEncoder(
                pipe, family, self.models.clip_skip, self.device, self.embeddings.tokens
            )
        embedding = self._prompt_encoder.encode(prompt)
        self._text_cache[key] = embedding
        return embedding

    def loras_for(self, job: RenderJob) -> tuple[LoraRequest, ...]:
        return self.lora_set(job.prompt, job.negative_prompt, job.loras)

    def lora_set(
        self, prompt: str, negative_prompt: str, own: tuple[LoraRequest, ...] = ()
    ) -> tuple[LoraRequest, ...]:
        """`models.loras`, then the image's own (its character's), then the prompts'
        `<lora:...>` tags; for a LoRA named twice the later weight wins."""
        configured = [LoraRequest(lora.name, lora.weight) for lora in self.models.loras]
        _, in_prompt = extract_loras(prompt)
        _, in_negative = extract_loras(negative_prompt)
        return merge_loras(configured, own, in_prompt, in_negative)

    def _encoder_key(self) -> str:
        """What a cached reference embedding depends on besides the image: the adapter, its
        encoder, the encoder's dtype (an fp32 cache is wrong for an fp16 UNet) and how the image
        was framed (`square` since references are padded to a square)."""
        return hashlib.sha256(
            f"{self.ipadapter_source.location}|{self.models.ipadapter_weight_name}|"
            f"{self.models.image_encoder_folder}|{self.pipe.image_encoder.dtype}|"
            f"{REFERENCE_FRAMING}".encode()
        ).hexdigest()[:16]

    def _uses_hidden_states(self) -> bool:
        from diffusers.models.embeddings import ImageProjection

        projection = self.pipe.unet.encoder_hid_proj.image_projection_layers[0]
        return not isinstance(projection, ImageProjection)

    def reference_embedding(self, reference: Path) -> tuple[torch.Tensor, torch.Tensor]:
        """(positive, negative) IP-Adapter embeddings of a reference image, cached."""
        import torch
        from safetensors.torch import load_file

        from tools.atomic import write_atomic

        key = f"{file_digest(reference)}-{self._encoder_key()}"
        if key in self._reference_cache:
            return self._reference_cache[key]
        pipe = self.pipe
        cache_file = self.embedding_dir / f"{key}.safetensors"
        if cache_file.exists():
            tensors = load_file(str(cache_file), device=str(self.device))
            pair = (tensors["positive"], tensors["negative"])
        else:
            with Image.open(reference) as image:
                picture = pad_to_square(image)
            with torch.inference_mode():
                positive, negative = pipe.encode_image(
                    picture, self.device, 1, self._uses_hidden_states()
                )
            self.encoder_calls += 1
            pair = (positive, negative)
            payload = {
                "positive": positive.contiguous().cpu(),
                "negative": negative.contiguous().cpu(),
            }
            self.embedding_dir.mkdir(parents=True, exist_ok=True)
            write_atomic(cache_file, lambda handle: handle.write(_safetensors_bytes(payload)))
        self._reference_cache[key] = pair
        return pair

    def image_embeddings(self, images: list[Image.Image]) -> torch.Tensor:
        """L2-normalised CLIP image embeddings from the IP-Adapter's encoder (for scoring)."""
        import torch

        pipe = self.pipe
        pixels = pipe.feature_extractor(
            [pad_to_square(image) for image in images], return_tensors="pt"
        ).pixel_values.to(self.device, dtype=pipe.image_encoder.dtype)
        with torch.inference_mode():
            embeds = pipe.image_encoder(pixels).image_embeds.float()
        return torch.nn.functional.normalize(embeds, dim=-1)

    # -- rendering ---------------------------------------------------------------------------
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
        adapters is active per call), switching adapters without reloading the checkpoint."""
        if not jobs:
            return []
        groups: dict[tuple[LoraRequest, ...], list[int]] = {}
        for index, job in enumerate(jobs):
            groups.setdefault(self.loras_for(job), []).append(index)
        images: list[Image.Image | None] = [None] * len(jobs)
        for loras, indexes in groups.items():
            self.loras.use(self.pipe, loras)
            drawn = self._render_group(
                [jobs[index] for index in indexes],
                width=width,
                height=height,
                ipadapter_weight=ipadapter_weight,
                controlnet_strength=controlnet_strength,
                on_step=on_step,
            )
            for index, image in zip(indexes, drawn, strict=True):
                images[index] = image
        return [image for image in images if image is not None]

    def _text_inputs(self, jobs: list[RenderJob]) -> dict[str, Any]:
        """Prompt and negative embeddings of the jobs, all padded with empty chunks to the
        longest one (a prompt may be several 77-token chunks)."""
        import torch

        prompts = [self._prompt_embedding(extract_loras(job.prompt)[0]) for job in jobs]
        negatives = [self._prompt_embedding(extract_loras(job.negative_prompt)[0]) for job in jobs]
        chunks = max(embedding.chunks for embedding in prompts + negatives)
        empty = self._prompt_embedding("")
        text: dict[str, Any] = {
            "prompt_embeds": torch.cat([pad_to_chunks(p, chunks, empty) for p in prompts]),
            "negative_prompt_embeds": torch.cat(
                [pad_to_chunks(p, chunks, empty) for p in negatives]
            ),
        }
        if self.info is not None and self.info.family == "sdxl":
            text["pooled_prompt_embeds"] = torch.cat([p.pooled for p in prompts])
            text["negative_pooled_prompt_embeds"] = torch.cat([p.pooled for p in negatives])
        return text

    def _render_group(
        self,
        jobs: list[RenderJob],
        *,
        width: int,
        height: int,
        ipadapter_weight: float,
        controlnet_strength: float,
        on_step: StepCallback | None = None,
    ) -> list[Image.Image]:
        import torch

        pipe = self.pipe
        output = self.settings.output
        text = self._text_inputs(jobs)
        positives, negatives = [], []
        for job in jobs:
            if job.reference is None:
                positive, negative = self._zero_reference()
            else:
                positive, negative = self.reference_embedding(job.reference)
            positives.append(positive[None, :])
            negatives.append(negative[None, :])
        with_references = any(job.reference is not None for job in jobs)
        pipe.set_ip_adapter_scale(ipadapter_weight if with_references else 0.0)
        sampling = self.sampling
        guided = sampling.guidance_scale > 1.0
        # One row per UNet row (see PerImageReferences); diffusers gets a one-image stand-in.
        rows = torch.cat(negatives + positives) if guided else torch.cat(positives)
        stand_in = torch.cat([negatives[0], positives[0]]) if guided else positives[0]
        steps = sampling.steps
        cutoff = math.ceil(output.cfg_cutoff * steps) if guided and output.cfg_cutoff else None
        cut_inputs = [name for name in self._cut_tensor_names() if guided]

        def step_end(_pipe: Any, step: int, _timestep: Any, kwargs: dict) -> dict:
            if cutoff is not None and step + 1 == cutoff:
                # From here on, run the conditional half only: the rest of the steps cost half.
                _pipe._guidance_scale = 0.0
                for name in cut_inputs:
                    kwargs[name] = kwargs[name].chunk(2)[-1]
            if on_step is not None:
                on_step(step + 1, steps)
            return kwargs

        self._fit_vae(len(jobs), width, height)
        generators = [torch.Generator("cpu").manual_seed(job.seed) for job in jobs]
        if hasattr(pipe.scheduler, "noise_sampler_seed"):
            # SDE samplers draw Brownian noise of their own: seed it per image, like the latents.
            pipe.scheduler.noise_sampler_seed = [job.seed for job in jobs]
        self._references_hook.rows = rows
        try:
            with torch.inference_mode():
                result = pipe(
                    **text,
                    image=[job.pose_image.convert("RGB") for job in jobs],
                    ip_adapter_image_embeds=[stand_in],
                    controlnet_conditioning_scale=controlnet_strength,
                    num_inference_steps=steps,
                    guidance_scale=sampling.guidance_scale,
                    width=width,
                    height=height,
                    generator=generators,
                    callback_on_step_end=step_end,
                    callback_on_step_end_tensor_inputs=cut_inputs,
                    output_type="latent",
                )
        finally:
            self._references_hook.rows = None
        images, redone = decode_latents(pipe, result.images)
        self.vae_redecodes += redone
        return images

    def _cut_tensor_names(self) -> list[str]:
        if self.info is not None and self.info.family == "sdxl":
            return ["prompt_embeds", "add_text_embeds", "add_time_ids", "image"]
        return ["prompt_embeds", "image"]

    def _fit_vae(self, batch: int, width: int, height: int) -> None:
        """Decode in slices/tiles only when the decode would not fit in free GPU memory."""
        import torch

        vae = self.pipe.vae
        need = batch * width * height * _VAE_BYTES_PER_PIXEL
        one = width * height * _VAE_BYTES_PER_PIXEL
        if self.device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(self.device)
        else:
            free = math.inf
        vae.enable_slicing() if need > free / 2 else vae.disable_slicing()
        vae.enable_tiling() if one > free / 2 else vae.disable_tiling()

    def _zero_reference(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Embeddings standing in for 'no reference' (text-only images, IP-Adapter scale 0)."""
        import torch

        if self._blank_reference is None:
            pipe = self.pipe
            size = pipe.feature_extractor.crop_size
            blank = Image.new("RGB", (size["width"], size["height"]), "white")
            with torch.inference_mode():
                positive, negative = pipe.encode_image(
                    blank, self.device, 1, self._uses_hidden_states()
                )
            self._blank_reference = (torch.zeros_like(positive), negative)
        return self._blank_reference


def _safetensors_bytes(tensors: dict[str, Any]) -> bytes:
    from safetensors.torch import save

    return save(tensors)
