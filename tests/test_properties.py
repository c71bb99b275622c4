"""Property tests (hypothesis): every reader of outside input returns a result or raises our one
`UserError`, never another exception — PNG readers (ours, A1111 text, ComfyUI graph) on arbitrary
bytes and text, the prompt parser, the settings value parsers and the name validators."""

from __future__ import annotations

import contextlib
import io
import json
import os
import string
import struct
import zlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, PngImagePlugin

from tools.characters.library import normalize_name, parse_lora_option
from tools.engine.prompt_syntax import extract_loras, parse_attention
from tools.errors import UserError
from tools.settings import load_settings
from tools.settings_sections import parse_duration, parse_resolution
from tools.store.index_rebuild import png_record, valid_record
from tools.store.png_info import parse_a1111, parse_comfyui, read_png_info
from tools.store.png_text import read_png_text

# Bounded and derandomized, so CI is reproducible; a longer random hunt:
# `ANIME_FUZZ_EXAMPLES=5000 ANIME_FUZZ_RANDOM=1 pytest tests/test_properties.py`.
FAST = settings(
    max_examples=int(os.environ.get("ANIME_FUZZ_EXAMPLES", "150")),
    deadline=None,
    derandomize=not os.environ.get("ANIME_FUZZ_RANDOM"),
    database=None,
    suppress_health_check=list(HealthCheck),
)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=20,
)
# ComfyUI graphs: node ids → {"class_type", "inputs"} with links as [id, index], and junk.
node_ids = st.sampled_from(["1", "2", "3", "4", "5"])
inputs = st.dictionaries(
    st.sampled_from(
        [
            "text",
            "seed",
            "steps",
            "cfg",
            "sampler_name",
            "scheduler",
            "positive",
            "negative",
            "model",
            "clip",
            "ckpt_name",
            "width",
            "height",
            "lora_name",
            "strength_model",
            "samples",
            "latent_image",
            "denoise",
        ]
    ),
    json_values | st.tuples(node_ids, st.integers(-1, 3)).map(list),
    max_size=8,
)
nodes = st.fixed_dictionaries(
    {
        "class_type": st.sampled_from(
            [
                "KSampler",
                "KSamplerAdvanced",
                "CLIPTextEncode",
                "CheckpointLoaderSimple",
                "LoraLoader",
                "EmptyLatentImage",
                "VAEDecode",
                "SaveImage",
                "Unknown",
            ]
        )
        | json_values,
        "inputs": inputs | json_values,
    },
)
graphs = st.dictionaries(node_ids, nodes | json_values, max_size=6)


def png_with_text(chunks: dict[str, str]) -> bytes:
    info = PngImagePlugin.PngInfo()
    for key, value in chunks.items():
        info.add_text(key, value)
    buffer = io.BytesIO()
    Image.new("RGB", (4, 4)).save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()


def _read_info_or_user_error(path: Path) -> None:
    try:
        info = read_png_info(path)
    except UserError:
        return
    assert isinstance(info, dict) and "source" in info


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    return tmp_path_factory.mktemp("properties") / "file.png"


@FAST
@given(data=st.binary(max_size=400))
def test_png_readers_on_arbitrary_bytes(scratch, data):
    scratch.write_bytes(b"\x89PNG\r\n\x1a\n" + data if data[:1] == b"\x00" else data)
    _read_info_or_user_error(scratch)
    png_record(scratch)  # any value, or None: never an exception
    assert valid_record(scratch) is None or isinstance(valid_record(scratch), dict)
    with contextlib.suppress(ValueError, OSError):
        assert isinstance(read_png_text(scratch), dict)


def _png_chunk(kind: bytes, body: bytes, declared: int | None) -> bytes:
    size = len(body) if declared is None else declared
    return struct.pack(">I", size) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


# Whole chunks with real CRCs (arbitrary bytes almost never spell a chunk kind): text chunks
# with a keyword of ours, compressed or not, well formed or not, lengths that lie, a cut end.
_text_bodies = st.tuples(
    st.sampled_from([b"anime-chat", b"parameters", b"prompt", b"x"]),
    st.sampled_from([b"", b"\x00", b"\x00\x00", b"\x00\x01\x00", b"\x00\x01\x00\x00\x00"]),
    st.binary(max_size=60) | json_values.map(lambda v: zlib.compress(json.dumps(v).encode())),
).map(b"".join)
png_chunks = st.lists(
    st.tuples(
        st.sampled_from([b"tEXt", b"zTXt", b"iTXt", b"IHDR", b"IDAT", b"IEND", b"abcd"]),
        _text_bodies,
        st.none() | st.integers(0, 2**32 - 1),
    ),
    max_size=6,
).map(lambda chunks: b"".join(_png_chunk(*chunk) for chunk in chunks))


