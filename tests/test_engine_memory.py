"""What a long-lived engine keeps and how it fits its decodes (issue 23's suspected items): the
out-of-memory fallback sticks, every decode is fitted, the LoRA, prompt and reference caches are
bounded."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from PIL import Image

from tools.engine import rendering
from tools.engine.rendering import Engine, RenderJob
from tools.settings import load_settings

pytestmark = pytest.mark.slow

POSE = Image.new("RGB", (128, 192))


def decode_flags(engine: Engine) -> list[tuple[bool, bool]]:
    """(slicing, tiling) of the VAE at each decode from now on."""
    vae = engine.pipe.vae
    real = vae.decode
    flags: list[tuple[bool, bool]] = []

    def decode(*args, **kwargs):
        flags.append((vae.use_slicing, vae.use_tiling))
        return real(*args, **kwargs)

    vae.decode = decode
    return flags


def test_the_out_of_memory_fallback_keeps_slicing_and_tiling_for_every_later_decode(
    anime_home, reference_image
):
    """The retry of an image that ran out of memory at batch 1 slices and tiles the VAE
    (tools/jobs/worker.py); `_fit_vae`, deciding per batch, turned both off again at the next
    decode, so the retry ran out of memory the same way."""
    from PIL import Image as PILImage

    from tools.characters.library import CharacterLibrary
    from tools.generation.specs import GenerationRequest
    from tools.jobs.client import submit_job
    from tools.jobs.faults import FaultPlan, parse_faults
    from tools.jobs.job import JobState
    from tools.jobs.worker import Worker

    settings = load_settings(overrides={"worker": {"retry_backoff": 0.01}}, home=anime_home, env={})
    library = CharacterLibrary(settings.paths)
    added = library.add("sakura", PILImage.open(reference_image))
    library.update(added.model_copy(update={"consistency_baseline": 0.99}))
    worker = Worker(settings, FaultPlan(parse_faults("oom@0")))
    runtime = worker.runtime_for(settings)
    flags = decode_flags(runtime.engine)
    specs = runtime.planner.plan(GenerationRequest(character="sakura", count=2, seed=3))
    journal, job_id = submit_job(settings, specs)
    while journal.get(job_id).state != JobState.DONE:
        job = journal.claim(os.getpid())  # None until the retry's short backoff has passed
        if job is None:
            time.sleep(0.01)
        else:
            assert worker.run_job(job) is True
    done = journal.get(job_id)
    assert done.state == JobState.DONE and done.attempts == 2
    assert flags and set(flags) == {(True, True)}


def test_the_hires_decode_is_fitted_at_its_own_size(anime_home, monkeypatch):
    """The first pass fits in memory, the larger hires decode does not: only that one slices
    and tiles (it was decoded with whatever the first pass had decided)."""
    from tools.engine.hires import hires_pass
    from tools.settings import HiresSettings

    engine = Engine(load_settings(home=anime_home, env={}))
    flags = decode_flags(engine)
    # Free memory (the GPU's answer) for a 128×192 decode but not a 192×288 one.
    first = 128 * 192 * rendering._VAE_BYTES_PER_PIXEL
    monkeypatch.setattr(rendering, "free_device_memory", lambda _device: 3 * first)
    job = RenderJob("1girl", "lowres", POSE, None, 1)
    image = engine.render(
        [job], width=128, height=192, ipadapter_weight=0.0, controlnet_strength=0.5
    )[0]
    hires = HiresSettings(scale=1.5, denoise=0.5, steps=2, upscaler="lanczos")
    hires_pass(engine, job, image, hires)
    assert flags == [(False, False), (True, True)]


@pytest.fixture
def many_loras(anime_home: Path, tiny_models: Path) -> list[str]:
    """Five distinct tiny LoRAs in the home's LoRA folder."""
    from evals.tiny_lora import build_tiny_lora

    folder = anime_home / "models" / "lora"
    for seed in range(5):
        build_tiny_lora(tiny_models / "sd15" / "unet", folder / f"style{seed}.safetensors", seed)
    return [f"style{seed}" for seed in range(5)]


def test_loaded_loras_stay_within_the_bound_and_an_evicted_one_draws_the_same_again(
    anime_home, many_loras
):
    """A1111 extensions-builtin/Lora/networks.py keeps `lora_in_memory_limit` LoRAs; here the
    least recently used adapter is deleted (diffusers delete_adapters), reloaded when used again."""
    import numpy as np

    from tools.engine.prompt_syntax import LoraRequest

    engine = Engine(load_settings(home=anime_home, env={}))
    engine.loras.limit = 2

    def draw(name: str) -> np.ndarray:
        job = RenderJob("1girl", "lowres", POSE, None, 1, (LoraRequest(name, 1.0),))
        return np.asarray(
            engine.render(
                [job], width=128, height=192, ipadapter_weight=0.0, controlnet_strength=0.5
            )[0]
        )

    first = {}
    for name in many_loras:
        first[name] = draw(name)
        adapters = engine.pipe.get_list_adapters()
        assert len(engine.loras.loaded) <= 2
        assert all(len(names) <= 2 for names in adapters.values()), adapters
    assert engine.loras.loads == 5
    assert not np.array_equal(first["style0"], first["style1"])
    again = draw("style0")  # evicted three LoRAs ago
    assert engine.loras.loads == 6
    assert np.array_equal(again, first["style0"])


def test_the_prompt_cache_keeps_the_most_recently_used_prompts(anime_home, monkeypatch):
    from tools.engine import conditioning

    monkeypatch.setattr(conditioning, "PROMPT_CACHE_SIZE", 4)
    engine = Engine(load_settings(home=anime_home, env={}))
    cache = engine.ensure_loaded()
    kept = engine.prompt_embedding("1girl")
    for number in range(20):
        engine.prompt_embedding(f"1girl, hat {number}")
        assert engine.prompt_embedding("1girl") is kept  # used again: not dropped
        assert len(cache._prompts) <= 4
    assert engine.prompt_embedding("1girl, hat 0") is not None
    assert len(cache._prompts) == 4


def test_the_reference_cache_keeps_the_most_recently_used_and_an_evicted_one_draws_the_same(
    anime_home, reference_image, monkeypatch
):
    """The in-memory IP-Adapter embeddings grew by one per distinct reference image in a
    long-lived worker; now bounded (tools/engine/lru.py, as the prompt cache), and a dropped
    reference is computed again, to the same image."""
    import shutil

    import numpy as np

    from tools.engine import conditioning

    monkeypatch.setattr(conditioning, "REFERENCE_CACHE_SIZE", 2)
    engine = Engine(load_settings(home=anime_home, env={}))
    references = []
    for number in range(4):
        picture = Image.open(reference_image).convert("RGB")
        picture.putpixel((0, 0), (number, 0, 0))  # a distinct file (another hash) each
        references.append(reference_image.with_name(f"reference{number}.png"))
        picture.save(references[-1])

    def draw(reference: Path) -> np.ndarray:
        job = RenderJob("1girl", "lowres", POSE, reference, 1)
        return np.asarray(
            engine.render(
                [job], width=128, height=192, ipadapter_weight=0.8, controlnet_strength=0.5
            )[0]
        )

    first = [draw(reference) for reference in references]
    cache = engine.ensure_loaded()
    assert len(cache._references) == 2 and engine.encoder_calls == 4
    shutil.rmtree(cache.cache_dir)  # so that the first reference's embedding is computed anew
    assert np.array_equal(draw(references[0]), first[0])
    assert engine.encoder_calls == 5 and len(cache._references) == 2
