"""Prompt syntax as A1111/Forge users write it, parsed into weighted text; no torch here.

- `(word)` multiplies the attention of `word` by 1.1, `((word))` by 1.21, `(word:1.3)` by 1.3;
  `[word]` divides it by 1.1; brackets nest and multiply.
- `\\(`, `\\)`, `\\[`, `\\]` and `\\\\` are the literal characters.
- `BREAK` (upper case, a word of its own) starts a new 75-token chunk.
- `<lora:NAME:WEIGHT>` (weight optional, 1.0; `<lora:NAME:TE:UNET>` weights the UNet apart) is
  taken out of the text and returned as a `LoraRequest`.

Bad syntax is never an error, as in A1111: a closing bracket with no opening one is text, and an
opening bracket that is never closed weights the rest of the prompt.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

ROUND_MULTIPLIER = 1.1
SQUARE_MULTIPLIER = 1 / 1.1
BREAK = "BREAK"

# One token of the attention grammar per match: an escape, a bracket, a ":weight)" closer, a run
# of plain text, or a lone colon.
_ATTENTION_TOKEN = re.compile(
    r"""
    \\[()\[\]\\]?         # an escaped bracket or backslash; a lone backslash is dropped
    | [(\[]               # openers
    | :\s*(?P<weight>[+-]?[.\d]+)\s*\)   # (text:1.3)
    | [)\]]               # closers
    | [^\\()\[\]:]+       # plain text
    | :                   # a colon that closes nothing
    """,
    re.VERBOSE,
)
_BREAK_WORD = re.compile(r"\s*\bBREAK\b\s*")
_EXTRA_NETWORK = re.compile(r"<(?P<kind>lora|lyco):(?P<args>[^>]+)>", re.IGNORECASE)


@dataclass(frozen=True)
class LoraRequest:
    """One LoRA to apply: a file name under `<home>/models/lora/`, a path, or a hub id."""

    name: str
    weight: float = 1.0
    # The UNet's weight when it differs from the text encoders' (`<lora:NAME:TE:UNET>`).
    unet_weight: float | None = None

    def as_dict(self) -> dict[str, object]:
        extra = {} if self.unet_weight is None else {"unet_weight": self.unet_weight}
        return {"name": self.name, "weight": self.weight, **extra}

    def component_weights(self) -> float | dict[str, float]:
        """The weight for diffusers' `set_adapters`: one number, or one per component."""
        if self.unet_weight is None or self.unet_weight == self.weight:
            return self.weight
        te = self.weight
        return {"unet": self.unet_weight, "text_encoder": te, "text_encoder_2": te}


def parse_attention(text: str) -> list[tuple[str, float]]:
    """Text runs with their attention weights; a `BREAK` is the pair `("BREAK", -1.0)`.

    Runs of equal weight are merged, so `(a)(b)` gives `[("ab", 1.1)]`; an empty prompt gives
    `[("", 1.0)]`. Same results as A1111's `parse_prompt_attention`.
    """
    runs: list[list] = []
    open_round: list[int] = []
    open_square: list[int] = []

    def scale_from(start: int, factor: float) -> None:
        for run in runs[start:]:
            run[1] *= factor

    for match in _ATTENTION_TOKEN.finditer(text):
        token, weight = match.group(0), match.group("weight")
        if token.startswith("\\"):
            runs.append([token[1:], 1.0])
        elif token == "(":
            open_round.append(len(runs))
        elif token == "[":
            open_square.append(len(runs))
        elif weight is not None and open_round:
            scale_from(open_round.pop(), _number(weight))
        elif token == ")" and open_round:
            scale_from(open_round.pop(), ROUND_MULTIPLIER)
        elif token == "]" and open_square:
            scale_from(open_square.pop(), SQUARE_MULTIPLIER)
        else:
            for index, piece in enumerate(_BREAK_WORD.split(token)):
                if index:
                    runs.append([BREAK, -1.0])
                runs.append([piece, 1.0])
    for start in open_round:
        scale_from(start, ROUND_MULTIPLIER)
    for start in open_square:
        scale_from(start, SQUARE_MULTIPLIER)
    merged: list[list] = []
    for run in runs or [["", 1.0]]:
        if merged and merged[-1][1] == run[1]:
            merged[-1][0] += run[0]
        else:
            merged.append(list(run))
    return [(piece, weight) for piece, weight in merged]


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:  # "1.2.3" matches the pattern; A1111 would fail, we read it as 1.0
        return 1.0


def extract_loras(text: str) -> tuple[str, list[LoraRequest]]:
    """Take `<lora:NAME:W>` tags out of a prompt: the text without them, and the requests."""
    requests: list[LoraRequest] = []

    def take(match: re.Match[str]) -> str:
        name, *args = match.group("args").split(":")
        # A1111 extensions-builtin/Lora/extra_networks_lora.py `activate`: positional
        # NAME:TE:UNET (UNET defaults to TE), or named `te=`/`unet=` arguments.
        positional = [arg.strip() for arg in args if "=" not in arg]
        named = dict(arg.strip().split("=", 1) for arg in args if "=" in arg)
        te = _number(positional[0]) if positional and positional[0] else 1.0
        te = _number(named["te"]) if "te" in named else te
        unet = _number(positional[1]) if len(positional) > 1 and positional[1] else te
        unet = _number(named["unet"]) if "unet" in named else unet
        if name.strip():
            requests.append(LoraRequest(name.strip(), te, None if unet == te else unet))
        return ""

    return _EXTRA_NETWORK.sub(take, text), requests


def merge_loras(*groups: list[LoraRequest] | tuple[LoraRequest, ...]) -> tuple[LoraRequest, ...]:
    """One request per LoRA name, in first-seen order; a later group's weight wins."""
    chosen: dict[str, LoraRequest] = {}
    for group in groups:
        for request in group:
            chosen[request.name] = request
    return tuple(chosen.values())
