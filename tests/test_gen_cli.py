"""`anime-gen` end to end through typer's runner, on the tiny models."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo
from typer.testing import CliRunner

from assistant.gen_cli import app
from tools.store.gen_index import GenerationIndex
from tools.store.output_store import read_png_metadata

runner = CliRunner()


def run(*args: str):
    return runner.invoke(app, list(args))


def snapshot(home: Path) -> dict[str, bytes]:
    """Every file under the library and output, with contents (to prove nothing changed)."""
    files = {}
    for root in (home / ".anime-characters", home / "anime-output"):
        if root.exists():
            for path in sorted(root.rglob("*")):
                if path.is_file() and not path.name.startswith("."):
                    files[str(path)] = path.read_bytes()
    return files


@pytest.fixture
def sakura(anime_home, reference_image):
    result = run("characters", "add", "sakura", "--image", str(reference_image), "-d", "pink hair")
    assert result.exit_code == 0, result.output
    return anime_home


@pytest.mark.slow
def test_batch_json_names_metadata_index_and_reproducibility(sakura):
    result = run(
        "--character", "sakura", "--pose", "standing", "--batch", "3", "--seed", "42", "--json"
    )
    assert result.exit_code == 0, result.output
    outputs = json.loads(result.stdout)["outputs"]
    assert len(outputs) == 3
    day_folder = Path(outputs[0]["path"]).parent
    assert day_folder.parent == sakura / "anime-output"
    assert [Path(o["path"]).name for o in outputs] == [
        f"sakura_standing_00{i}.png" for i in (1, 2, 3)
    ]
    for number, output in enumerate(outputs):
        assert output["character"] == "sakura"
        assert output["seed"] == 42 + number
        assert "standing" in output["pose"]["tags"]
        assert set(output["scores"]) >= {"consistency", "face", "aesthetic"}
        assert output["accepted"] is True and output["attempts"] >= 1
        parameters = read_png_metadata(Path(output["path"]))["parameters"]
        assert f"Seed: {42 + number}" in parameters
        assert f"Pose: {output['pose']['id']}" in parameters
    index = GenerationIndex(sakura / ".anime-chat" / "generations.sqlite")
    assert len(index.recent(character="sakura")) == 3

    again = json.loads(
        run("sakura", "--pose", "standing", "--batch", "3", "--seed", "42", "--json").stdout
    )["outputs"]
    assert [Path(o["path"]).name for o in again] == [
        f"sakura_standing_00{i}.png" for i in (4, 5, 6)
    ]
    for first, second in zip(outputs, again, strict=True):
        assert np.array_equal(
            np.asarray(Image.open(first["path"])), np.asarray(Image.open(second["path"]))
        )


@pytest.mark.slow
def test_positional_form_and_collection(sakura):
    result = run("sakura", "sitting reading book", "--collection", "Library", "--json")
    assert result.exit_code == 0, result.output
    output = json.loads(result.stdout)["outputs"][0]
    assert Path(output["path"]).name == "sakura_sitting_001.png"
    assert "sitting" in output["pose"]["tags"]
    assert len(list((sakura / "anime-output" / "collections" / "library").iterdir())) == 1


def test_dry_run_plans_without_drawing(sakura):
    result = run(
        "--character",
        "sakura",
        "--random-pose",
        "--batch",
        "2",
        "--seed",
        "1",
        "--json",
        "--dry-run",
    )
    assert result.exit_code == 0, result.output
    outputs = json.loads(result.stdout)["outputs"]
    assert [o["path"] for o in outputs] == [None, None]
    assert [o["seed"] for o in outputs] == [1, 2]
    assert not (sakura / "anime-output").exists()


def test_characters_list_json(sakura):
    entries = json.loads(run("characters", "list", "--json").stdout)
    assert entries == [
        {
            "name": "sakura",
            "description": "pink hair",
            "reference": str(sakura / ".anime-characters" / "sakura" / "reference.png"),
        }
    ]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--character", "sakrua", "--dry-run"], "using 'sakura' for 'sakrua'"),
        (["--character", "nobody", "--pose", "standing"], "unknown character 'nobody'"),
        (["--character", "sakura", "--batch", "0"], "count must be at least 1"),
        (["--character", "sakura", "--batch", "-1"], "count must be at least 1"),
        (["--character", "sakura", "--batch", "100000"], "max_batch"),
        (["--character", "sakura", "--resolution", "99999x5"], "output.resolution"),
        (["--character", "sakura", "--seed", "-4"], "seed must be"),
        (["characters", "add", "../evil", "--image", "x.png"], "invalid character name"),
        (["characters", "remove", "ghost"], "unknown character 'ghost'"),
    ],
)
def test_bad_input_is_one_line_exit_1_and_changes_nothing(sakura, args, expected):
    before = snapshot(sakura)
    result = run(*args)
    if "using" in expected:  # a small typo is corrected with a note, not refused
        assert result.exit_code == 0, result.output
        assert expected in result.stderr
        return
    assert result.exit_code == 1, result.output
    error, *rest = result.stderr.splitlines()
    assert error.startswith("error: ") and expected in error, result.stderr
    assert all(line.startswith("hint: ") for line in rest), result.stderr
    assert "Traceback" not in result.output
    assert snapshot(sakura) == before


def test_unknown_character_suggests_closest(sakura):
    result = run("--character", "sxkxra", "--pose", "standing")
    assert result.exit_code == 1
    assert "hint: did you mean sakura?" in result.stderr


def test_bad_config_names_file_and_key(sakura):
    config = sakura / ".anime-config.yaml"
    config.write_text(config.read_text() + "\nbogus: 1\n")
    result = run("characters", "list")
    assert result.exit_code == 1
    assert f"{config}: unknown key 'bogus'" in result.stderr


def test_corrupt_index_is_reported(sakura, reference_image):
    index = sakura / ".anime-characters" / "characters.json"
    index.write_text("[oops")
    result = run("characters", "add", "yuki", "--image", str(reference_image))
    assert result.exit_code == 1
    assert f"character index is corrupt: {index}" in result.stderr
    assert index.read_text() == "[oops"


def test_unreadable_reference_image(anime_home, tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    result = run("characters", "add", "yuki", "--image", str(bad))
    assert result.exit_code == 1
    assert "not a readable image" in result.stderr
    assert not (anime_home / ".anime-characters" / "yuki").exists()


@pytest.mark.slow
def test_variations_give_distinct_poses_linked_into_the_character(sakura):
    result = run("--variations", "sakura", "5", "--seed", "3", "--json")
    assert result.exit_code == 0, result.output
    outputs = json.loads(result.stdout)["outputs"]
    assert len({o["pose"]["id"] for o in outputs}) == 5
    links = list((sakura / ".anime-characters" / "sakura" / "variations").iterdir())
    assert sorted(link.resolve() for link in links) == sorted(
        Path(o["path"]).resolve() for o in outputs
    )


def test_character_sheet_never_overwrites_an_existing_character(sakura):
    before = snapshot(sakura)
    result = run("--character-sheet", "pink hair girl", "--name", "sakura")
    assert result.exit_code == 1
    assert "already exists" in result.stderr
    assert snapshot(sakura) == before


def test_all_characters_dry_run_covers_the_library(sakura, reference_image):
    assert run("characters", "add", "yuki", "--image", str(reference_image)).exit_code == 0
    result = run("--all-characters", "--pose", "standing", "--dry-run", "--json", "--seed", "9")
    outputs = json.loads(result.stdout)["outputs"]
    assert [o["character"] for o in outputs] == ["sakura", "yuki"]
    assert all("standing" in o["pose"]["tags"] for o in outputs)


@pytest.mark.slow
def test_from_png_reproduces_our_pixels_and_maps_other_tools_settings(
    sakura, tmp_path, monkeypatch
):
    # Issue 23 #11: settings the image was drawn with, which the replay's settings lack.
    drawn_with = {
        "ANIME_MODELS_CLIP_SKIP": "1",
        "ANIME_MODELS_CONTROLNET_STRENGTH": "0.8",
        "ANIME_MODELS_IPADAPTER_WEIGHT": "0.4",
        "ANIME_OUTPUT_NEGATIVE_PROMPT": "blurry, lowres",
    }
    for name, value in drawn_with.items():
        monkeypatch.setenv(name, value)
    first = run("sakura", "--pose", "standing", "--seed", "5", "--prompt", "rain", "--json")
    assert first.exit_code == 0, first.output
    original = json.loads(first.stdout)["outputs"][0]
    for name in drawn_with:
        monkeypatch.delenv(name)
    again = run("--from-png", original["path"], "--json")
    assert again.exit_code == 0, again.output
    assert "not restored" not in again.stderr, again.stderr
    copy = json.loads(again.stdout)["outputs"][0]
    assert copy["path"] != original["path"]
    assert (copy["seed"], copy["pose"]) == (original["seed"], original["pose"])
    recorded = json.loads(read_png_metadata(Path(copy["path"]))["anime-chat"])
    assert (recorded["clip_skip"], recorded["controlnet_strength"]) == (1, 0.8)
    assert (recorded["ipadapter_weight"], recorded["negative_prompt"]) == (0.4, "blurry, lowres")
    assert np.array_equal(
        np.asarray(Image.open(original["path"])), np.asarray(Image.open(copy["path"]))
    )

    a1111 = tmp_path / "a1111.png"
    info = PngInfo()
    params = Path(__file__).parent / "data" / "png_params" / "a1111_xxmix_adetailer_loras.txt"
    info.add_text("parameters", params.read_text())
    Image.new("RGB", (8, 8)).save(a1111, pnginfo=info)
    result = run("--from-png", str(a1111))
    assert result.exit_code == 1 and "add --character NAME" in result.output
    result = run("--from-png", str(a1111), "--character", "sakura", "--dry-run", "--json")
    assert result.exit_code == 0, result.output
    assert "sampler" not in result.stderr  # DPM++ 2M Karras is ours too
    assert "LoRA 'plague doctor'" in result.stderr
    assert "ADetailer model 'face_yolov8n.pt' (ours: animeface)" in result.stderr
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "'xxmix4_v10'" in warnings[0]
    assert json.loads(result.stdout)["outputs"][0]["seed"] == 2517177978

    # An A1111 negative prompt and Clip skip are drawn with and recorded (issue 23 #11).
    small = tmp_path / "a1111_small.png"
    info = PngInfo()
    info.add_text(
        "parameters",
        "1girl, rain\nNegative prompt: blurry, (lowres:1.2)\n"
        "Steps: 2, Sampler: Euler a, CFG scale: 5, Seed: 7, Size: 128x192, Clip skip: 2",
    )
    Image.new("RGB", (8, 8)).save(small, pnginfo=info)
    monkeypatch.setenv("ANIME_MODELS_CLIP_SKIP", "1")
    result = run("--from-png", str(small), "--character", "sakura", "--json")
    assert result.exit_code == 0, result.output
    parameters = read_png_metadata(Path(json.loads(result.stdout)["outputs"][0]["path"]))
    assert "\nNegative prompt: blurry, (lowres:1.2)\n" in parameters["parameters"]
    assert "Clip skip: 2," in parameters["parameters"]


def test_all_characters_times_the_count_is_held_to_the_batch_limit(
    sakura, reference_image, monkeypatch
):
    assert run("characters", "add", "yuki", "--image", str(reference_image)).exit_code == 0
    monkeypatch.setenv("ANIME_OUTPUT_MAX_BATCH", "5")
    fits = run("--all-characters", "--batch", "2", "--dry-run", "--json", "--seed", "9")
    assert fits.exit_code == 0 and len(json.loads(fits.stdout)["outputs"]) == 4
    over = run("--all-characters", "--batch", "3", "--dry-run", "--json", "--seed", "9")
    assert over.exit_code == 1 and "6 images" in over.stderr and "max_batch (5)" in over.stderr
    assert "Traceback" not in over.output


@pytest.mark.slow
def test_from_png_of_an_edited_prompt_draws_the_same_image(sakura, monkeypatch):
    # Issue 23: prompt editing and alternation are recorded as written and replayed per step.
    monkeypatch.setenv("ANIME_OUTPUT_NEGATIVE_PROMPT", "[lowres:blurry:0.5]")
    edits = "[rain:snow:0.5], [red|blue] umbrella"
    first = run("sakura", "--pose", "standing", "--seed", "5", "--prompt", edits, "--json")
    assert first.exit_code == 0, first.output
    original = json.loads(first.stdout)["outputs"][0]
    recorded = json.loads(read_png_metadata(Path(original["path"]))["anime-chat"])
    assert edits in recorded["prompt"] and recorded["negative_prompt"] == "[lowres:blurry:0.5]"
    monkeypatch.delenv("ANIME_OUTPUT_NEGATIVE_PROMPT")
    again = run("--from-png", original["path"], "--json")
    assert again.exit_code == 0, again.output
    copy = json.loads(again.stdout)["outputs"][0]
    replayed = json.loads(read_png_metadata(Path(copy["path"]))["anime-chat"])
    assert (replayed["prompt"], replayed["negative_prompt"]) == (
        recorded["prompt"],
        recorded["negative_prompt"],
    )
    assert np.array_equal(
        np.asarray(Image.open(original["path"])), np.asarray(Image.open(copy["path"]))
    )
