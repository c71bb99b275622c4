"""A1111's prompt editing and alternation: one prompt → the texts it conditions on, step by step.

- `[from:to:when]` is `from` up to step `when`, then `to`; `[to:when]` adds `to` after `when`,
  `[from::when]` drops `from` after it. `when` with a decimal point is a fraction of the steps
  (`0.5`), without one an absolute step (`10`). Edits nest.
- `[a|b|c]` cycles a, b, c, a, ... one step each.
- Everything else is text for the attention parser (`tools.engine.prompt_syntax`), which each
  scheduled text then goes through, as in A1111.

Follows A1111 modules/prompt_parser.py `get_learned_conditioning_prompt_schedules` (its lark
grammar `schedule_parser`, and the visitors `CollectSteps` and `AtStep`) without lark: a
backtracking parser of the same grammar. A prompt the grammar rejects (a `|` outside brackets,
`[a:b:c:0.5]`) is plain text, as there. Each rule is parsed once per position (memoized), so
a prompt parses in polynomial time however its brackets nest; brackets nested deeper than
`MAX_NESTING` make the prompt plain text (`nests_too_deep` lets the engine say so) rather than
a RecursionError. No torch here.

`AND` (A1111's composable diffusion, modules/prompt_parser.py `get_multicond_prompt_list`) is not
implemented: `prompt_warnings` names it, for the log and the image's record.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from tools.engine.prompt_syntax import extract_loras

# One schedule entry: (the last step it is used at, the text), as A1111's `[end_at_step, text]`:
# the sampler at step index s (0-based) uses the first entry whose end is ≥ s
# (modules/prompt_parser.py `reconstruct_cond_batch`).
Schedule = list[tuple[int, str]]

# The grammar's terminals: `plain: /([^\\\[\]():|]|\\.)+/`, `WHITESPACE: /\s+/` and lark's
# common.SIGNED_NUMBER.
_PLAIN = re.compile(r"(?:[^\\\[\]():|]|\\.)+", re.S)
_WHITESPACE = re.compile(r"\s+")
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
# `!start: (prompt | /[][():]/+)*`: brackets and colons that fit no rule are text at top level.
_STRAY = "[]():"
_AND = re.compile(r"\bAND\b")
# Deeper than any prompt written by hand (A1111 users nest a few levels), shallow enough that
# the recursive parser stays far below Python's default recursion limit of 1000.
MAX_NESTING = 64
_BRACKET = re.compile(r"\\.|[\[\]()]", re.S)


@dataclass
class _Scheduled:
    before: list | None
    after: list
    number: str
    when: int = 0


@dataclass
class _Alternate:
    options: list[list | None]


# A parsed prompt is a list of nodes: a str (text kept as written, brackets included), a
# `_Scheduled`, an `_Alternate`, or a nested list (an emphasized group with its brackets).
_Nodes = list


def _memoized(rule):
    """Parse `rule` once per (arguments): the alternatives of `item` re-parse the same inner
    prompt, which without this costs 3^depth for nested brackets."""

    def parse(self, *args):
        key = (rule.__name__, *args)
        if key not in self.memo:
            self.memo[key] = rule(self, *args)
        return self.memo[key]

    return parse


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.memo: dict[tuple, object] = {}

    def start(self) -> _Nodes | None:
        """The whole text, or None where the grammar rejects it (lark raises there)."""
        nodes: _Nodes = []
        at = 0
        while at < len(self.text):
            items, after = self.prompt(at)
            if after > at:
                nodes += items
                at = after
            elif self.text[at] in _STRAY:
                nodes.append(self.text[at])
                at += 1
            else:
                return None
        return nodes

    @_memoized
    def prompt(self, at: int) -> tuple[_Nodes, int]:
        """`prompt: (emphasized | scheduled | alternate | plain | WHITESPACE)*`, greedily."""
        nodes: _Nodes = []
        while at < len(self.text):
            parsed = self.item(at)
            if parsed is None:
                break
            node, at = parsed
            nodes.append(node)
        return nodes, at

    @_memoized
    def item(self, at: int) -> tuple[object, int] | None:
        char = self.text[at]
        if char == "[":
            return self.scheduled(at) or self.alternate(at) or self.emphasized(at, "[", "]")
        if char == "(":
            return self.emphasized(at, "(", ")")
        match = _PLAIN.match(self.text, at) or _WHITESPACE.match(self.text, at)
        return (match.group(0), match.end()) if match else None

    def expect(self, at: int, token: str) -> int | None:
        return at + len(token) if self.text.startswith(token, at) else None

    @_memoized
    def emphasized(self, at: int, opener: str, closer: str) -> tuple[object, int] | None:
        """`"(" prompt ")" | "(" prompt ":" prompt ")" | "[" prompt "]"`, brackets kept."""
        inner, end = self.prompt(at + 1)
        nodes: _Nodes = [opener, *inner]
        if opener == "(" and self.expect(end, ":") is not None:
            second, after = self.prompt(end + 1)
            if self.expect(after, closer) is not None:
                return [*nodes, ":", *second, closer], after + 1
        if self.expect(end, closer) is not None:
            return [*nodes, closer], end + 1
        return None

    @_memoized
    def scheduled(self, at: int) -> tuple[object, int] | None:
        """`"[" [prompt ":"] prompt ":" [WHITESPACE] NUMBER [WHITESPACE] "]"`."""
        first, end = self.prompt(at + 1)
        if self.expect(end, ":") is None:
            return None
        # With `from:`: a second prompt, then ":" and the number.
        second, after = self.prompt(end + 1)
        if self.expect(after, ":") is not None:
            parsed = self.when(after + 1)
            if parsed is not None:
                return _Scheduled(first, second, parsed[0]), parsed[1]
        # Without: the first prompt is `to`.
        parsed = self.when(end + 1)
        if parsed is not None:
            return _Scheduled(None, first, parsed[0]), parsed[1]
        return None

    @_memoized
    def when(self, at: int) -> tuple[str, int] | None:
        """`[WHITESPACE] NUMBER [WHITESPACE] "]"` → (the number as written, past the `]`)."""
        space = _WHITESPACE.match(self.text, at)
        at = space.end() if space else at
        number = _NUMBER.match(self.text, at)
        if number is None:
            return None
        at = number.end()
        space = _WHITESPACE.match(self.text, at)
        at = space.end() if space else at
        end = self.expect(at, "]")
        return None if end is None else (number.group(0), end)

    @_memoized
    def alternate(self, at: int) -> tuple[object, int] | None:
        """`"[" prompt ("|" [prompt])+ "]"`; an empty option is None (A1111 makes it "")."""
        first, end = self.prompt(at + 1)
        options: list[_Nodes | None] = [first]
        while self.expect(end, "|") is not None:
            option, end = self.prompt(end + 1)
            options.append(option or None)
        if len(options) < 2 or self.expect(end, "]") is None:
            return None
        return _Alternate(options), end + 1


def _walk(nodes: _Nodes):
    for node in nodes:
        if isinstance(node, list):
            yield from _walk(node)
        elif isinstance(node, _Scheduled):
            yield node
            yield from _walk(node.before or [])
            yield from _walk(node.after)
        elif isinstance(node, _Alternate):
            yield node
            for option in node.options:
                yield from _walk(option or [])


def _at_step(nodes: _Nodes | None, step: int) -> str:
    """A1111's `AtStep` transformer: the text at `step` (1-based, as its schedule ends)."""
    parts = []
    for node in nodes or []:
        if isinstance(node, str):
            parts.append(node)
        elif isinstance(node, list):
            parts.append(_at_step(node, step))
        elif isinstance(node, _Scheduled):
            parts.append(_at_step(node.before if step <= node.when else node.after, step))
        else:
            parts.append(_at_step(node.options[(step - 1) % len(node.options)], step))
    return "".join(parts)


