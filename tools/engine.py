"""The warm diffusion engine: an SD1.5 or SDXL checkpoint + ControlNet OpenPose + IP-Adapter.

One `Engine` owns one pipeline, loaded on first use and kept warm. Prompt embeddings are computed
here (clip skip, cached per prompt) and IP-Adapter image embeddings are computed once per
reference image (cached in memory and on disk, keyed by file hash and encoder), so a batch of a
character pays for neither again. Speed settings (fused QKV, channels_last, compile, CFG cutoff,
low-VRAM offload) are described, with their measured effect, in docs/PERFORMANCE.md.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PIL import Image

from tools.errors import UserError
from tools.model_sources import (
    SD15_CONFIG_REPO,
    ModelSource,
    fetch_hub,
    local_path,
    resolve_source,
    weight_patterns,
)
from tools.settings import Settings

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

StepCallback = Callable[[int, int], None]

SDXL_CONFIG_REPO = "stabilityai/stable-diffusion-xl-base-1.0"
# Hub ids of the SDXL anime families (Animagine XL, Illustrious XL, Pony) usually say so.
_SDXL_NAME_HINTS = ("xl", "pony", "illustrious")
# Rough peak bytes per output pixel of a VAE decode in half precision; decides slicing/tiling.
_VAE_BYTES_PER_PIXEL = 4000

SAMPLERS = {
    "euler_a": ("EulerAncestralDiscreteScheduler", "Euler a"),
    "euler": ("EulerDiscreteScheduler", "Euler"),
    "dpmpp_2m": ("DPMSolverMultistepScheduler", "DPM++ 2M"),
    "ddim": ("DDIMScheduler", "DDIM"),
}
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


def sampling_for(settings: Settings) -> Sampling:
    output, fast_lora = settings.output, settings.models.fast_lora
    if fast_lora:
        class_name, label = FAST_SAMPLERS[output.fast_sampler]
        return Sampling(output.fast_steps, output.fast_guidance_scale, class_name, label, fast_lora)
    class_name, label = SAMPLERS[output.sampler]
    return Sampling(output.steps, output.guidance_scale, class_name, label)


@dataclass(frozen=True)
class RenderJob:
    """One image to draw. Jobs rendered together must share size, steps, CFG and weights."""

    prompt: str
    negative_prompt: str
    pose_image: Image.Image
    reference: Path | None
    seed: int


@dataclass
class EngineInfo:
    """What loaded, for metadata and `doctor`."""

    model: str
    controlnet: str
    ipadapter: str
    device: str
    dtype: str
    family: str = "sd15"


@dataclass(frozen=True)
class PromptEmbedding:
    """A prompt's text-encoder output; SDXL adds the pooled embedding of its second encoder."""

    embeds: torch.Tensor
    pooled: torch.Tensor | None = None


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


def detect_family(source: ModelSource) -> str:
    """'sdxl' or 'sd15', from the folder's model index, the file's keys, or the hub id."""
    if source.kind == "dir":
        index = Path(source.location) / "model_index.json"
        if index.is_file():
            class_name = json.loads(index.read_text(encoding="utf-8")).get("_class_name", "")
            return "sdxl" if "XL" in class_name else "sd15"
        return "sdxl" if (Path(source.location) / "text_encoder_2").is_dir() else "sd15"
    if source.kind == "file":
        if not source.location.endswith(".safetensors"):
            return "sd15"
        from safetensors import safe_open

        with safe_open(source.location, framework="pt") as handle:
            keys = handle.keys()
        return "sdxl" if any(k.startswith("conditioner.embedders.1.") for k in keys) else "sd15"
    name = source.location.lower()
    return "sdxl" if any(hint in name for hint in _SDXL_NAME_HINTS) else "sd15"


