"""Long prompts, weights, BREAK, LoRAs, embeddings, VAE and samplers on the tiny models."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from evals.tiny_models import EMBEDDING_NAME, LORA_NAME
from tools.engine.prompt_syntax import LoraRequest
from tools.engine.rendering import Engine, RenderJob
from tools.engine.samplers import SAMPLER_TABLE
from tools.errors import UserError
from tools.settings import CONFIG_FILENAME, load_settings

pytestmark = pytest.mark.slow

LONG = ", ".join(["girl"] * 40)  # 79 tokens: past one chunk


@pytest.fixture
def home(anime_home: Path, tiny_models: Path) -> Path:
    for folder in ("lora", "embeddings"):
        (anime_home / "models" / folder).mkdir(parents=True)
        for file in (tiny_models / folder).iterdir():
            shutil.copyfile(file, anime_home / "models" / folder / file.name)
    return anime_home


def engine_for(home: Path, **models) -> Engine:
    return Engine(load_settings(overrides={"models": models}, home=home, env={}))


def jobs_of(*prompts: str, negative: str = "lowres", loras=()) -> list[RenderJob]:
    pose = Image.new("RGB", (128, 192))
    return [RenderJob(p, negative, pose, None, 1, tuple(loras)) for p in prompts]


def prompt_embeds(engine: Engine, prompt: str):
    """The prompt embedding the engine hands the pipeline (the render path's own encoder)."""
    return engine.ensure_loaded().prompt(prompt).embeds


def draw(engine: Engine, prompt: str, negative: str = "lowres", loras=()) -> np.ndarray:
    return render(engine, jobs_of(prompt, negative=negative, loras=loras))[0]


def render(engine: Engine, jobs: list[RenderJob]) -> list[np.ndarray]:
    images = engine.render(
        jobs, width=128, height=192, ipadapter_weight=0.9, controlnet_strength=0.5
    )
    return [np.asarray(image) for image in images]


def test_chunk_shapes_and_words_after_token_77_change_the_image(home):
    engine = engine_for(home)
    assert prompt_embeds(engine, "girl").shape == (1, 77, 32)
    assert prompt_embeds(engine, LONG).shape == (1, 154, 32)
    assert prompt_embeds(engine, ", ".join(["girl"] * 120)).shape == (1, 77 * 4, 32)
    # Only words past the first chunk differ; before chunking both were cut to the same 77.
    one, other = draw(engine, LONG + ", red hair"), draw(engine, LONG + ", blue sky")
    assert not np.array_equal(one, other)
    # A long prompt with a short negative: both padded to the same chunks, and it renders.
    assert draw(engine, "girl", negative=LONG).shape == (192, 128, 3)


def test_a_shorter_prompt_or_negative_is_repeated_to_the_common_multiple(home):
    """Issue 23 #5, as ComfyUI's comfy/conds.py CONDCrossAttn.concat (lines 51-62): a 2-chunk
    prompt with a 1-chunk negative gets the negative twice, not an empty chunk."""
    import torch

    conditioning = engine_for(home).ensure_loaded()
    three = ", ".join(["girl"] * 90)  # 179 tokens: 3 chunks
    assert conditioning.prompt(three).chunks == 3
    text = conditioning.text_inputs(jobs_of(LONG, three, negative="lowres")).first
    assert text["prompt_embeds"].shape[1] == 77 * 6
    negative = conditioning.prompt("lowres").embeds
    assert torch.equal(text["negative_prompt_embeds"][0], torch.cat([negative[0]] * 6))
    long = conditioning.prompt(LONG).embeds[0]
    assert torch.equal(text["prompt_embeds"][0], torch.cat([long] * 3))


def test_short_prompt_encodes_exactly_as_diffusers_does(home):
    engine = engine_for(home, clip_skip=1)
    ours = prompt_embeds(engine, "a girl, red hair")
    theirs, _ = engine.pipe.encode_prompt("a girl, red hair", "cpu", 1, False)
    assert np.allclose(ours.numpy(), theirs.detach().numpy(), atol=1e-6)


def test_weights_break_and_inline_lora(home):
    engine = engine_for(home)
    plain = draw(engine, "rain")
    assert np.array_equal(draw(engine, "(rain:1.0)"), plain)
    assert not np.array_equal(draw(engine, "(rain:1.4)"), plain)
    assert not np.array_equal(draw(engine, "girl BREAK red hair"), draw(engine, "girl, red hair"))
    assert not np.array_equal(draw(engine, f"rain <lora:{LORA_NAME}:0.8>"), plain)
    assert np.array_equal(draw(engine, "rain"), plain), "LoRA off again for the next image"


def test_lora_unet_weight_is_the_second_number(home):
    # A1111 extensions-builtin/Lora/extra_networks_lora.py: <lora:NAME:TE:UNET>.
    engine = engine_for(home)
    both = draw(engine, f"rain <lora:{LORA_NAME}:1>")
    assert np.array_equal(draw(engine, f"rain <lora:{LORA_NAME}:1:1>"), both)
    assert not np.array_equal(draw(engine, f"rain <lora:{LORA_NAME}:1:0>"), both)


def test_a_character_lora_applies_to_its_image_only_and_swaps_without_reloading(home):
    engine = engine_for(home)
    tiny = (LoraRequest(LORA_NAME, 1.0),)
    alone_with = draw(engine, "girl", loras=tiny)
    alone_without = draw(engine, "girl")
    together = render(engine, jobs_of("girl", loras=tiny) + jobs_of("girl"))
    assert np.array_equal(together[0], alone_with) and np.array_equal(together[1], alone_without)
    assert not np.array_equal(alone_with, alone_without)
    assert engine.loads == 1 and engine.loras.loads == 1


def test_a_missing_lora_is_one_line_naming_the_folder(home):
    engine = engine_for(home)
    with pytest.raises(UserError) as error:
        draw(engine, "girl <lora:nowhere:1>")
    assert "nowhere" in error.value.message and str(home / "models" / "lora") in error.value.message


def test_an_embedding_name_changes_the_image_and_missing_names_are_words(home):
    engine = engine_for(home)
    plain = draw(engine, "girl")
    assert not np.array_equal(draw(engine, "girl", negative=f"lowres, {EMBEDDING_NAME}"), plain)
    assert engine.embeddings.tokens[EMBEDDING_NAME][1].endswith("_1")  # two vectors
    assert draw(engine, "girl", negative="lowres, EasyNegative").shape == (192, 128, 3)


def test_default_negative_names_installed_embeddings_only(home):
    from tools.engine.extra_networks import default_negative_prompt

    settings = load_settings(home=home, env={})
    assert "EasyNegative" not in default_negative_prompt(settings.paths)
    embeddings = home / "models" / "embeddings"
    (embeddings / f"{EMBEDDING_NAME}.safetensors").rename(embeddings / "EasyNegative.safetensors")
    assert default_negative_prompt(settings.paths).startswith("EasyNegative, lowres")


def test_vae_single_file_loads_and_is_used(home, tiny_models):
    plain = draw(engine_for(home), "girl")
    (home / "models" / "vae").mkdir()
    shutil.copyfile(tiny_models / "vae.safetensors", home / "models" / "vae" / "anime.safetensors")
    engine = engine_for(home, vae="anime.safetensors")
    assert not np.array_equal(draw(engine, "girl"), plain)
    with pytest.raises(UserError, match="VAE not found"):
        engine_for(home, vae="kl-f8-anime2.safetensors").prefetch()


@pytest.mark.parametrize("sampler", list(SAMPLER_TABLE))
def test_each_sampler_renders_and_repeats(home, sampler):
    engine = Engine(load_settings(overrides={"output": {"sampler": sampler}}, home=home, env={}))
    first = draw(engine, "girl")
    assert first.shape == (192, 128, 3) and first.std() > 0
    assert np.array_equal(draw(engine, "girl"), first)


def test_a_nan_half_precision_decode_is_redone_in_fp32():
    import torch
    from diffusers.image_processor import VaeImageProcessor

    from tools.engine.vae import decode_latents

    class HalfVae(torch.nn.Module):
        config = type("Config", (), {"scaling_factor": 1.0, "force_upcast": False})()

        def __init__(self):
            super().__init__()
            self.weight = torch.nn.Parameter(torch.ones(1, dtype=torch.float16))

        @property
        def dtype(self):
            return self.weight.dtype

        def decode(self, latents, return_dict=False):
            if latents.dtype == torch.float16:
                return (torch.full((1, 3, 8, 8), float("nan")),)
            return (torch.zeros(1, 3, 8, 8),)

    pipe = type("Pipe", (), {"vae": HalfVae(), "image_processor": VaeImageProcessor()})()
    images, redone = decode_latents(pipe, torch.zeros(1, 4, 1, 1))
    assert redone and np.asarray(images[0]).mean() == pytest.approx(127.5, abs=1)
    assert pipe.vae.dtype == torch.float16


@pytest.fixture(scope="module")
def sdxl_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from evals.tiny_sdxl import build_tiny_sdxl

    return build_tiny_sdxl(tmp_path_factory.mktemp("tiny-sdxl-prompts"))


def test_sdxl_chunks_concatenate_both_encoders_and_pool_the_first(sdxl_config, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    shutil.copyfile(sdxl_config, home / CONFIG_FILENAME)
    engine = Engine(load_settings(home=home, env={}))
    one = engine.ensure_loaded().prompt("girl")
    two = engine.ensure_loaded().prompt(LONG)
    width = (
        engine.pipe.text_encoder.config.hidden_size + engine.pipe.text_encoder_2.config.hidden_size
    )
    assert one.embeds.shape == (1, 77, width) and two.embeds.shape == (1, 154, width)
    assert one.pooled.shape == (1, engine.pipe.text_encoder_2.config.projection_dim)
    assert not np.array_equal(draw(engine, LONG + ", red hair"), draw(engine, LONG + ", blue sky"))


def test_a_prompt_without_edits_is_handed_to_the_pipeline_as_before(home):
    """No regression: a prompt without edit syntax (emphasis, de-emphasis, a `|` outside
    brackets, which A1111's schedule grammar rejects) is one step-0 input, its text as written,
    and no step-end tensors to swap: the pipeline call is the one from before editing existed."""
    import torch

    conditioning = engine_for(home).ensure_loaded()
    prompt = "(girl:1.2), [blue eyes], red | white"
    text = conditioning.text_inputs(jobs_of(prompt, negative="(lowres:1.1)"), steps=20)
    assert list(text.steps) == [0] and text.tensor_names == []
    assert torch.equal(text.first["prompt_embeds"], conditioning.prompt(prompt).embeds)
    negative = conditioning.prompt("(lowres:1.1)").embeds
    assert torch.equal(text.first["negative_prompt_embeds"], negative)


def test_an_alternation_over_many_steps_encodes_each_text_once_and_holds_it_once(home, monkeypatch):
    """`[a|...|k][l|...|x]` cycles through 11·13 = 143 texts, more than the prompt cache's 128:
    each was encoded again when it came round (300 encodes at 300 steps), and every step held a
    batch tensor of its own. Now each distinct text is encoded once per pass and each step's
    rows refer to those embeddings (the batch is built when the step comes). A batch repeating
    the prompt schedules it once (A1111's `promptdict`): it was once per row."""
    import tools.engine.conditioning as conditioning_module

    scheduled: list[str] = []
    schedule = conditioning_module.prompt_schedule

    def counted_schedule(text, *args):
        scheduled.append(text)
        return schedule(text, *args)

    monkeypatch.setattr(conditioning_module, "prompt_schedule", counted_schedule)
    conditioning = engine_for(home).ensure_loaded()
    conditioning.prompt("warm up")  # the encoder exists
    encoded: list[str] = []
    encode = conditioning._prompt_encoder.encode

    def counted(text):
        encoded.append(text)
        return encode(text)

    conditioning._prompt_encoder.encode = counted
    first = "[" + "|".join("abcdefghijk") + "]"
    second = "[" + "|".join("lmnopqrstuvwx") + "]"
    text = conditioning.text_inputs(jobs_of(first + second, first + second), steps=300)
    assert sorted(encoded) == sorted(set(encoded)) and len(encoded) == 143 + 1  # + "lowres"
    held = {id(row[0].embeds) for rows in text.steps.values() for row in rows}
    assert len(text.steps) == 300 and len(held) == 143
    assert scheduled == [first + second, "lowres"]


def test_break_an_embedding_and_a_lora_inside_edits(home):
    """A branch with BREAK is two chunks, the other one: the one-chunk text is repeated to two
    (ComfyUI's repeat, issue 23 #5), step by step. An embedding named only in a branch is
    loaded for it; a LoRA tag inside an edit is taken out of the text before the schedule, as
    A1111 parses extra networks out of the prompt first (modules/extra_networks.py)."""
    import torch

    conditioning = engine_for(home).ensure_loaded()
    prompt = f"[girl BREAK hat:{EMBEDDING_NAME} cat:0.5]"
    text = conditioning.text_inputs(jobs_of(prompt), steps=10)
    assert sorted(text.steps) == [0, 6] and text.chunks == 2
    assert text.first["prompt_embeds"].shape[1] == 154
    kwargs: dict = {}
    text.update(6, kwargs, guided=True)
    late = conditioning.prompt(f"{EMBEDDING_NAME} cat").embeds
    assert torch.equal(kwargs["prompt_embeds"][1:], torch.cat([late, late], dim=1))
    assert EMBEDDING_NAME in conditioning.embeddings.tokens
    tagged = conditioning.text_inputs(jobs_of("[<lora:tiny:1>girl:cat:0.5]"), steps=10)
    assert torch.equal(tagged.first["prompt_embeds"], conditioning.prompt("girl").embeds)


def test_sdxl_empty_negative_is_zeros_and_an_empty_prompt_is_not(sdxl_config, tmp_path):
    """Issue 23 #7: A1111 modules/sd_models_xl.py get_learned_conditioning zeroes an empty
    negative (embeddings and pooled), as diffusers' force_zeros_for_empty_prompt."""
    home = tmp_path / "home"
    home.mkdir()
    shutil.copyfile(sdxl_config, home / CONFIG_FILENAME)
    conditioning = Engine(load_settings(home=home, env={})).ensure_loaded()
    text = conditioning.text_inputs(jobs_of("", "girl", negative="")).first
    assert not text["negative_prompt_embeds"].any()
    assert not text["negative_pooled_prompt_embeds"].any()
    assert text["prompt_embeds"][0].any() and text["pooled_prompt_embeds"][0].any()
    written = conditioning.text_inputs(jobs_of("girl", negative="lowres")).first
    assert written["negative_prompt_embeds"].any()


def test_sdxl_pools_at_the_first_eos_with_an_embedding_in_the_prompt(sdxl_config, tmp_path):
    """Issue 23 #6: with SDXL's text_encoder_2 config (eos_token_id 2) transformers pools at
    argmax(input_ids), an added embedding token; ours pools at the first EOS (ComfyUI
    comfy/clip_model.py)."""
    import torch

    from tools.engine.prompt_encoding import PromptEncoder

    home = tmp_path / "home"
    home.mkdir()
    shutil.copyfile(sdxl_config, home / CONFIG_FILENAME)
    engine = Engine(load_settings(home=home, env={}))
    engine.ensure_loaded()
    pipe = engine.pipe
    for tokenizer, encoder in (
        (pipe.tokenizer, pipe.text_encoder),
        (pipe.tokenizer_2, pipe.text_encoder_2),
    ):
        tokenizer.add_tokens(["<myemb-0>"])
        encoder.resize_token_embeddings(len(tokenizer))
    pipe.text_encoder_2.text_model.eos_token_id = 2  # as the released SDXL text_encoder_2
    encoder = PromptEncoder(pipe, "sdxl", 2, "cpu", {"myemb": ["<myemb-0>"]})
    pooled = encoder.encode("girl myemb").pooled
    tokenizer = pipe.tokenizer_2
    ids = [tokenizer.bos_token_id, *tokenizer("girl", add_special_tokens=False).input_ids]
    ids += [tokenizer.convert_tokens_to_ids("<myemb-0>"), tokenizer.eos_token_id]
    eos = len(ids) - 1
    ids += [tokenizer.pad_token_id] * (77 - len(ids))
    with torch.inference_mode():
        output = pipe.text_encoder_2(torch.tensor([ids]))
        at_eos = pipe.text_encoder_2.text_projection(output.last_hidden_state[:, eos])
    assert torch.allclose(pooled, at_eos, atol=1e-6)
    assert not torch.allclose(pooled, output.text_embeds, atol=1e-4)  # pooled at the embedding
