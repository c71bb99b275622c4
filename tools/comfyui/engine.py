"""`ComfyUIEngine`: the engine whose pixels come from the user's ComfyUI (`worker.backend:
comfyui`). Everything but drawing stays ours and is inherited from `Engine`: the quality gate
still embeds images with `models.ipadapter`'s encoder, so it judges both backends alike.

Each RenderJob is one ComfyUI prompt with batch size 1, so image i keeps its own seed S+i and a
retry redraws one image. The image handed back is ComfyUI's PNG decoded, with its bytes in
`info[SOURCE_PNG]` so the store writes them unchanged (tools/store/png_chunks.py).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import replace
from io import BytesIO
from pathlib import Path
from typing import Any

from PIL import Image

from tools.comfyui.backend import PromptRunner
from tools.comfyui.client import MAX_PIXELS, PNG_SIGNATURE, ComfyUIClient
from tools.comfyui.graph import (
    Drawing,
    built_in_graph,
    comfy_loras,
    model_name,
    resolve_models,
)
from tools.comfyui.workflow import fill_workflow, load_workflow
from tools.engine.prompt_syntax import extract_loras
from tools.engine.render_job import RenderJob
from tools.engine.rendering import Engine, StepCallback
from tools.settings import Settings
from tools.store.png_chunks import SOURCE_PNG, with_text_chunks


class ComfyUIEngine(Engine):
    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.comfyui = settings.comfyui
        self.client = ComfyUIClient(self.comfyui.urls[0], timeout=30.0)
        self.phase: Callable[[str], None] = lambda _text: None
        self.runner = PromptRunner(
            self.client,
            timeout=self.comfyui.timeout,
            hang_timeout=settings.worker.hang_timeout,
            phase=lambda text: self.phase(text),
        )
        self._workflow: dict[str, Any] | None = None

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
        return [
            self._render_one(job, width, height, ipadapter_weight, controlnet_strength, on_step)
            for job in jobs
        ]

    def _render_one(
        self,
        job: RenderJob,
        width: int,
        height: int,
        ipadapter_weight: float,
        controlnet_strength: float,
        on_step: StepCallback | None,
    ) -> Image.Image:
        uploads = {"pose": _upload("anime-pose", _png(job.pose_image))}
        if job.reference is not None and ipadapter_weight > 0:
            uploads["reference"] = _upload("anime-reference", _reference_png(job.reference))
        prompt, _ = extract_loras(job.prompt)
        negative, _ = extract_loras(job.negative_prompt)
        output = self.settings.output

        def make_graph(names: dict[str, str]) -> tuple[dict[str, Any], set[str], str]:
            drawing = Drawing(
                prompt=prompt, negative_prompt=negative, seed=job.seed, steps=output.steps,
                cfg=output.guidance_scale, sampler=output.sampler, width=width, height=height,
                clip_skip=self.settings.models.clip_skip, controlnet_strength=controlnet_strength,
                ipadapter_weight=ipadapter_weight, pose_image=names["pose"],
                reference_image=names.get("reference"), checkpoint="", controlnet="",
                ipadapter_preset=self.comfyui.ipadapter_preset,
            )  # fmt: skip
            chosen = self.lora_set(job.prompt, job.negative_prompt, job.loras)
            loras = [(lora.name, lora.weight) for lora in chosen]
            if self.comfyui.workflow:
                ours = replace(drawing, loras=comfy_loras(self.settings, loras))
                graph, slots = fill_workflow(self.workflow(), ours)
                return graph, set(slots.values()), slots["save"]
            checkpoint, controlnet, named_loras = resolve_models(
                self.settings, self.runner.object_info(), loras
            )
            graph = built_in_graph(
                replace(drawing, checkpoint=checkpoint, controlnet=controlnet, loras=named_loras)
            )
            return graph, set(graph), "save"

        result = self.runner.run(make_graph, uploads, on_step)
        png = result.png
        image = _decode(png)
        if "prompt" not in image.info:  # ComfyUI started with --disable-metadata
            image.info["prompt"] = json.dumps(result.graph)
            png = with_text_chunks(png, {"prompt": image.info["prompt"]})
        image.info[SOURCE_PNG] = png
        return image

    def loaded_with(self) -> dict[str, Any]:
        """No prediction type: ComfyUI detects its own from the checkpoint it loads (the same
        v_pred keys), and ours may not be on this machine."""
        source = self.fast_lora_source
        return {} if source is None else {"fast_lora": source.label}

    def labels(self) -> dict[str, str]:
        """The names ComfyUI drew with: `comfyui.*` (or `models.*` file names) for our graph;
        for the user's workflow its one loader's value, else the workflow's file name."""
        if self.comfyui.workflow:
            graph, name = self.workflow(), Path(self.comfyui.workflow).name
            return {
                "model": _only_value(graph, "CheckpointLoaderSimple", "ckpt_name") or name,
                "controlnet": _only_value(graph, "ControlNetLoader", "control_net_name") or name,
                "ipadapter": _only_value(graph, "IPAdapterUnifiedLoader", "preset") or name,
            }
        models = self.settings.models  # as given: no local checkpoint to detect a family from
        checkpoint = model_name(self.comfyui.checkpoint, models.checkpoint, "checkpoint")
        controlnet = model_name(self.comfyui.controlnet, models.controlnet, "controlnet")
        return {
            "model": checkpoint or models.checkpoint,
            "controlnet": controlnet or str(models.controlnet),
            "ipadapter": f"IPAdapterUnifiedLoader {self.comfyui.ipadapter_preset}",
        }

    def workflow(self) -> dict[str, Any]:
        if self._workflow is None:
            assert self.comfyui.workflow is not None
            self._workflow = load_workflow(self.comfyui.workflow)
        return self._workflow


def _only_value(graph: dict[str, Any], class_type: str, name: str) -> str | None:
    values = {
        str(value)
        for node in graph.values()
        if node["class_type"] == class_type
        and (value := node["inputs"].get(name)) is not None
        and not isinstance(value, list)  # a link: no name of its own
    }
    return values.pop() if len(values) == 1 else None


def _png(image: Image.Image) -> bytes:
    buffer = BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _reference_png(path: Path) -> bytes:
    data = path.read_bytes()
    return data if data.startswith(PNG_SIGNATURE) else _png(Image.open(BytesIO(data)))


def _upload(prefix: str, png: bytes) -> tuple[str, bytes]:
    """A name from the content: the same image is uploaded under the same name (overwrite)."""
    return f"{prefix}-{hashlib.sha256(png).hexdigest()[:16]}.png", png


def _decode(png: bytes) -> Image.Image:
    from tools.comfyui.client import ComfyUIError

    try:
        with_text_chunks(png, {})  # the store adds its chunks to these bytes: they must parse
        image = Image.open(BytesIO(png))
        if image.width * image.height > MAX_PIXELS:
            raise ComfyUIError(f"ComfyUI's output is {image.width}x{image.height}: too large")
        image.load()
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise ComfyUIError(f"ComfyUI's output is not a readable PNG ({error})") from None
    return image
