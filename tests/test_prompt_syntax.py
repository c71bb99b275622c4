"""A1111 prompt syntax, 75-token chunking and sampler names: pure functions, no models."""

from __future__ import annotations

import pytest

from tools.engine.prompt_encoding import CHUNK_TOKENS, chunk_tokens
from tools.engine.prompt_syntax import LoraRequest, extract_loras, merge_loras, parse_attention
from tools.engine.samplers import SAMPLER_TABLE, normalize_sampler
from tools.errors import ConfigError
from tools.settings import load_settings


def approx(runs: list[tuple[str, float]]) -> list[tuple[str, float]]:
    return [(text, pytest.approx(weight)) for text, weight in runs]


# The examples of the docstring of A1111's modules/prompt_parser.py `parse_prompt_attention`.
A1111_EXAMPLES = [
    ("normal text", [("normal text", 1.0)]),
    ("an (important) word", [("an ", 1.0), ("important", 1.1), (" word", 1.0)]),
    ("(unbalanced", [("unbalanced", 1.1)]),
    ("\\(literal\\]", [("(literal]", 1.0)]),
    ("(unnecessary)(parens)", [("unnecessaryparens", 1.1)]),
    (
        "a (((house:1.3)) [on] a (hill:0.5), sun, (((sky))).",
        [
            ("a ", 1.0),
            ("house", 1.5730000000000004),
            (" ", 1.1),
            ("on", 1.0),
            (" a ", 1.1),
            ("hill", 0.55),
            (", sun, ", 1.1),
            ("sky", 1.4641000000000006),
            (".", 1.1),
        ],
    ),
]


@pytest.mark.parametrize(("text", "expected"), A1111_EXAMPLES)
def test_parser_matches_a1111_examples(text, expected):
    assert parse_attention(text) == approx(expected)


def test_nesting_square_brackets_escapes_and_empty():
    assert parse_attention("((word))") == approx([("word", 1.21)])
    assert parse_attention("[word]") == approx([("word", 1 / 1.1)])
    assert parse_attention("(word:1.3)") == approx([("word", 1.3)])
    assert parse_attention("( word : 0.8 )") == approx([(" word ", 0.8)])
    assert parse_attention("a \\\\ b") == [("a \\ b", 1.0)]
    assert parse_attention("") == [("", 1.0)]


def test_unbalanced_closers_and_colons_are_text_not_errors():
    assert parse_attention("smile) :3 ]x") == [("smile) :3 ]x", 1.0)]
    assert parse_attention("time 12:30") == [("time 12:30", 1.0)]
    assert parse_attention("(a:1.2.3)") == [("a", 1.0)]


def test_break_starts_a_chunk_only_as_an_upper_case_word():
    assert parse_attention("red hair BREAK blue sky") == [
        ("red hair", 1.0),
        ("BREAK", -1.0),
        ("blue sky", 1.0),
    ]
    assert parse_attention("breakfast, break") == [("breakfast, break", 1.0)]


def test_inline_loras_leave_the_text_and_are_collected():
    text, loras = extract_loras("1girl, <lora:sakura_v2:0.8> smile <lora:detail> <LORA:x:1:0.5>")
    assert text == "1girl,  smile  "
    assert loras == [
        LoraRequest("sakura_v2", 0.8),
        LoraRequest("detail", 1.0),
        LoraRequest("x", 1.0, 0.5),
    ]
    assert extract_loras("<hypernet:h:1> no lora") == ("<hypernet:h:1> no lora", [])


def test_merge_keeps_one_request_per_lora_and_the_later_weight():
    merged = merge_loras([LoraRequest("a", 1.0), LoraRequest("b", 0.5)], (LoraRequest("a", 0.3),))
    assert merged == (LoraRequest("a", 0.3), LoraRequest("b", 0.5))


def test_chunks_hold_75_tokens_without_cap_and_break_closes_one():
    chunks = chunk_tokens([(list(range(1, 201)), 1.0)], comma_id=None)
    assert [len(chunk.tokens) for chunk in chunks] == [75, 75, 50]
    assert [t for chunk in chunks for t in chunk.tokens] == list(range(1, 201))
    broken = chunk_tokens([([1, 2], 1.0), ([], -1.0), ([3], 1.3)], comma_id=None)
    assert [(c.tokens, c.weights) for c in broken] == [([1, 2], [1.0, 1.0]), ([3], [1.3])]
    assert [c.tokens for c in chunk_tokens([], comma_id=None)] == [[]]


def test_a_full_chunk_moves_back_to_a_recent_comma():
    comma = 9
    tokens = [1] * 70 + [comma] + [2] * 10  # the comma at index 70: 5 tokens back from the end
    chunks = chunk_tokens([(tokens, 1.0)], comma_id=comma)
    assert len(chunks[0].tokens) == 71 and chunks[0].tokens[-1] == comma
    assert chunks[1].tokens == [2] * 10
    far = chunk_tokens([([comma] + [1] * 80, 1.0)], comma_id=comma)
    assert len(far[0].tokens) == CHUNK_TOKENS  # a comma 74 tokens back is too far


