"""The warm diffusion engine: SD1.5 checkpoint + ControlNet OpenPose + IP-Adapter.

One `Engine` owns one pipeline, loaded on first use and kept warm. Prompt embeddings are computed
here (clip skip, cached per prompt) and IP-Adapter image embeddings are computed once per
reference image (cached in memory and on disk, keyed by file hash and encoder), so a batch of a
character pays for neither again.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PIL import Image

from tools.errors import UserError
from tools.model_sources import (
    SD15_CONFIG_REPO,
    fetch_hub,
    local_path,
    resolve_source,
)
from tools.settings import Settings

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

StepCallback = Callable[[int, int], None]

SAMPLERS = {
    "euler_a": ("EulerAncestralDiscreteScheduler", "Euler a"),
    "euler": ("EulerDiscreteScheduler", "Euler"),
    "dpmpp_2m": ("DPMSolverMultistepScheduler", "DPM++ 2M"),
    "ddim": ("DDIMScheduler", "DDIM"),
}


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
        self.embedding_dir = settings.paths.state / "embeddings"
        self._pipe: Any = None
        self.info: EngineInfo | None = None
        self._text_cache: dict[str, torch.Tensor] = {}
        self._reference_cache: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self.encoder_calls = 0

    # -- loading ---------------------------------------------------------------------------
    @property
    def pipe(self) -> Any:
        if self._pipe is None:
            self._pipe = self._load()
        return self._pipe

    @property
    def loaded(self) -> bool:
        return self._pipe is not None

    def _load(self) -> Any:
        import diffusers
        import torch
        import transformers
        from diffusers import ControlNetModel, StableDiffusionControlNetPipeline

        # Downloads keep their own progress bars; loading local weights needs none.
        diffusers.utils.logging.disable_progress_bar()
        transformers.utils.logging.disable_progress_bar()
        device = pick_device(self.models.device)
        dtype = torch.float16 if device == "cuda" else torch.float32
        controlnet_dir = local_path(
            self.controlnet_source, ["diffusion_pytorch_model*"], "controlnet"
        )
        controlnet = ControlNetModel.from_pretrained(controlnet_dir, dtype=dtype)
        common = {
            "controlnet": controlnet,
            "dtype": dtype,
            "safety_checker": None,
            "requires_safety_checker": False,
            "feature_extractor": None,
        }
        if self.checkpoint.kind == "file":
            pipe = StableDiffusionControlNetPipeline.from_single_file(
                self.checkpoint.location,
                config=str(self._single_file_config()),
                local_files_only=True,
                **common,
            )
        else:
            checkpoint_dir = local_path(
                self.checkpoint,
                ["unet/*", "vae/*", "text_encoder/*"],
                "checkpoint",
            )
            pipe = StableDiffusionControlNetPipeline.from_pretrained(checkpoint_dir, **common)
        pipe.scheduler = self._scheduler(pipe.scheduler.config)
        ipadapter_dir = local_path(
            self.ipadapter_source,
            [
                f"{self.models.ipadapter_subfolder}/{self.models.ipadapter_weight_name}",
                f"{self.models.ipadapter_subfolder}/{self.models.image_encoder_folder}/*",
            ],
            "ipadapter",
        )
        pipe.load_ip_adapter(
            str(ipadapter_dir),
            subfolder=self.models.ipadapter_subfolder,
            weight_name=self.models.ipadapter_weight_name,
            image_encoder_folder=self.models.image_encoder_folder,
            local_files_only=True,
        )
        pipe.to(device)
        pipe.set_progress_bar_config(disable=True)
        self.info = EngineInfo(
            model=self.checkpoint.label,
            controlnet=self.controlnet_source.label,
            ipadapter=f"{self.ipadapter_source.label}/{self.models.ipadapter_weight_name}",
            device=device,
            dtype=str(dtype).removeprefix("torch."),
        )
        log.info("engine loaded: %s", self.info)
        return pipe

    def _single_file_config(self) -> Path:
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
        return fetch_hub(SD15_CONFIG_REPO, [], "SD1.5 configs for the single-file checkpoint")

    def _scheduler(self, config: Any) -> Any:
        import diffusers

        class_name, _ = SAMPLERS[self.settings.output.sampler]
        return getattr(diffusers, class_name).from_config(config)

    # -- embeddings --------------------------------------------------------------------------
    def _encode_prompt(self, prompt: str) -> torch.Tensor:
        """Text embedding with clip skip in the A1111 sense: 2 = the penultimate layer."""
        import torch

        if prompt in self._text_cache:
            return self._text_cache[prompt]
        pipe = self.pipe
        tokens = pipe.tokenizer(
            prompt,
            padding="max_length",
            max_length=pipe.tokenizer.model_max_length,
            truncation=True,
            return_tensors="pt",
        ).input_ids.to(pipe.device)
        with torch.inference_mode():
            output = pipe.text_encoder(tokens, output_hidden_states=True)
            if self.models.clip_skip == 1:
                embedding = output.last_hidden_state
            else:
                hidden = output.hidden_states[-self.models.clip_skip]
                embedding = pipe.text_encoder.final_layer_norm(hidden)
        self._text_cache[prompt] = embedding
        return embedding

    def _encoder_key(self) -> str:
        return hashlib.sha256(
            f"{self.ipadapter_source.location}|{self.models.ipadapter_weight_name}|"
            f"{self.models.image_encoder_folder}".encode()
        ).hexdigest()[:16]

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
            tensors = load_file(str(cache_file), device=str(pipe.device))
            pair = (tensors["positive"], tensors["negative"])
        else:
            with Image.open(reference) as image:
                picture = image.convert("RGB")
            projection = pipe.unet.encoder_hid_proj.image_projection_layers[0]
            from diffusers.models.embeddings import ImageProjection

            hidden_states = not isinstance(projection, ImageProjection)
            with torch.inference_mode():
                positive, negative = pipe.encode_image(picture, pipe.device, 1, hidden_states)
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
        ).pixel_values.to(pipe.device, dtype=pipe.image_encoder.dtype)
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
        prompt_embeds = torch.cat([self._encode_prompt(job.prompt) for job in jobs])
        negative_embeds = torch.cat([self._encode_prompt(job.negative_prompt) for job in jobs])
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
        guided = output.guidance_scale > 1.0
        ip_embeds = torch.cat(negatives + positives) if guided else torch.cat(positives)
        steps = output.steps

        def step_end(_pipe: Any, step: int, _timestep: Any, kwargs: dict) -> dict:
            if on_step is not None:
                on_step(step + 1, steps)
            return kwargs

        generators = [torch.Generator("cpu").manual_seed(job.seed) for job in jobs]
        with torch.inference_mode():
            result = pipe(
                prompt_embeds=prompt_embeds,
                negative_prompt_embeds=negative_embeds,
                image=[job.pose_image.convert("RGB") for job in jobs],
                ip_adapter_image_embeds=[ip_embeds],
                controlnet_conditioning_scale=controlnet_strength,
                num_inference_steps=steps,
                guidance_scale=output.guidance_scale,
                width=width,
                height=height,
                generator=generators,
                callback_on_step_end=step_end,
            )
        return list(result.images)

    def _zero_reference(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Embeddings standing in for 'no reference' (text-only images, IP-Adapter scale 0)."""
        import torch

        pipe = self.pipe
        size = pipe.feature_extractor.crop_size
        blank = Image.new("RGB", (size["width"], size["height"]), "white")
        projection = pipe.unet.encoder_hid_proj.image_projection_layers[0]
        from diffusers.models.embeddings import ImageProjection

        with torch.inference_mode():
            positive, negative = pipe.encode_image(
                blank, pipe.device, 1, not isinstance(projection, ImageProjection)
            )
        return torch.zeros_like(positive), negative


def _safetensors_bytes(tensors: dict[str, Any]) -> bytes:
    from safetensors.torch import save

    return save(tensors)
