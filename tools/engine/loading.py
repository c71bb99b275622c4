"""Loading the pipeline: where the weights are, and how they become one warm diffusers pipeline.

`ModelSources(settings)` resolves the configured models (hub id, local folder, single file)
lazily: building it touches nothing, the first attribute read probes the filesystem.
`load_pipeline` turns the sources into an SD1.5 or SDXL ControlNet pipeline with the IP-Adapter,
the sampler, an external VAE, the fused few-step LoRA and the speed settings (docs/PERFORMANCE.md).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from tools.engine.comfyui_folders import setting_dirs
from tools.engine.extra_networks import find_lora
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
from tools.engine.prediction import Prediction, prediction_for, scheduler_overrides
from tools.engine.samplers import SAMPLER_TABLE
from tools.engine.vae import find_vae, load_vae
from tools.errors import UserError
from tools.settings import ModelSettings, Settings

log = logging.getLogger(__name__)

SDXL_CONFIG_REPO = "stabilityai/stable-diffusion-xl-base-1.0"
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


def batch_size_for(settings: Settings) -> int:
    """Images per engine call. "auto": 4 on CUDA, where a batch fills the GPU better; 1 on the
    CPU (compute-bound: no gain, and the first image would come later) and with low_vram."""
    size = settings.output.batch_size
    if size != "auto":
        return size
    models = settings.models
    return 4 if pick_device(models.device) == "cuda" and not models.low_vram else 1


class ModelSources:
    """The configured models, resolved on first use (downloading hub models the first time)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.models_dir = settings.paths.models

    @cached_property
    def checkpoint(self) -> ModelSource:
        root = self.settings.comfyui.root
        return resolve_source(
            self.settings.models.checkpoint,
            self.models_dir,
            "checkpoint",
            setting_dirs(root, "checkpoint"),
        )

    @cached_property
    def ipadapter(self) -> ModelSource:
        return resolve_source(self.settings.models.ipadapter, self.models_dir, "ipadapter")

    @cached_property
    def fast_lora(self) -> ModelSource | None:
        configured = self.settings.models.fast_lora
        return resolve_source(configured, self.models_dir, "fast_lora") if configured else None

    @cached_property
    def family(self) -> str:
        if self.settings.models.family != "auto":
            return self.settings.models.family
        return detect_family(self.checkpoint)

    @cached_property
    def prediction(self) -> Prediction | None:
        """v-prediction / zero SNR of the checkpoint (`tools.engine.prediction`); None: its own
        scheduler config decides."""
        return prediction_for(self.settings.models.prediction_type, self.checkpoint)

    @cached_property
    def models(self) -> ModelSettings:
        """The model settings, unset ControlNet / IP-Adapter ones filled for the family."""
        return models_for_family(self.settings.models, self.family)

    @cached_property
    def controlnet(self) -> ModelSource:
        assert self.models.controlnet is not None
        also = setting_dirs(self.settings.comfyui.root, "controlnet")
        return resolve_source(self.models.controlnet, self.models_dir, "controlnet", also)

    def controlnet_dir(self) -> Path:
        return local_path(self.controlnet, weight_patterns(self.models, "controlnet"), "controlnet")

    def checkpoint_dir(self) -> Path:
        return local_path(self.checkpoint, weight_patterns(self.models, "checkpoint"), "checkpoint")

    def ipadapter_dir(self) -> Path:
        return local_path(self.ipadapter, weight_patterns(self.models, "ipadapter"), "ipadapter")

    def fast_lora_location(self) -> Path:
        assert self.fast_lora is not None
        return local_path(self.fast_lora, ["*.safetensors"], "fast_lora")

    def single_file_config(self) -> Path:
        """Architecture configs for a single-file checkpoint; local first, so offline works."""
        if self.models.checkpoint_config:
            source = resolve_source(
                self.models.checkpoint_config, self.models_dir, "checkpoint_config"
            )
            if source.kind == "file":
                raise UserError(
                    "models.checkpoint_config must be a diffusers folder or a hub id",
                    "point it at a folder with model_index.json",
                )
            return local_path(source, [], "checkpoint_config")
        if self.family == "sdxl":
            return fetch_hub(SDXL_CONFIG_REPO, [], "SDXL configs for the single-file checkpoint")
        return fetch_hub(SD15_CONFIG_REPO, [], "SD1.5 configs for the single-file checkpoint")

    def prefetch(self) -> None:
        """Download whatever is not cached yet, without loading anything.

        Front ends call this before queuing work, so a first download shows its size and
        progress bar in the user's terminal (the worker runs in the background).
        """
        self.controlnet_dir()
        if self.checkpoint.kind == "file":
            self.single_file_config()
        else:
            self.checkpoint_dir()
        self.ipadapter_dir()
        if self.fast_lora is not None:
            self.fast_lora_location()
        for lora in self.models.loras:
            find_lora(lora.name, self.settings.paths)
        if self.models.vae:
            vae_dirs = setting_dirs(self.settings.comfyui.root, "vae")
            kind, location = find_vae(self.models.vae, self.models_dir, vae_dirs)
            if kind == "hub":
                fetch_hub(str(location), ["*.safetensors", "*.bin"], "VAE")

    def info(self, device: str, dtype: str) -> EngineInfo:
        return EngineInfo(
            model=self.checkpoint.label,
            controlnet=self.controlnet.label,
            ipadapter=f"{self.ipadapter.label}/{self.models.ipadapter_weight_name}",
            device=device,
            dtype=dtype,
            family=self.family,
        )


