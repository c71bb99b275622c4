"""A1111 prompt editing and alternation in the real diffusers path, on the tiny models: the
conditioning changes per step as A1111 modules/prompt_parser.py `reconstruct_cond_batch` picks
it (step s uses the first schedule entry ending at or after s), for the prompt and the negative,
per batch row; prompts without edits draw exactly as before."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tools.engine.prompt_schedule import AND_DECLINED, NESTING_IGNORED
from tools.engine.rendering import Engine, RenderJob
from tools.settings import CONFIG_FILENAME, load_settings

pytestmark = pytest.mark.slow


def engine_for(home: Path, **output) -> Engine:
    return Engine(load_settings(overrides={"output": output}, home=home, env={}))


def draw(engine: Engine, *prompts: str, negative: str = "lowres", seed: int = 7) -> list:
    jobs = [RenderJob(p, negative, Image.new("RGB", (128, 192)), None, seed) for p in prompts]
    images = engine.render(
        jobs, width=128, height=192, ipadapter_weight=0.9, controlnet_strength=0.5
    )
    return [np.asarray(image) for image in images]


def unet_inputs(engine: Engine) -> list[dict]:
    """What the UNet is handed at each call (text embeddings, SDXL's pooled `text_embeds`)."""
    calls: list[dict] = []

    def hook(_module, _args, kwargs):
        added = kwargs.get("added_cond_kwargs") or {}
        calls.append(
            {
                "text": kwargs["encoder_hidden_states"].clone(),
                "pooled": None if "text_embeds" not in added else added["text_embeds"].clone(),
            }
        )

    engine.pipe.unet.register_forward_pre_hook(hook, with_kwargs=True)
    return calls


def test_prompt_edit_and_alternation_change_the_image(anime_home):
    engine = engine_for(anime_home)
    (edited, plain, dog, cat) = draw(engine, "[cat:dog:0.5]", "cat dog", "dog", "cat")
    assert not np.array_equal(edited, plain)
    assert not np.array_equal(edited, dog)
    assert not np.array_equal(edited, cat)
    (alternating, both, a, b) = draw(engine, "[a|b]", "a b", "a", "b")
    assert not np.array_equal(alternating, both)
    assert not np.array_equal(alternating, a) and not np.array_equal(alternating, b)
    # A1111: a `when` below 1 is never scheduled, `[cat:dog:0]` is `dog` from the first step.
    assert np.array_equal(draw(engine, "[cat:dog:0]")[0], draw(engine, "dog")[0])


def test_each_step_gets_the_text_a1111_schedules(anime_home):
    """4 steps, `[cat:dog:0.5]`: A1111's schedule is [(2, cat), (4, dog)]: steps 0, 1, 2 are
    `cat`, step 3 is `dog`; the CFG batch is [negative, positive]."""
    engine = engine_for(anime_home)
    conditioning = engine.ensure_loaded()
    calls = unet_inputs(engine)
    draw(engine, "[cat:dog:0.5]")
    cat, dog = conditioning.prompt("cat").embeds, conditioning.prompt("dog").embeds
    negative = conditioning.prompt("lowres").embeds
    assert len(calls) == 4
    for step, call in enumerate(calls):
        expected = cat if step <= 2 else dog
        assert call["text"].shape[0] == 2
        assert np.array_equal(call["text"][1:].numpy(), expected.numpy()), step
        assert np.array_equal(call["text"][:1].numpy(), negative.numpy()), step


def test_batch_rows_keep_their_own_schedules_and_negatives_edit_too(anime_home):
    """Compared at the same batch size: a batch of 2 does not draw bit for bit as 2 of 1."""
    engine = engine_for(anime_home)
    edits, plains = draw(engine, "[cat:dog:0.5]", "[cat:dog:0.5]"), draw(engine, "cat", "cat")
    together = draw(engine, "[cat:dog:0.5]", "cat")
    assert np.array_equal(together[0], edits[0])
    assert np.array_equal(together[1], plains[1]), "a row without edits is not disturbed"
    alone_plain = draw(engine, "cat")
    edited_negative = draw(engine, "cat", negative="[lowres:blurry:0.5]")
    assert not np.array_equal(edited_negative[0], alone_plain[0])
    assert not np.array_equal(edited_negative[0], draw(engine, "cat", negative="blurry")[0])


def test_an_edit_after_the_cfg_cutoff_switches_the_conditional_rows(anime_home):
    engine = engine_for(anime_home, cfg_cutoff=0.5)
    conditioning = engine.ensure_loaded()
    calls = unet_inputs(engine)
    draw(engine, "[cat:dog:3]")  # steps 0..3 are cat, the cutoff halves steps 2 and 3
    draw(engine, "[cat:dog:2]")  # step 3 is dog
    cat, dog = conditioning.prompt("cat").embeds, conditioning.prompt("dog").embeds
    assert [call["text"].shape[0] for call in calls] == [2, 2, 1, 1] * 2
    assert np.array_equal(calls[3]["text"].numpy(), cat.numpy())
    assert np.array_equal(calls[7]["text"].numpy(), dog.numpy())


def test_the_hires_pass_schedules_edits_over_its_own_steps(anime_home):
    """A1111 modules/processing.py `calculate_hr_conds`: the hires pass's schedule counts its
    own steps, a fraction past 1.0 and an integer after the first pass's steps; the first pass
    (4 steps) is `cat` throughout for both prompts."""
    from tools.engine.hires import hires_pass
    from tools.settings import HiresSettings

    engine = engine_for(anime_home)
    conditioning = engine.ensure_loaded()
    job = RenderJob("[cat:dog:1.5]", "lowres", Image.new("RGB", (128, 192)), None, 7)
    image = engine.render(
        [job], width=128, height=192, ipadapter_weight=0.9, controlnet_strength=0.5
    )[0]
    hires = HiresSettings(scale=1.5, denoise=0.5, steps=4, upscaler="lanczos")
    calls = unet_inputs(engine)
    hires_pass(engine, job, image, hires)
    counted = RenderJob("[cat:dog:6]", "lowres", job.pose_image, None, 7)
    hires_pass(engine, counted, image, hires)
    cat, dog = conditioning.prompt("cat").embeds, conditioning.prompt("dog").embeds
    # 4 hires steps, switched after hires step 2 (1.5 → (1.5 − 1) · 4; 6 → 6 − 4).
    texts = [call["text"][1:] for call in calls]
    assert len(texts) == 8
    for step, text in enumerate(texts):
        expected = cat if step % 4 <= 2 else dog
        assert np.array_equal(text.numpy(), expected.numpy()), step


def test_and_is_declined_in_one_line_and_drawn_as_text(anime_home, caplog):
    engine = engine_for(anime_home)
    with caplog.at_level(logging.WARNING, logger="tools.engine.conditioning"):
        drawn = draw(engine, "a cat AND a dog")
    assert [r.getMessage() for r in caplog.records if "AND" in r.getMessage()] == [AND_DECLINED]
    assert drawn[0].shape == (192, 128, 3)


def test_brackets_nested_1000_deep_draw_with_one_warning_line(anime_home, caplog):
    # The schedule parser recursed per bracket: a RecursionError traceback (and before that,
    # 3^depth parse time). Now the prompt is drawn as written, with one line saying so.
    engine = engine_for(anime_home)
    deep = "[" * 1000 + "cat:dog:0.5" + "]" * 1000
    with caplog.at_level(logging.WARNING, logger="tools.engine.conditioning"):
        drawn = draw(engine, deep, negative="(" * 1000 + "lowres")
    assert [r.getMessage() for r in caplog.records if "nested" in r.getMessage()] == [
        NESTING_IGNORED
    ]
    assert drawn[0].shape == (192, 128, 3)


def test_and_is_named_in_the_image_record_and_by_info(anime_home, reference_image):
    """The `AND` line went to the log only; the image's record keeps it (`warnings`), so
    `anime-gen info` shows it; an image without `AND` records no warnings."""
    import json

    from typer.testing import CliRunner

    from assistant.gen_cli import app

    runner = CliRunner()
    added = runner.invoke(app, ["characters", "add", "sakura", "--image", str(reference_image)])
    assert added.exit_code == 0, added.output

    def drawn(prompt: str) -> str:
        result = runner.invoke(
            app, ["sakura", "--pose", "standing", "--seed", "5", "--prompt", prompt, "--json"]
        )
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)["outputs"][0]["path"]

    declined = drawn("a cat AND a dog")
    info = runner.invoke(app, ["info", declined])
    assert info.exit_code == 0 and f"warning: {AND_DECLINED}" in info.output.splitlines()
    as_json = json.loads(runner.invoke(app, ["info", declined, "--json"]).stdout)
    assert as_json["warnings"] == [AND_DECLINED]
    plain = json.loads(runner.invoke(app, ["info", drawn("a cat and a dog"), "--json"]).stdout)
    assert "warnings" not in plain