def test_a_comma_that_is_the_76th_token_starts_the_next_chunk_without_backtrack():
    """Issue 23 #4, A1111 modules/sd_hijack_clip.py tokenize_line: a comma is only noted."""
    comma = 9
    tokens = [1] * 70 + [comma] + [1] * 4 + [comma] + [2] * 5  # the second comma is the 76th
    chunks = chunk_tokens([(tokens, 1.0)], comma_id=comma)
    assert [len(chunk.tokens) for chunk in chunks] == [75, 6]
    assert chunks[1].tokens == [comma] + [2] * 5
    # The comma that opens a chunk is not noted there (A1111 resets last_comma after it).
    later = chunk_tokens([(tokens + [3] * 70, 1.0)], comma_id=comma)
    assert [len(chunk.tokens) for chunk in later] == [75, 75, 1]


def test_an_embedding_that_does_not_fit_moves_whole_to_the_next_chunk():
    """Issue 23 #4: ng_deepnegative_v1_75t (75 vectors) after 66 tokens was split 66/9."""
    embedding = tuple(range(100, 175))
    chunks = chunk_tokens([([1] * 66 + [embedding] + [2, 3], 1.2)], comma_id=None)
    assert [chunk.tokens for chunk in chunks] == [[1] * 66, list(embedding), [2, 3]]
    assert chunks[1].weights == [1.2] * 75
    fits = chunk_tokens([([1] * 10, 1.0), ([(7, 8)], 0.9), ([5], 1.0)], comma_id=None)
    assert [(c.tokens, c.weights) for c in fits] == [
        ([1] * 10 + [7, 8, 5], [1.0] * 10 + [0.9, 0.9, 1.0])
    ]
    huge = chunk_tokens([([1, tuple(range(100, 180))], 1.0)], comma_id=None)
    assert [len(chunk.tokens) for chunk in huge] == [75, 6]  # over 75 vectors: spans two


@pytest.mark.parametrize(
    ("written", "ours"),
    [
        ("DPM++ 2M Karras", "dpmpp_2m_karras"),
        ("DPM++ SDE Karras", "dpmpp_sde_karras"),
        ("DPM++ 2M SDE Karras", "dpmpp_2m_sde_karras"),
        ("Euler a", "euler_a"),
        ("UniPC", "unipc"),
        ("ddim", "ddim"),
    ],
)
def test_a1111_sampler_spellings_normalise(written, ours):
    assert normalize_sampler(written) == ours


def test_every_sampler_label_normalises_to_its_name():
    assert all(normalize_sampler(label) == name for name, (_, label, _) in SAMPLER_TABLE.items())


def test_sampler_setting_accepts_a1111_names_and_lists_choices(tmp_path):
    settings = load_settings(overrides={"output": {"sampler": "DPM++ 2M Karras"}}, home=tmp_path)
    assert settings.output.sampler == "dpmpp_2m_karras"
    (tmp_path / ".anime-config.yaml").write_text("output:\n  sampler: DPM++ 3M\n")
    with pytest.raises(ConfigError) as error:
        load_settings(home=tmp_path, env={})
    assert "output.sampler" in str(error.value) and "dpmpp_2m_karras (DPM++ 2M Karras)" in str(
        error.value
    )


def test_lora_setting_from_file_and_environment(tmp_path):
    config = "models:\n  loras: [{name: detail, weight: 0.6}]\n"
    (tmp_path / ".anime-config.yaml").write_text(config)
    settings = load_settings(home=tmp_path, env={})
    assert [(x.name, x.weight) for x in settings.models.loras] == [("detail", 0.6)]
    env = load_settings(home=tmp_path, env={"ANIME_MODELS_LORAS": "a:0.5, b"})
    assert [(x.name, x.weight) for x in env.models.loras] == [("a", 0.5), ("b", 1.0)]


def test_lora_text_encoder_and_unet_weights_as_a1111_reads_them():
    # A1111 extensions-builtin/Lora/extra_networks_lora.py `activate`: te = positional[1],
    # unet = positional[2] (else te), named te=/unet= override.
    _, loras = extract_loras("<lora:a:0.8:0.3> <lora:b:0.6> <lora:c:te=0.2:unet=0.9> <lora:d:1:1>")
    assert loras == [
        LoraRequest("a", 0.8, 0.3),
        LoraRequest("b", 0.6),
        LoraRequest("c", 0.2, 0.9),
        LoraRequest("d", 1.0),
    ]
    assert loras[0].component_weights() == {"unet": 0.3, "text_encoder": 0.8, "text_encoder_2": 0.8}
    assert loras[1].component_weights() == 0.6
    assert loras[0].as_dict() == {"name": "a", "weight": 0.8, "unet_weight": 0.3}