def load_pipeline(
    sources: ModelSources, sampling: Sampling, unet_pre_hook: Any
) -> tuple[Any, EngineInfo]:
    """The warm pipeline and what loaded; `unet_pre_hook` goes on the UNet (with kwargs)."""
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
    family, models, checkpoint = sources.family, sources.models, sources.checkpoint
    pipeline_class = (
        StableDiffusionXLControlNetPipeline
        if family == "sdxl"
        else StableDiffusionControlNetPipeline
    )
    device = pick_device(models.device)
    dtype = torch.float16 if device == "cuda" else torch.float32
    controlnet_dir = sources.controlnet_dir()
    check_controlnet_family(controlnet_dir, family, sources.controlnet.label, checkpoint.label)
    controlnet = ControlNetModel.from_pretrained(controlnet_dir, dtype=dtype)
    common: dict[str, Any] = {"controlnet": controlnet, "dtype": dtype, "feature_extractor": None}
    if family == "sd15":
        common.update(safety_checker=None, requires_safety_checker=False)
    if checkpoint.kind == "file":
        pipe = pipeline_class.from_single_file(
            checkpoint.location,
            config=str(sources.single_file_config()),
            local_files_only=True,
            **common,
        )
    else:
        pipe = pipeline_class.from_pretrained(sources.checkpoint_dir(), **common)
    scheduler_class = getattr(diffusers, sampling.scheduler_class)
    prediction = scheduler_overrides(sources.prediction, scheduler_class)
    pipe.scheduler = scheduler_class.from_config(
        pipe.scheduler.config, **dict(sampling.scheduler_options), **prediction
    )
    paths = sources.settings.paths
    if models.vae:
        also = setting_dirs(paths.comfyui_root, "vae")
        config_dir = paths.state / "vae-config"
        pipe.vae = load_vae(models.vae, paths.models, pipe.vae, dtype, config_dir, also)
    if sources.fast_lora is not None:
        _fuse_fast_lora(pipe, sources)
    if models.fuse_qkv:
        # Before the IP-Adapter: its loader keeps the self-attention processors (fused) and
        # swaps only the cross-attention ones. Not the ControlNet: its fuse_qkv_projections
        # (AttentionMixin's) fuses only the new attention modules, so on SD's `Attention` it
        # does nothing (tests/test_engine.py pins that).
        pipe.unet.fuse_qkv_projections()
        pipe.vae.fuse_qkv_projections()
    ipadapter_dir = sources.ipadapter_dir()
    check_ipadapter_family(
        ipadapter_dir / models.ipadapter_subfolder / models.ipadapter_weight_name,
        pipe.unet.config.cross_attention_dim,
        family,
        sources.ipadapter.label,
        checkpoint.label,
    )
    pipe.load_ip_adapter(
        str(ipadapter_dir),
        subfolder=models.ipadapter_subfolder,
        weight_name=models.ipadapter_weight_name,
        image_encoder_folder=models.image_encoder_folder,
        local_files_only=True,
    )
    if device == "cuda" and models.channels_last:
        pipe.unet.to(memory_format=torch.channels_last)
        pipe.controlnet.to(memory_format=torch.channels_last)
    if models.low_vram and device == "cuda":
        pipe.enable_model_cpu_offload()
    else:
        pipe.to(device)
    pipe.unet.register_forward_pre_hook(unet_pre_hook, with_kwargs=True)
    if models.compile:
        pipe.unet.compile()
        pipe.controlnet.compile()
    pipe.set_progress_bar_config(disable=True)
    info = sources.info(device, str(dtype).removeprefix("torch."))
    log.info("engine loaded: %s", info)
    return pipe, info


def _fuse_fast_lora(pipe: Any, sources: ModelSources) -> None:
    """Merge the few-step LoRA into the UNet's weights (needs `peft`). Before QKV fusion:
    fused projections are new layers the LoRA's to_q/to_k/to_v keys would miss."""
    try:
        import peft  # noqa: F401
    except ImportError as error:
        raise UserError("models.fast_lora needs the peft package", "pip install peft") from error
    location = sources.fast_lora_location()
    if location.is_file():
        pipe.load_lora_weights(str(location.parent), weight_name=location.name, adapter_name="fast")
    else:
        pipe.load_lora_weights(str(location), adapter_name="fast")
    pipe.fuse_lora(adapter_names=["fast"])
    # The merged weights stay; peft's wrapper layers go, so the UNet runs as fast as before.
    pipe.unload_lora_weights()