def slice_doubled_conditioning(_module: Any, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
    """UNet pre-hook: after the CFG cutoff the pipeline still passes the IP-Adapter embeddings
    (and, for SDXL, time ids) computed for the doubled batch; keep their conditional half."""
    sample = args[0] if args else kwargs["sample"]
    added = kwargs.get("added_cond_kwargs")
    if not added:
        return args, kwargs
    batch = sample.shape[0]

    def halve(value: Any) -> Any:
        if isinstance(value, list):
            return [halve(item) for item in value]
        if hasattr(value, "shape") and value.shape[0] == 2 * batch:
            return value[batch:]
        return value

    kwargs["added_cond_kwargs"] = {key: halve(value) for key, value in added.items()}
    return args, kwargs


class Engine:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.models = settings.models
        self.checkpoint = resolve_source(
            self.models.checkpoint, settings.paths.models, "checkpoint"
        )
        self.controlnet_source = resolve_source(
            self.models.controlnet, settings.paths.models, "controlnet"
        )
        self.ipadapter_source = resolve_source(
            self.models.ipadapter, settings.paths.models, "ipadapter"
        )
        self.fast_lora_source = (
            resolve_source(self.models.fast_lora, settings.paths.models, "fast_lora")
            if self.models.fast_lora
            else None
        )
        self.sampling = sampling_for(settings)
        self.embedding_dir = settings.paths.state / "embeddings"
        self._pipe: Any = None
        self._device: Any = None
        self.info: EngineInfo | None = None
        self._text_cache: dict[str, PromptEmbedding] = {}
        self._reference_cache: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self._blank_reference: tuple[torch.Tensor, torch.Tensor] | None = None
        self.encoder_calls = 0
        self.loads = 0

    @property
    def family(self) -> str:
        if self.models.family != "auto":
            return self.models.family
        return detect_family(self.checkpoint)

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
        controlnet = ControlNetModel.from_pretrained(self._controlnet_dir(), dtype=dtype)
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
        if self.fast_lora_source is not None:
            self._fuse_fast_lora(pipe)
        if self.models.fuse_qkv:
            # Before the IP-Adapter: its loader keeps the self-attention processors (fused) and
            # swaps only the cross-attention ones.
            pipe.unet.fuse_qkv_projections()
            pipe.controlnet.fuse_qkv_projections()
            pipe.vae.fuse_qkv_projections()
        pipe.load_ip_adapter(
            str(self._ipadapter_dir()),
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
        pipe.unet.register_forward_pre_hook(slice_doubled_conditioning, with_kwargs=True)
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
        """Compile at the configured size now, so the first real image runs at full speed."""
        resolution = self.settings.output.resolution
        blank = Image.new("RGB", (resolution.width, resolution.height))
        self.render(
            [RenderJob("", "", blank, None, 0)],
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

        return getattr(diffusers, self.sampling.scheduler_class).from_config(config)

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
        import torch

        if prompt in self._text_cache:
            return self._text_cache[prompt]
        pipe = self.pipe
        with torch.inference_mode():
            if self.info is not None and self.info.family == "sdxl":
                embedding = self._encode_sdxl(pipe, prompt)
            else:
                output = pipe.text_encoder(
                    self._tokens(pipe.tokenizer, prompt), output_hidden_states=True
                )
                if self.models.clip_skip == 1:
                    embeds = output.last_hidden_state
                else:
                    hidden = output.hidden_states[-self.models.clip_skip]
                    embeds = pipe.text_encoder.final_layer_norm(hidden)
                embedding = PromptEmbedding(embeds)
        self._text_cache[prompt] = embedding
        return embedding

    def _tokens(self, tokenizer: Any, prompt: str) -> torch.Tensor:
        return tokenizer(
            prompt,
            padding="max_length",
            max_length=tokenizer.model_max_length,
            truncation=True,
            return_tensors="pt",
        ).input_ids.to(self.device)

    def _encode_sdxl(self, pipe: Any, prompt: str) -> PromptEmbedding:
        """Both encoders' hidden states side by side, the way SDXL was trained: the penultimate
        layer at least (clip skip 2), deeper if asked; pooled from the second encoder."""
        import torch

        layer = max(2, self.models.clip_skip)
        parts, pooled = [], None
        for tokenizer, encoder in (
            (pipe.tokenizer, pipe.text_encoder),
            (pipe.tokenizer_2, pipe.text_encoder_2),
        ):
            output = encoder(self._tokens(tokenizer, prompt), output_hidden_states=True)
            parts.append(output.hidden_states[-layer])
            pooled = output[0]
        return PromptEmbedding(torch.cat(parts, dim=-1), pooled)

    def _encoder_key(self) -> str:
        return hashlib.sha256(
            f"{self.ipadapter_source.location}|{self.models.ipadapter_weight_name}|"
            f"{self.models.image_encoder_folder}".encode()
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
                picture = image.convert("RGB")
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
            [image.convert("RGB") for image in images], return_tensors="pt"
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
        import torch

        if not jobs:
            return []
        pipe = self.pipe
        output = self.settings.output
        prompts = [self._prompt_embedding(job.prompt) for job in jobs]
        negatives_text = [self._prompt_embedding(job.negative_prompt) for job in jobs]
        text: dict[str, Any] = {
            "prompt_embeds": torch.cat([p.embeds for p in prompts]),
            "negative_prompt_embeds": torch.cat([p.embeds for p in negatives_text]),
        }
        if self.info is not None and self.info.family == "sdxl":
            text["pooled_prompt_embeds"] = torch.cat([p.pooled for p in prompts])
            text["negative_pooled_prompt_embeds"] = torch.cat([p.pooled for p in negatives_text])
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
        ip_embeds = torch.cat(negatives + positives) if guided else torch.cat(positives)
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
        with torch.inference_mode():
            result = pipe(
                **text,
                image=[job.pose_image.convert("RGB") for job in jobs],
                ip_adapter_image_embeds=[ip_embeds],
                controlnet_conditioning_scale=controlnet_strength,
                num_inference_steps=steps,
                guidance_scale=sampling.guidance_scale,
                width=width,
                height=height,
                generator=generators,
                callback_on_step_end=step_end,
                callback_on_step_end_tensor_inputs=cut_inputs,
            )
        return list(result.images)

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
