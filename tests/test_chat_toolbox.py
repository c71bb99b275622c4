"""Tool schemas come from the Args models, descriptions from prompts/; replies, thumbnails."""

from __future__ import annotations

import pytest
from PIL import Image

from assistant.reply import contact_sheet, image_protocol, inline_thumbnails
from prompts import load_prompt
from tools.generation.toolbox import TOOLS, tool_schemas, validate_args


def test_every_tool_schema_is_generated_from_its_args_model():
    schemas = {schema["function"]["name"]: schema["function"] for schema in tool_schemas()}
    assert set(schemas) >= {"generate", "batch", "create_character", "list_characters", "find_pose"}
    generate = schemas["generate"]
    assert generate["description"] == load_prompt("tool_generate")
    assert generate["parameters"]["required"] == ["character"]
    assert generate["parameters"]["properties"]["count"]["minimum"] == 1
    for name, tool in TOOLS.items():
        assert (
            schemas[name]["parameters"]["properties"].keys() == tool.args_model.model_fields.keys()
        )


def test_validation_rejects_what_the_contract_forbids():
    assert validate_args("generate", {"character": "yuki"}).count == 1
    with pytest.raises(ValueError):
        validate_args("generate", {"character": "yuki", "count": 0})
    with pytest.raises(ValueError):
        validate_args("batch", {"characters": "some"})


@pytest.mark.parametrize(
    ("env", "tty", "expected"),
    [({"TERM": "xterm-kitty"}, True, "kitty"), ({"TERM_PROGRAM": "iTerm.app"}, True, "iterm"),
     ({"TERM": "xterm-sixel"}, True, "sixel"), ({"TERM": "xterm-kitty"}, False, None),
     ({"TERM": "xterm-256color"}, True, None), ({"ANIME_CHAT_IMAGES": "off", "TERM": "xterm-kitty"},
                                                True, None)],
)  # fmt: skip
def test_image_protocol_detection(env, tty, expected):
    assert image_protocol(env, tty) == expected


def test_thumbnails_and_contact_sheet(tmp_path):
    paths = []
    for i in range(5):
        paths.append(tmp_path / f"{i}.png")
        Image.new("RGB", (64, 96), (50 * i, 20, 200)).save(paths[-1])
    assert inline_thumbnails(paths[:1], None) == ""
    assert inline_thumbnails(paths[:1], "kitty").startswith("\x1b_Ga=T,f=100")
    assert inline_thumbnails(paths[:1], "iterm").startswith("\x1b]1337;File=inline=1")
    sixel = inline_thumbnails(paths[:1], "sixel")
    assert sixel.startswith("\x1bPq") and sixel.rstrip().endswith("\x1b\\")
    assert contact_sheet(paths[:1], tmp_path / "sheets") is None
    sheet = contact_sheet(paths, tmp_path / "sheets")
    assert Image.open(sheet).size == (4 * 256, 2 * 256)


def test_create_character_tool_calls_the_character_sheet_and_never_overwrites(
    anime_home, reference_image
):
    from tools.errors import UserError
    from tools.generation.runtime import Runtime
    from tools.generation.toolbox import run_create_character
    from tools.settings import load_settings

    runtime = Runtime(load_settings())
    runtime.characters.add("momo", reference_image)
    args = validate_args("create_character", {"name": "momo", "description": "pink hair girl"})
    with pytest.raises(UserError, match="already exists"):
        run_create_character(runtime, args, None)
