"""Prompt text → the embeddings diffusers takes as `prompt_embeds`, the way A1111 and ComfyUI
compute them.

- Long prompts: the weighted text (`tools.engine.prompt_syntax`) is tokenized and cut into chunks of
  75 tokens; each chunk becomes BOS + 75 tokens + EOS/padding = 77 and is encoded on its own; the
  chunks are concatenated along the sequence axis (77·n tokens), with no cap on n. A chunk that
  fills up inside a tag moves back to the last comma when that is at most 20 tokens back
  (A1111's "comma padding backtrack"), so a tag is not split between chunks; a textual-inversion
  embedding that does not fit moves whole to the next chunk. `BREAK` ends a chunk.
- Weights: each token's hidden state is multiplied by its weight, then the chunk is rescaled
  to its original mean (A1111's "emphasis"). A prompt whose weights are all 1 is encoded exactly
  as without the syntax.
- Clip skip in the A1111 sense: 1 = the last layer, 2 = the penultimate (then the final layer
  norm, for SD1.5); SDXL uses the penultimate layer of both encoders at least, as it was trained,
  and the pooled embedding of the second encoder's first chunk, taken at its first EOS.
- Textual-inversion tokens (loaded into the tokenizer by `tools.engine.extra_networks`) are matched
  by name, case-insensitively, and replaced by their vectors' token ids.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tools.engine.prompt_syntax import BREAK, parse_attention

if TYPE_CHECKING:
    import torch

CHUNK_TOKENS = 75
# A1111 `comma_padding_backtrack`: how far back a full chunk may be cut at a comma.
COMMA_BACKTRACK = 20


@dataclass(frozen=True)
class PromptEmbedding:
    """A prompt's text-encoder output, `[1, 77·chunks, dim]`; SDXL adds the pooled embedding."""

    embeds: torch.Tensor
    pooled: torch.Tensor | None = None

    @property
    def chunks(self) -> int:
        return self.embeds.shape[1] // (CHUNK_TOKENS + 2)


@dataclass
class TokenChunk:
    """Up to 75 token ids with their weights (no BOS/EOS yet)."""

    tokens: list[int] = field(default_factory=list)
    weights: list[float] = field(default_factory=list)


# A token id, or a textual-inversion embedding's ids (kept together in one chunk).
Unit = int | tuple[int, ...]


def chunk_tokens(pieces: list[tuple[list[Unit], float]], comma_id: int | None) -> list[TokenChunk]:
    """Token runs (or `BREAK`, given as an empty run of weight -1) → chunks of ≤ 75 tokens.

    As A1111's modules/sd_hijack_clip.py `tokenize_line` (lines 84-177): a comma is only noted
    (a comma that is the 76th token starts the next chunk, with no backtrack); another token
    that finds the chunk full moves what follows the last comma, when at most 20 back, to the
    next chunk; an embedding that does not fit in what is left moves whole to the next chunk.
    """
    chunks: list[TokenChunk] = []
    current = TokenChunk()
    last_comma = -1

    def close() -> None:
        nonlocal current, last_comma
        chunks.append(current)
        current, last_comma = TokenChunk(), -1

    for units, weight in pieces:
        if weight == -1.0 and not units:
            close()
            continue
        for unit in units:
            full = len(current.tokens) == CHUNK_TOKENS
            if unit == comma_id:
                last_comma = len(current.tokens)
            elif full and last_comma != -1 and CHUNK_TOKENS - last_comma <= COMMA_BACKTRACK:
                cut = last_comma + 1
                moved = TokenChunk(current.tokens[cut:], current.weights[cut:])
                current.tokens, current.weights = current.tokens[:cut], current.weights[:cut]
                close()
                current = moved
            if len(current.tokens) == CHUNK_TOKENS:
                close()
            ids = list(unit) if isinstance(unit, tuple) else [unit]
            if len(current.tokens) + len(ids) > CHUNK_TOKENS and len(ids) <= CHUNK_TOKENS:
                close()
            for token in ids:  # only an embedding of over 75 vectors spans chunks
                if len(current.tokens) == CHUNK_TOKENS:
                    close()
                current.tokens.append(token)
                current.weights.append(weight)
    if current.tokens or not chunks:
        close()
    return chunks


class TextEncoderView:
    """One tokenizer + text encoder pair, with the token ids that chunking needs."""

    def __init__(self, tokenizer: Any, encoder: Any, embedding_tokens: dict[str, list[str]]):
        self.tokenizer = tokenizer
        self.encoder = encoder
        self.bos = tokenizer.bos_token_id
        self.eos = tokenizer.eos_token_id
        self.pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.eos
        commas = tokenizer(",", add_special_tokens=False).input_ids
        self.comma = commas[0] if len(commas) == 1 else None
        self.embedding_tokens = embedding_tokens
        names = sorted(embedding_tokens, key=len, reverse=True)
        self._names = (
            re.compile(r"(?<![\w])(" + "|".join(map(re.escape, names)) + r")(?![\w])", re.I)
            if names
            else None
        )
        self._by_folded = {name.lower(): name for name in names}

    def token_ids(self, text: str) -> list[Unit]:
        """Ids of `text`, with each textual-inversion name replaced by its vectors' tokens (one
        tuple, which chunking keeps together)."""
        if self._names is None:
            return list(self._plain(text))
        ids: list[Unit] = []
        for index, part in enumerate(self._names.split(text)):
            if index % 2:
                tokens = self.embedding_tokens[self._by_folded[part.lower()]]
                ids.append(tuple(self.tokenizer.convert_tokens_to_ids(tokens)))
            elif part:
                ids += self._plain(part)
        return ids

    def _plain(self, text: str) -> list[int]:
        return self.tokenizer(
            text, add_special_tokens=False, truncation=False, verbose=False
        ).input_ids

    def chunks(self, runs: list[tuple[str, float]]) -> list[TokenChunk]:
        pieces = [
            ([], -1.0) if (text, weight) == (BREAK, -1.0) else (self.token_ids(text), weight)
            for text, weight in runs
        ]
        return chunk_tokens(pieces, self.comma)

    def ids_and_weights(self, chunk: TokenChunk) -> tuple[list[int], list[float]]:
        """BOS + tokens + EOS, padded to 77 with the tokenizer's pad token (as diffusers pads)."""
        ids = [self.bos, *chunk.tokens, self.eos]
        weights = [1.0, *chunk.weights, 1.0]
        missing = CHUNK_TOKENS + 2 - len(ids)
        return ids + [self.pad] * missing, weights + [1.0] * missing


