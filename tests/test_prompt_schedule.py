"""A1111 prompt editing `[from:to:when]` and alternation `[a|b]`: the schedule parser (pure).

The examples are the docstring of A1111 modules/prompt_parser.py
`get_learned_conditioning_prompt_schedules` (its doctests), plus edge cases checked against that
function running on lark 1.3.1.
"""

from __future__ import annotations

import pytest

from tools.engine.prompt_schedule import model_steps, prompt_schedule, text_at, uses_and

ALTERNATING = [(step, "a" if step % 2 else "(b:1.1)") for step in range(1, 11)]

# (prompt, schedule at 10 steps): A1111's doctests, verbatim.
A1111_DOCTESTS = [
    ("test", [(10, "test")]),
    ("a [b:3]", [(3, "a "), (10, "a b")]),
    ("a [b: 3]", [(3, "a "), (10, "a b")]),
    ("a [[[b]]:2]", [(2, "a "), (10, "a [[b]]")]),
    ("[(a:2):3]", [(3, ""), (10, "(a:2)")]),
    ("a [b : c : 1] d", [(1, "a b  d"), (10, "a  c  d")]),
    ("a[b:[c:d:2]:1]e", [(1, "abe"), (2, "ace"), (10, "ade")]),
    ("a [unbalanced", [(10, "a [unbalanced")]),
    ("a [b:.5] c", [(5, "a  c"), (10, "a b c")]),
    ("((a][:b:c [d:3]", [(3, "((a][:b:c "), (10, "((a][:b:c d")]),
    ("[a|(b:1.1)]", ALTERNATING),
    ("[fe|]male", [(step, "female" if step % 2 else "male") for step in range(1, 11)]),
    ("[fe|||]male", [(step, "female" if step % 4 == 1 else "male") for step in range(1, 11)]),
]


@pytest.mark.parametrize(("prompt", "expected"), A1111_DOCTESTS)
def test_schedule_matches_a1111_doctests(prompt, expected):
    assert prompt_schedule(prompt, 10) == expected


def test_hires_pass_counts_on_from_the_first_pass():
    # The doctests with hires_steps: `[b:.5]` is over by the hires pass, `[b:1.5]` is halfway.
    assert prompt_schedule("a [b:.5] c", 10, 10) == [(10, "a b c")]
    assert prompt_schedule("a [b:1.5] c", 10, 10) == [(5, "a  c"), (10, "a b c")]
    assert prompt_schedule("[a:b:12]", 10, 10) == [(2, "a"), (10, "b")]


# Checked against A1111's function itself (lark 1.3.1).
EDGE_CASES = [
    # A1111's doctest `a [{b|d{:.5] c` claims a schedule; its grammar rejects `|` there
    # (lark raises), so the function returns the prompt unchanged: we follow the code.
    ("a [{b|d{:.5] c", [(10, "a [{b|d{:.5] c")]),
    ("[cat:dog:0]", [(10, "dog")]),  # a `when` below 1 is never added: `to` from the start
    ("[cat:dog:0.5]", [(5, "cat"), (10, "dog")]),
    ("[a:b:1.0]", [(10, "a")]),  # a decimal point makes it a fraction: 1.0 is the last step
    ("[a:b:1e1]", [(10, "a")]),  # no decimal point: step 10
    ("[a:b:3.]", [(10, "a")]),
    ("[a:b:-1]", [(10, "b")]),
    ("[a:b:+3]", [(3, "a"), (10, "b")]),
    ("[a:b:2 ]", [(2, "a"), (10, "b")]),
    ("[a:b:c:0.5]", [(10, "[a:b:c:0.5]")]),  # the grammar rejects it: plain text
    ("\\[a:b:0.5\\]", [(10, "\\[a:b:0.5\\]")]),
    ("a | b", [(10, "a | b")]),
    ("[:b:0.5]", [(5, ""), (10, "b")]),
    ("[a::0.5]", [(5, "a"), (10, "")]),
    ("(a:[b:c:0.5])", [(5, "(a:b)"), (10, "(a:c)")]),
    ("[a:(b:1.2):0.5]", [(5, "a"), (10, "(b:1.2)")]),
    (
        "[[a|b]:c:0.5]",
        [(1, "a"), (2, "b"), (3, "a"), (4, "b"), (5, "a")] + [(s, "c") for s in range(6, 11)],
    ),
    ("x (y [a|b]) z", [(s, f"x (y {'a' if s % 2 else 'b'}) z") for s in range(1, 11)]),
    ("(masterpiece:1.2), 1girl", [(10, "(masterpiece:1.2), 1girl")]),
    ("[a:b:99999]", [(10, "a")]),
]


@pytest.mark.parametrize(
    ("when", "expected"),
    [
        ("1e999", [(10, "a")]),
        ("9" * 400, [(10, "a")]),
        ("1.5e400", [(10, "a")]),
        ("-1e999", [(10, "b")]),
    ],
)
def test_an_infinite_when_is_past_the_last_step_not_an_overflow_error(when, expected):
    # float() of these is ±inf: int() of it raised OverflowError (a traceback in the worker).
    assert prompt_schedule(f"[a:b:{when}]", 10) == expected


