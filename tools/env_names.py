"""The `ANIME_` environment names and the home, without pydantic.

A thin client (`anime-chat -c ... --plan-only`) checks its environment for typos on every call;
importing `tools.settings` for that builds the pydantic models (~115 ms, issue 27), so the names
are listed here and the settings are loaded only to word a warning for a name not listed.
tests/test_settings.py checks `SETTING_ENV` against the settings models.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

# The ANIME_ variables that are not settings: the home, and switches for tests and the terminal
# (tests/test_settings.py checks that the code reads no other ANIME_ name that is not a setting).
OTHER_ENV = ("ANIME_HOME", "ANIME_IN_PROCESS", "ANIME_WORKER_FAULTS", "ANIME_CHAT_IMAGES")
# `ANIME_<SECTION>_<KEY>` of every setting in `tools.settings.Settings`.
SETTING_ENV = frozenset(
    [
        "ANIME_COMFYUI_CHECKPOINT",
        "ANIME_COMFYUI_CONTROLNET",
        "ANIME_COMFYUI_IPADAPTER_PRESET",
        "ANIME_COMFYUI_LORAS",
        "ANIME_COMFYUI_ROOT",
        "ANIME_COMFYUI_TIMEOUT",
        "ANIME_COMFYUI_URL",
        "ANIME_COMFYUI_WORKFLOW",
        "ANIME_LLM_HOST",
        "ANIME_LLM_MODEL",
        "ANIME_LLM_TIMEOUT",
        "ANIME_LLM_UNLOAD_BEFORE_GENERATE",
        "ANIME_MODELS_CHANNELS_LAST",
        "ANIME_MODELS_CHECKPOINT",
        "ANIME_MODELS_CHECKPOINT_CONFIG",
        "ANIME_MODELS_CLIP_SKIP",
        "ANIME_MODELS_COMPILE",
        "ANIME_MODELS_CONTROLNET",
        "ANIME_MODELS_CONTROLNET_STRENGTH",
        "ANIME_MODELS_DEVICE",
        "ANIME_MODELS_FAMILY",
        "ANIME_MODELS_FAST_LORA",
        "ANIME_MODELS_FUSE_QKV",
        "ANIME_MODELS_IMAGE_ENCODER_FOLDER",
        "ANIME_MODELS_IPADAPTER",
        "ANIME_MODELS_IPADAPTER_SUBFOLDER",
        "ANIME_MODELS_IPADAPTER_WEIGHT",
        "ANIME_MODELS_IPADAPTER_WEIGHT_NAME",
        "ANIME_MODELS_LORAS",
        "ANIME_MODELS_LOW_VRAM",
        "ANIME_MODELS_PREDICTION_TYPE",
        "ANIME_MODELS_VAE",
        "ANIME_OUTPUT_BATCH_SIZE",
        "ANIME_OUTPUT_CFG_CUTOFF",
        "ANIME_OUTPUT_FACE_DETAIL",
        "ANIME_OUTPUT_FAST_GUIDANCE_SCALE",
        "ANIME_OUTPUT_FAST_SAMPLER",
        "ANIME_OUTPUT_FAST_STEPS",
        "ANIME_OUTPUT_GUIDANCE_SCALE",
        "ANIME_OUTPUT_HIRES",
        "ANIME_OUTPUT_MAX_BATCH",
        "ANIME_OUTPUT_NEGATIVE_PROMPT",
        "ANIME_OUTPUT_ORGANIZE_BY_DATE",
        "ANIME_OUTPUT_RESOLUTION",
        "ANIME_OUTPUT_SAMPLER",
        "ANIME_OUTPUT_STEPS",
        "ANIME_QUALITY_AESTHETIC_MODEL",
        "ANIME_QUALITY_CONSISTENCY_MODEL",
        "ANIME_QUALITY_ENABLED",
        "ANIME_QUALITY_MAX_ATTEMPTS",
        "ANIME_QUALITY_MIN_AESTHETIC",
        "ANIME_QUALITY_MIN_CONSISTENCY",
        "ANIME_QUALITY_MIN_PALETTE",
        "ANIME_QUALITY_REQUIRE_FACE",
        "ANIME_SERVER_ALLOWED_HOSTS",
        "ANIME_SERVER_HOST",
        "ANIME_SERVER_KEEP_ALIVE",
        "ANIME_SERVER_PORT",
        "ANIME_WORKER_BACKEND",
        "ANIME_WORKER_CPU_WORKERS",
        "ANIME_WORKER_GPUS",
        "ANIME_WORKER_HANG_TIMEOUT",
        "ANIME_WORKER_KEEP_ALIVE",
        "ANIME_WORKER_MAX_ATTEMPTS",
        "ANIME_WORKER_RETRY_BACKOFF",
    ]
)


def resolve_home(env: Mapping[str, str] | None = None) -> Path:
    """`$ANIME_HOME`, else `~`."""
    env = os.environ if env is None else env
    home = env.get("ANIME_HOME")
    return Path(home).expanduser() if home else Path.home()


def unlisted_names(env: Mapping[str, str] | None = None) -> list[str]:
    """The `ANIME_` variables of `env` that are neither a setting nor one of `OTHER_ENV`."""
    env = os.environ if env is None else env
    return sorted(
        name
        for name in env
        if name.startswith("ANIME_") and name not in SETTING_ENV and name not in OTHER_ENV
    )