def prompt_schedule(prompt: str, steps: int, hires_steps: int | None = None) -> Schedule:
    """The texts `prompt` conditions on, each with the last step it is used at.

    `steps` is the pass's number of model steps; for the hires pass, `steps` is the first
    pass's and `hires_steps` the second's: there an integer `when` counts on from the first pass
    (`[a:b:30]` after 20 base steps switches at hires step 10) and a fraction is past 1.0
    (`[a:b:1.5]` switches halfway through the hires pass; `[a:b:0.5]` is `b` throughout).
    A1111 modules/prompt_parser.py `get_learned_conditioning_prompt_schedules` (its default,
    not `use_old_scheduling`); a prompt without edits is `[(steps, prompt)]`, as written.
    """
    int_offset, float_offset, total = 0, 0.0, steps
    if hires_steps is not None:
        int_offset, float_offset, total = steps, 1.0, hires_steps
    nodes = None if nests_too_deep(prompt) else _Parser(prompt).start()
    edits = list(_walk(nodes or []))
    if not edits:
        return [(total, prompt)]
    ends = {total}
    for node in edits:
        if isinstance(node, _Alternate):
            ends.update(range(1, total + 1))
            continue
        value = float(node.number)
        fraction = "." in node.number
        value = (value - float_offset) * total if fraction else value - int_offset
        # Clamped before int(): `1e999` or 400 digits are infinite, where A1111's
        # `min(steps, int(v))` raises OverflowError; any `when` past the last step or below 1
        # schedules alike.
        node.when = int(max(-1.0, min(float(total), value)))
        if node.when >= 1:
            ends.add(node.when)
    return [(end, _at_step(nodes, end)) for end in sorted(ends)]