def apply_weights(hidden: torch.Tensor, weights: list[float]) -> torch.Tensor:
    """A1111's emphasis: scale each token's hidden state, then restore the chunk's mean."""
    import torch

    if all(weight == 1.0 for weight in weights):
        return hidden
    scale = torch.tensor(weights, dtype=hidden.dtype, device=hidden.device)
    original_mean = hidden.mean()
    weighted = hidden * scale[None, :, None]
    return weighted * (original_mean / weighted.mean())


class PromptEncoder:
    """Encodes prompt text for one loaded pipeline (SD1.5 or SDXL)."""

    def __init__(
        self,
        pipe: Any,
        family: str,
        clip_skip: int,
        device: Any,
        embedding_tokens: dict[str, list[str]] | None = None,
    ) -> None:
        self.family = family
        self.clip_skip = clip_skip
        self.device = device
        tokens = embedding_tokens or {}
        self.views = [TextEncoderView(pipe.tokenizer, pipe.text_encoder, tokens)]
        if family == "sdxl":
            self.views.append(TextEncoderView(pipe.tokenizer_2, pipe.text_encoder_2, tokens))

    def encode(self, text: str) -> PromptEmbedding:
        import torch

        runs = parse_attention(text)
        per_view = [view.chunks(runs) for view in self.views]
        count = max(len(chunks) for chunks in per_view)
        parts, pooled = [], None
        with torch.inference_mode():
            for index in range(count):
                hidden_states = []
                for view_index, (view, chunks) in enumerate(zip(self.views, per_view, strict=True)):
                    chunk = chunks[index] if index < len(chunks) else TokenChunk()
                    hidden, chunk_pooled = self._encode_chunk(view, chunk)
                    hidden_states.append(hidden)
                    if index == 0 and view_index == len(self.views) - 1:
                        pooled = chunk_pooled
                parts.append(torch.cat(hidden_states, dim=-1))
        embeds = torch.cat(parts, dim=1)
        return PromptEmbedding(embeds, pooled if self.family == "sdxl" else None)

    def _encode_chunk(
        self, view: TextEncoderView, chunk: TokenChunk
    ) -> tuple[torch.Tensor, torch.Tensor]:
        import torch

        ids, weights = view.ids_and_weights(chunk)
        input_ids = torch.tensor([ids], device=self.device)
        output = view.encoder(input_ids, output_hidden_states=True)
        if self.family == "sdxl":
            hidden = output.hidden_states[-max(2, self.clip_skip)]
        elif self.clip_skip == 1:
            hidden = output.last_hidden_state
        else:
            hidden = view.encoder.final_layer_norm(output.hidden_states[-self.clip_skip])
        return apply_weights(hidden, weights), self._pooled(view, output, ids)

    def _pooled(self, view: TextEncoderView, output: Any, ids: list[int]) -> torch.Tensor:
        """The pooled embedding: the projected final hidden state at the first EOS, as ComfyUI's
        comfy/clip_model.py `CLIPTextModel_.forward` pools (`input_tokens == eos_token_id`), and
        where A1111 pools: its embeddings are token 0 in the ids (modules/sd_hijack_clip.py
        tokenize_line, line 170), so argmax finds EOS. transformers pools at `argmax(input_ids)`
        when the config's `eos_token_id` is 2 (SDXL's text_encoder_2): an added embedding's
        token, not EOS, when one is in the prompt."""
        projection = getattr(view.encoder, "text_projection", None)
        if self.family != "sdxl" or projection is None:
            return output[0]
        return projection(output.last_hidden_state[:, ids.index(view.eos)])


def repeat_to_chunks(embedding: PromptEmbedding, chunks: int) -> torch.Tensor:
    """`embedding.embeds` repeated until it has `chunks` chunks (a multiple of its own count), so
    that a prompt and its negative (and a batch's prompts) line up. As ComfyUI's
    comfy/conds.py `CONDCrossAttn.concat` (lines 51-62): "padding with repeat doesn't change
    result": attention over a repeated sequence is attention over the sequence."""
    if chunks % embedding.chunks:
        raise ValueError(f"{chunks} chunks are no multiple of {embedding.chunks}")
    return embedding.embeds.repeat(1, chunks // embedding.chunks, 1)
