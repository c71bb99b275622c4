"""A pass's text inputs step by step: what the pipeline is given at step 0, and what a
diffusers step-end callback switches in at each step where a prompt edit or alternation
changes a row (`Conditioning.text_inputs` builds it, A1111 modules/prompt_parser.py
`reconstruct_cond_batch` picks the step's text; modules/sd_samplers_cfg_denoiser.py
`CFGDenoiser.forward` conditions each step on it)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tools.engine.prompt_encoding import PromptEmbedding, repeat_to_chunks


def batch_inputs(
    rows: list[tuple[PromptEmbedding, PromptEmbedding]], chunks: int, sdxl: bool
) -> dict[str, Any]:
    """One pass's pipeline text arguments for the batch rows (prompt, negative), each repeated
    to `chunks` 77-token chunks."""
    import torch

    text: dict[str, Any] = {
        "prompt_embeds": torch.cat([repeat_to_chunks(p, chunks) for p, _ in rows]),
        "negative_prompt_embeds": torch.cat([repeat_to_chunks(n, chunks) for _, n in rows]),
    }
    if sdxl:
        text["pooled_prompt_embeds"] = torch.cat([p.pooled for p, _ in rows])
        text["negative_pooled_prompt_embeds"] = torch.cat([n.pooled for _, n in rows])
    return text


# The (prompt, negative) embeddings of a pass's batch rows at one step.
Rows = list[tuple[PromptEmbedding, PromptEmbedding]]


@dataclass(frozen=True)
class TextSchedule:
    """A pass's text: {first step (0-based) → the rows' embeddings}, with step 0 always, each
    repeated to `chunks` chunks. A step's batch tensors are built when the step comes: held for
    every step, an alternation (a change each step, 300 at 150 DPM++ SDE steps) kept
    steps × rows × chunks embeddings on the device, where the rows share a few texts."""

    steps: dict[int, Rows]
    chunks: int
    sdxl: bool

    @property
    def first(self) -> dict[str, Any]:
        return batch_inputs(self.steps[0], self.chunks, self.sdxl)

    @property
    def tensor_names(self) -> list[str]:
        """The step-end callback tensors it replaces (none when the text never changes)."""
        if len(self.steps) == 1:
            return []
        return ["prompt_embeds", "add_text_embeds"] if self.sdxl else ["prompt_embeds"]

    def update(self, step: int, kwargs: dict[str, Any], guided: bool) -> None:
        """Put step `step`'s embeddings into a diffusers step-end callback's tensors, in the
        pipeline's own layout: [negative rows, positive rows] while CFG runs, the positive
        rows alone after the CFG cutoff (SDXL: the pooled embeddings are `add_text_embeds`)."""
        import torch

        rows = self.steps.get(step)
        if rows is None:
            return
        inputs = batch_inputs(rows, self.chunks, self.sdxl)
        pairs = [("prompt_embeds", "negative_prompt_embeds")]
        if self.sdxl:
            pairs.append(("pooled_prompt_embeds", "negative_pooled_prompt_embeds"))
        for name, (positive, negative) in zip(self.tensor_names, pairs, strict=True):
            tensor = torch.cat([inputs[negative], inputs[positive]]) if guided else inputs[positive]
            kwargs[name] = tensor.to(kwargs[name]) if name in kwargs else tensor