@FAST
@given(chunks=png_chunks, cut=st.integers(0, 40))
def test_png_readers_on_crafted_chunks(scratch, chunks, cut):
    data = b"\x89PNG\r\n\x1a\n" + chunks
    scratch.write_bytes(data[: len(data) - cut] if cut < len(data) else data)
    _read_info_or_user_error(scratch)
    png_record(scratch)
    assert valid_record(scratch) is None or isinstance(valid_record(scratch), dict)
    with contextlib.suppress(ValueError, OSError):
        assert isinstance(read_png_text(scratch), dict)


text_chunk_values = st.text(max_size=200) | json_values.map(json.dumps) | graphs.map(json.dumps)


@FAST
@given(
    key=st.sampled_from(["anime-chat", "parameters", "prompt", "workflow"]),
    value=text_chunk_values,
)
def test_png_info_on_arbitrary_text_chunks(scratch, key, value):
    scratch.write_bytes(png_with_text({key: value}))
    _read_info_or_user_error(scratch)
    assert valid_record(scratch) is None or isinstance(valid_record(scratch), dict)


a1111_text = st.lists(
    st.sampled_from(
        [
            "Steps: ",
            "Sampler: ",
            "CFG scale: ",
            "Seed: ",
            "Size: ",
            "Model: ",
            "Negative prompt: ",
            "Hires upscale: ",
            "Lora hashes: ",
            "Clip skip: ",
            "<lora:",
            ">",
            ":",
            ",",
            "\n",
            '"',
            "{",
            "}",
            "x",
            "12",
            "-3",
            "1.5",
            " ",
        ]
    )
    | st.text(max_size=8),
    max_size=30,
).map("".join)


@FAST
@given(text=a1111_text | st.text(max_size=200))
def test_a1111_parameters_parser_on_arbitrary_text(text):
    with contextlib.suppress(UserError):
        assert isinstance(parse_a1111(text), dict)


@FAST
@given(graph=graphs)
def test_comfyui_graph_parser_on_arbitrary_graphs(graph):
    with contextlib.suppress(UserError):
        assert isinstance(parse_comfyui(graph), dict)


prompt_text = st.lists(
    st.sampled_from(
        [
            "(",
            ")",
            "[",
            "]",
            ":",
            "\\",
            "<lora:",
            "<lyco:",
            ">",
            "1.2",
            "-1",
            "x",
            "BREAK",
            ",",
            " ",
            "AND",
            "|",
            "0.5",
        ]
    )
    | st.text(max_size=5),
    max_size=40,
).map("".join)


@FAST
@given(text=prompt_text | st.text(max_size=200))
def test_prompt_parser_on_arbitrary_text(text):
    try:
        parts = parse_attention(text)
        assert all(isinstance(part, str) and isinstance(weight, float) for part, weight in parts)
        rest, loras = extract_loras(text)
        assert isinstance(rest, str)
    except UserError:
        pass


@FAST
@given(value=st.text(max_size=30) | st.integers() | st.floats() | st.booleans() | st.none())
def test_settings_value_parsers_raise_only_value_errors(value):
    for parse in (parse_resolution, parse_duration):
        with contextlib.suppress(ValueError):
            parse(value)


setting_keys = st.sampled_from(
    [
        "ANIME_OUTPUT_RESOLUTION",
        "ANIME_OUTPUT_STEPS",
        "ANIME_WORKER_KEEP_ALIVE",
        "ANIME_MODELS_LORAS",
        "ANIME_OUTPUT_HIRES",
        "ANIME_OUTPUT_FACE_DETAIL",
        "ANIME_WORKER_GPUS",
        "ANIME_OUTPUT_SAMPLER",
        "ANIME_QUALITY_MIN_IDENTITY",
        "ANIME_OUTPUT_MAX_BATCH",
    ]
)


@FAST
@given(env=st.dictionaries(setting_keys, st.text(string.printable, max_size=20), max_size=3))
def test_settings_from_any_environment_are_settings_or_one_user_error(tmp_path_factory, env):
    home = tmp_path_factory.getbasetemp() / "settings-home"
    try:
        load_settings(env=env, home=home)
    except UserError as error:
        assert "\n" not in error.message


@FAST
@given(name=st.text(max_size=60))
def test_name_validators_on_arbitrary_text(name):
    try:
        folded = normalize_name(name)
        assert folded == folded.lower() and "/" not in folded and ".." not in folded
    except UserError:
        pass
    with contextlib.suppress(UserError):
        parse_lora_option(name)