@pytest.fixture(scope="module")
def tiny_sdxl(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from evals.tiny_sdxl import build_tiny_sdxl

    return build_tiny_sdxl(tmp_path_factory.mktemp("tiny-sdxl"))


def test_sdxl_switches_the_pooled_embedding_too(tmp_path, tiny_sdxl):
    home = tmp_path / "home"
    home.mkdir()
    shutil.copyfile(tiny_sdxl, home / CONFIG_FILENAME)
    engine = engine_for(home)
    conditioning = engine.ensure_loaded()
    calls = unet_inputs(engine)
    edited = draw(engine, "[cat:dog:0.5]", "[a|b]")
    cat, dog = conditioning.prompt("cat"), conditioning.prompt("dog")
    # Rows: [negative × 2, positive × 2]; the edited row is row 2.
    assert np.array_equal(calls[0]["pooled"][2:3].numpy(), cat.pooled.numpy())
    assert np.array_equal(calls[3]["pooled"][2:3].numpy(), dog.pooled.numpy())
    assert np.array_equal(calls[3]["text"][2:3].numpy(), dog.embeds.numpy())
    b = conditioning.prompt("b")
    assert np.array_equal(calls[2]["text"][3:4].numpy(), b.embeds.numpy())
    plain = draw(engine, "cat dog", "a b")
    assert not np.array_equal(edited[0], plain[0])
    assert not np.array_equal(edited[1], plain[1])
    assert np.array_equal(draw(engine, "[cat:dog:0.5]", "[a|b]")[0], edited[0]), "same seed"