@pytest.mark.parametrize(("prompt", "expected"), EDGE_CASES)
def test_schedule_edge_cases_as_a1111_computes_them(prompt, expected):
    assert prompt_schedule(prompt, 10) == expected


def test_step_lookup_is_a1111s_reconstruct_cond_batch():
    # The sampler's step s (0-based) uses the first entry ending at or after s: `[cat:dog:0.5]`
    # at 10 steps is `cat` for steps 0..5 and `dog` for 6..9; `[a|b]` is a, a, b, a, b, ...
    schedule = prompt_schedule("[cat:dog:0.5]", 10)
    assert [text_at(schedule, step) for step in range(10)] == ["cat"] * 6 + ["dog"] * 4
    alternation = prompt_schedule("[a|b]", 4)
    assert [text_at(alternation, step) for step in range(4)] == ["a", "a", "b", "a"]


def test_second_order_samplers_schedule_over_twice_the_steps():
    # A1111 modules/sd_samplers_common.py `SamplerData.total_steps`: `steps * 2` for a
    # `second_order` sampler (DPM++ SDE), not the 39 model calls it makes at 20 steps: there
    # `[a:b:0.5]` switches after step 20, not 19.
    assert model_steps(20, 1) == 20
    assert model_steps(20, 2) == 40
    assert prompt_schedule("[a:b:0.5]", model_steps(20, 2)) == [(20, "a"), (40, "b")]


def test_and_is_detected_as_a_word_only():
    assert uses_and("a cat AND a dog")
    assert not uses_and("a cat and a dog, ANDROID, sAND")


def test_nested_brackets_parse_once_per_position():
    # Each `[` was tried as an edit, an alternation and an emphasis, re-parsing its inside each
    # time: 3^depth (14 levels took 10 s, 30 would take days). Counted, not timed: each rule
    # runs at most once per position.
    import tools.engine.prompt_schedule as schedule_module

    calls = []
    original = schedule_module._Parser.item

    def counted(self, at):
        calls.append(at)
        return original(self, at)

    depth = 30
    prompt = "[" * depth + "a:b:0.5" + "]" * depth
    schedule_module._Parser.item = counted
    try:
        schedule = prompt_schedule(prompt, 10)
    finally:
        schedule_module._Parser.item = original
    # As A1111 computes it (checked on lark 1.3.1 at depth 4: `[[[a]]]`, then `[[[b]]]`).
    inner = depth - 1
    assert schedule == [(5, "[" * inner + "a" + "]" * inner), (10, "[" * inner + "b" + "]" * inner)]
    assert len(calls) <= len(prompt)


def test_mixed_nesting_alternates_as_a1111():
    # A1111 (lark 1.3.1): `([([([a|b])])])` at 4 steps alternates inside the emphasis.
    assert prompt_schedule("([" * 3 + "a|b" + "])" * 3, 4) == [
        (step, "([([(" + ("a" if step % 2 else "b") + ")])])") for step in range(1, 5)
    ]


def test_brackets_nested_past_the_limit_are_plain_text_not_a_recursion_error():
    from tools.engine.prompt_schedule import MAX_NESTING, nests_too_deep

    deep = "[" * 1000 + "a:b:0.5" + "]" * 1000
    assert nests_too_deep(deep)
    assert prompt_schedule(deep, 10) == [(10, deep)]
    unclosed = "(" * 1000 + "[a:b:0.5]"
    assert prompt_schedule(unclosed, 10) == [(10, unclosed)]
    at_limit = "(" * (MAX_NESTING - 1) + "[a:b:0.5]" + ")" * (MAX_NESTING - 1)
    assert not nests_too_deep(at_limit)
    assert [text for _, text in prompt_schedule(at_limit, 10)] == [
        at_limit.replace("[a:b:0.5]", "a"),
        at_limit.replace("[a:b:0.5]", "b"),
    ]

    # At the limit the parser leaves most of the stack to its callers (a worker, a server).
    def called_from_deep_inside(frames: int):
        return called_from_deep_inside(frames - 1) if frames else prompt_schedule(at_limit, 10)

    assert len(called_from_deep_inside(400)) == 2
    # Escaped and stray brackets do not nest.
    assert not nests_too_deep("\\[" * 1000 + ")]" * 1000 + "[a|b]")


def test_a_prompt_nested_too_deep_is_named_in_its_warnings():
    from tools.engine.prompt_schedule import AND_DECLINED, NESTING_IGNORED, prompt_warnings

    assert prompt_warnings("(" * 1000 + "cat") == [NESTING_IGNORED]
    assert prompt_warnings("a AND " + "[" * 65) == [AND_DECLINED, NESTING_IGNORED]
    assert prompt_warnings("[" * 64 + "cat") == []