def text_at(schedule: Schedule, step: int) -> str:
    """The text the sampler's step `step` (0-based) uses: A1111's `reconstruct_cond_batch`."""
    for end, text in schedule:
        if step <= end:
            return text
    return schedule[0][1]


def model_steps(steps: int, order: int) -> int:
    """The step count A1111 schedules prompts over for a `steps`-step run of a sampler of
    `order` (diffusers' `order`: 2 for DPM++ SDE, whose timesteps interleave): twice the steps
    for a second-order sampler, modules/sd_samplers_common.py `SamplerData.total_steps`
    (`steps * 2`) as used by modules/processing.py `setup_conds` and `calculate_hr_conds`,
    though the sampler makes one model call fewer (its last step is an Euler step)."""
    return steps * 2 if order == 2 else steps


def nests_too_deep(prompt: str) -> bool:
    """Whether brackets nest deeper than `MAX_NESTING` (a stray closer is text, as in the
    attention parser): such a prompt is plain text to the schedule."""
    depth = deepest = 0
    for match in _BRACKET.finditer(prompt):
        bracket = match.group(0)
        if bracket in "[(":
            depth += 1
            deepest = max(deepest, depth)
        elif bracket in "])":
            depth = max(0, depth - 1)
    return deepest > MAX_NESTING


def uses_and(prompt: str) -> bool:
    """Whether the prompt has A1111's `AND` (composable diffusion, not implemented here)."""
    return _AND.search(prompt) is not None


# The line a prompt with `AND` gets (A1111's composable diffusion is not implemented).
AND_DECLINED = (
    "AND (A1111's composable diffusion) is not supported: the prompt is drawn as one prompt, "
    "AND included as a word"
)


# The line a prompt gets whose brackets nest past `MAX_NESTING`.
NESTING_IGNORED = (
    f"brackets nested more than {MAX_NESTING} deep: prompt editing and alternation are off for "
    "this prompt, its text drawn as written"
)


def prompt_warnings(prompt: str) -> list[str]:
    """What drawing `prompt` (its `<lora:...>` tags still in) declines, one line each: the
    engine logs them and the image's record keeps them (`warnings`)."""
    lines = [AND_DECLINED] if uses_and(extract_loras(prompt)[0]) else []
    return lines + ([NESTING_IGNORED] if nests_too_deep(prompt) else [])
