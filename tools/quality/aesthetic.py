"""Aesthetic score: a pluggable image classifier (hub id or local dir) → P(good-looking) in 0..1.

The model is optional. When it cannot be loaded (not downloaded and offline, wrong kind of model)
the scorer says so once and the gate runs without it; `aesthetic_status` lets `doctor` warn
without loading anything.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from PIL import Image

from tools.engine.model_sources import cached_snapshot, local_path, resolve_source
from tools.errors import UserError
from tools.settings import Settings

log = logging.getLogger(__name__)

# Label names that mean "good" in the anime aesthetic classifiers people use
# (cafeai/cafe_aesthetic: aesthetic/not_aesthetic; aesthetic-shadow: hq/lq).
POSITIVE_LABELS = ("aesthetic", "hq", "high quality", "good", "positive", "high")
WEIGHT_PATTERNS = ["*.safetensors", "*.bin"]


def _positive_index(id2label: dict[int, str]) -> int | None:
    by_name = {str(label).strip().lower(): int(index) for index, label in id2label.items()}
    for name in POSITIVE_LABELS:
        if name in by_name:
            return by_name[name]
    return None


def aesthetic_status(settings: Settings) -> tuple[str, str]:
    """('ok' | 'warn' | 'off' | 'download', detail) for doctor, without loading the model."""
    value = settings.quality.aesthetic_model
    if not value:
        return "off", "quality.aesthetic_model is not set; images are not scored for looks"
    try:
        source = resolve_source(value, settings.paths.models, "aesthetic_model")
    except UserError as error:
        return "warn", f"{error.message}; the gate runs without aesthetic scores"
    if source.kind == "file":
        return "warn", f"{value} must be a model folder or hub id, not a single file"
    if source.kind == "dir":
        found = (Path(source.location) / "config.json").is_file()
        return (
            ("ok", f"local {source.location}")
            if found
            else (
                "warn",
                f"{source.location} has no config.json; the gate runs without aesthetic scores",
            )
        )
    if cached_snapshot(value, WEIGHT_PATTERNS) is None:
        return "download", f"{value} is not downloaded yet"
    return "ok", f"{value} downloaded (Hugging Face cache)"


class AestheticScorer:
    """Loads the classifier on first use; `score` is None when it is unavailable."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.model_id = settings.quality.aesthetic_model
        self._loaded: tuple[Any, Any, int] | None = None
        self.unavailable: str | None = None if self.model_id else "not configured"

    def _load(self) -> tuple[Any, Any, int] | None:
        if self._loaded is not None or self.unavailable:
            return self._loaded
        try:
            self._loaded = self._load_model()
        except (UserError, OSError, ValueError) as error:
            self.unavailable = getattr(error, "message", None) or str(error).splitlines()[0]
            log.warning("aesthetic model unavailable, scoring without it: %s", self.unavailable)
        return self._loaded

    def _load_model(self) -> tuple[Any, Any, int]:
        import transformers
        from transformers import AutoImageProcessor, AutoModelForImageClassification

        transformers.utils.logging.disable_progress_bar()

        folder = self.folder()
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
        model = AutoModelForImageClassification.from_pretrained(folder).to(device).eval()
        processor = AutoImageProcessor.from_pretrained(folder)
        positive = _positive_index(model.config.id2label)
        if positive is None:
            labels = ", ".join(model.config.id2label.values())
            raise ValueError(f"{self.model_id}: no 'good' label among {labels}")
        return model, processor, positive

    def folder(self) -> Path:
        """The model's local folder, downloading a hub model the first time."""
        assert self.model_id is not None
        source = resolve_source(self.model_id, self.settings.paths.models, "aesthetic_model")
        return local_path(source, WEIGHT_PATTERNS, "aesthetic model")

    @property
    def available(self) -> bool:
        return self._load() is not None

    def score(self, image: Image.Image) -> float | None:
        loaded = self._load()
        if loaded is None:
            return None
        import torch

        model, processor, positive = loaded
        inputs = processor(images=image.convert("RGB"), return_tensors="pt").to(model.device)
        with torch.inference_mode():
            logits = model(**inputs).logits[0]
        return float(torch.softmax(logits.float(), dim=-1)[positive])
