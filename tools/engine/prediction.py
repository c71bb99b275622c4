"""What the checkpoint's UNet predicts: noise (`epsilon`) or velocity (`v_prediction`), and whether
it was trained with zero terminal SNR.

A diffusers folder or hub repo says so in its scheduler config, which the pipeline loads. A single
file does not, and diffusers' single-file loader configures it from the family's base repo
(epsilon): v-prediction checkpoints such as NoobAI-XL V-Pred would draw noise. ComfyUI reads two
marker keys in the file instead (comfy/supported_models.py `SDXL.model_type`:
`"v_pred" in state_dict` → V_PREDICTION, and `"ztsnr"` → zsnr), and so does `file_prediction`.
`models.prediction_type` (auto | epsilon | v_prediction) overrides the detection.
"""

from __future__ import annotations

import inspect
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tools.engine.model_sources import ModelSource

V_PRED_KEY = "v_pred"
ZTSNR_KEY = "ztsnr"


@dataclass(frozen=True)
class Prediction:
    type: str  # "epsilon" or "v_prediction"
    zero_snr: bool = False

    def record(self) -> dict[str, Any]:
        """The image's metadata fields."""
        return {"prediction_type": self.type, **({"zero_snr": True} if self.zero_snr else {})}


def file_prediction(path: str) -> Prediction:
    """The prediction a single `.safetensors` checkpoint marks with its `v_pred` / `ztsnr` keys."""
    if not path.endswith(".safetensors"):
        return Prediction("epsilon")
    from safetensors import safe_open

    with safe_open(path, framework="pt") as handle:
        keys = set(handle.keys())
    if V_PRED_KEY in keys:
        return Prediction("v_prediction", ZTSNR_KEY in keys)
    return Prediction("epsilon")


def prediction_for(setting: str, checkpoint: ModelSource) -> Prediction | None:
    """The prediction to configure the scheduler with; None: the hub repo's own scheduler config
    decides (`prediction_type: auto`; not read here, so that nothing downloads)."""
    if checkpoint.kind == "file":
        found = file_prediction(checkpoint.location)
        if setting == "auto" or setting == found.type:
            return found
        return Prediction(setting, found.zero_snr and setting == "v_prediction")
    if setting != "auto":
        return Prediction(setting)
    if checkpoint.kind == "dir":
        return folder_prediction(Path(checkpoint.location))
    return None


def folder_prediction(folder: Path) -> Prediction | None:
    """What a diffusers folder's scheduler config says (None without one)."""
    config = folder / "scheduler" / "scheduler_config.json"
    if not config.is_file():
        return None
    values = json.loads(config.read_text(encoding="utf-8"))
    kind = values.get("prediction_type") or "epsilon"
    return Prediction(kind, bool(values.get("rescale_betas_zero_snr")))


def scheduler_overrides(prediction: Prediction | None, scheduler_class: Any) -> dict[str, Any]:
    """The scheduler config options that make `scheduler_class` sample `prediction`."""
    if prediction is None:
        return {}
    options: dict[str, Any] = {"prediction_type": prediction.type}
    accepted = inspect.signature(scheduler_class.__init__).parameters
    if prediction.zero_snr and "rescale_betas_zero_snr" in accepted:
        options["rescale_betas_zero_snr"] = True
    return options
