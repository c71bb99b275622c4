"""The real diffusers loading and rendering paths, on the tiny models."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tools.engine.rendering import Engine, RenderJob
from tools.errors import UserError
from tools.settings import load_settings

pytestmark = pytest.mark.slow


def engine_for(home: Path, **models) -> Engine:
    return Engine(load_settings(overrides={"models": models}, home=home))


def draw(
    engine: Engine, reference: Path | None, seed: int = 1, prompt: str = "1girl"
) -> np.ndarray:
    job = RenderJob(prompt, "lowres", Image.new("RGB", (128, 192)), reference, seed)
    image = engine.render(
        [job], width=128, height=192, ipadapter_weight=0.9, controlnet_strength=0.5
    )[0]
    return np.asarray(image)


def test_single_file_checkpoint_loads_offline_and_matches_folder(
    anime_home, tiny_models, reference_image
):
    folder = engine_for(anime_home)
    single = engine_for(
        anime_home,
        checkpoint=str(tiny_models / "sd15.safetensors"),
        checkpoint_config=str(tiny_models / "sd15"),
    )
    assert single.checkpoint.kind == "file"
    assert np.array_equal(draw(folder, reference_image), draw(single, reference_image))
    assert single.info.model == "sd15.safetensors"


def test_checkpoint_found_under_home_models(anime_home, tiny_models):
    models = anime_home / "models"
    models.mkdir()
    (models / "counterfeit_v3.safetensors").symlink_to(tiny_models / "sd15.safetensors")
    engine = engine_for(anime_home, checkpoint="counterfeit_v3.safetensors")
    assert engine.checkpoint.location == str((tiny_models / "sd15.safetensors").resolve())


def test_missing_checkpoint_file_is_a_user_error_on_first_use_not_on_construction(anime_home):
    engine = engine_for(anime_home, checkpoint="nothing_here.safetensors")
    assert not engine.loaded
    with pytest.raises(UserError, match="checkpoint not found"):
        engine.ensure_loaded()


def test_reference_embedding_is_computed_once(anime_home, reference_image):
    engine = engine_for(anime_home)
    first = draw(engine, reference_image, seed=3)
    second = draw(engine, reference_image, seed=3)
    assert engine.encoder_calls == 1
    assert np.array_equal(first, second)
    restarted = engine_for(anime_home)
    assert np.array_equal(draw(restarted, reference_image, seed=3), first)
    assert restarted.encoder_calls == 0, "the on-disk cache should serve a new process"
    assert len(list((anime_home / ".anime-chat" / "embeddings").glob("*.safetensors"))) == 1


def test_reference_changes_the_image(anime_home, reference_image, tmp_path):
    engine = engine_for(anime_home)
    other = tmp_path / "other.png"
    Image.new("RGB", (96, 128), (10, 200, 30)).save(other)
    assert not np.array_equal(draw(engine, reference_image), draw(engine, other))


def test_clip_skip_two_uses_penultimate_layer(anime_home):
    """A1111's clip skip 2: the text encoder's penultimate hidden state, through its final
    layer norm (what the checkpoints were trained on); clip skip 1 is the last layer."""
    import torch

    text = "1girl, pink hair"
    engine = engine_for(anime_home, clip_skip=2)
    pipe = engine.pipe
    ids = pipe.tokenizer(
        text, padding="max_length", max_length=77, truncation=True, return_tensors="pt"
    ).input_ids
    with torch.inference_mode():
        hidden = pipe.text_encoder(ids, output_hidden_states=True).hidden_states
        penultimate = pipe.text_encoder.final_layer_norm(hidden[-2])
        last = pipe.text_encoder.final_layer_norm(hidden[-1])
    skip2 = engine.ensure_loaded().prompt(text).embeds
    skip1 = engine_for(anime_home, clip_skip=1).ensure_loaded().prompt(text).embeds
    assert torch.allclose(skip2, penultimate, atol=1e-6)
    assert torch.allclose(skip1, last, atol=1e-6)
    assert not torch.allclose(penultimate, last, atol=1e-3)


def test_cached_reference_embeddings_are_per_encoder_dtype(anime_home, reference_image):
    import torch

    first = engine_for(anime_home)
    positive, _ = first.reference_embedding(reference_image)
    assert positive.dtype == torch.float32 and first.encoder_calls == 1
    # The same adapter in half precision (as on a GPU) must not reuse the fp32 file.
    half = engine_for(anime_home)
    half.pipe.image_encoder.to(torch.bfloat16)
    positive, negative = half.reference_embedding(reference_image)
    assert positive.dtype == negative.dtype == torch.bfloat16 and half.encoder_calls == 1
    assert len(list((anime_home / ".anime-chat" / "embeddings").glob("*.safetensors"))) == 2


def test_controlnet_qkv_fusion_would_be_a_no_op_on_sd_attention(tiny_models):
    """Why the engine fuses only UNet and VAE: ControlNetModel.fuse_qkv_projections fuses
    only diffusers' new attention modules, and SD's ControlNet has none."""
    from diffusers import ControlNetModel

    controlnet = ControlNetModel.from_pretrained(tiny_models / "controlnet")
    controlnet.fuse_qkv_projections()
    assert not any(hasattr(module, "to_qkv") for module in controlnet.modules())
    processors = {type(p).__name__ for p in controlnet.attn_processors.values()}
    assert "FusedAttnProcessor2_0" not in processors


def test_compile_warm_up_runs_at_the_batch_size_used(anime_home):
    settings = load_settings(overrides={"output": {"batch_size": 3}}, home=anime_home, env={})
    engine = Engine(settings)
    batches: list[int] = []
    engine.pipe.unet.register_forward_pre_hook(lambda _m, args: batches.append(args[0].shape[0]))
    engine._warm_up()
    assert set(batches) == {6}  # three images, each with its negative


def test_an_image_without_a_reference_in_a_mixed_batch_is_drawn_as_alone(
    anime_home, reference_image
):
    """Issue 23 (suspected, confirmed): a zero image embedding is not neutral at the batch's
    IP-Adapter scale (diffusers models/embeddings.py ImageProjection: a linear layer with bias
    and a LayerNorm, so zeros project to tokens the cross-attention attends to); at scale 0
    (models/attention_processor.py IPAdapterAttnProcessor2_0 adds `scale * ip_hidden_states`)
    the reference branch adds nothing. The text-only image of a mixed batch must be the image
    the same job draws alone, without a reference."""
    import torch

    pose = Image.new("RGB", (128, 192))
    with_reference = RenderJob("1girl", "lowres", pose, reference_image, 1)
    without = RenderJob("1girl", "lowres", pose, None, 2)
    engine = engine_for(anime_home)
    # A trained adapter's projection has biases (h94/IP-Adapter ip-adapter_sd15: image_proj.proj
    # and image_proj.norm); the tiny one's are zeros, which would make zeros project to zeros.
    projection = engine.pipe.unet.encoder_hid_proj.image_projection_layers[0]
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for bias in (projection.image_embeds.bias, projection.norm.bias):
            bias.copy_(3 * torch.randn(bias.shape, generator=generator))
    mixed = engine.render(
        [with_reference, without],
        width=128,
        height=192,
        ipadapter_weight=0.9,
        controlnet_strength=0.5,
    )
    mixed = [np.asarray(image) for image in mixed]
    alone = engine.render(
        [without], width=128, height=192, ipadapter_weight=0.9, controlnet_strength=0.5
    )[0]
    moved = np.abs(np.asarray(mixed[1], dtype=np.int16) - np.asarray(alone, dtype=np.int16))
    referenced = np.abs(mixed[0].astype(np.int16) - draw(engine, reference_image, seed=1))
    for difference in (moved, referenced):
        # At most the documented rounding of batched kernels (tests/test_batch.py).
        assert difference.max() <= 1 and (difference > 0).mean() < 0.001
