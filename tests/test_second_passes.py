"""Hires fix and face detail (tools/engine/hires.py, face_detail.py) on the tiny models."""

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from assistant.gen_cli import app
from tools.engine import derived_pipelines
from tools.engine.face_detail import face_detail_pass
from tools.engine.hires import hires_size
from tools.engine.rendering import Engine, RenderJob
from tools.settings import FaceDetailSettings, load_settings
from tools.store.png_info import parse_a1111, read_png_info

runner = CliRunner()


def test_hires_size_rounds_to_multiples_of_8():
    assert hires_size(128, 192, 1.5) == (192, 288)
    assert hires_size(512, 768, 1.3) == (664, 1000)
    assert hires_size(100, 100, 1.25) == (128, 128)


@pytest.fixture
def sakura(anime_home, reference_image):
    result = runner.invoke(app, ["characters", "add", "sakura", "--image", str(reference_image)])
    assert result.exit_code == 0, result.output
    return anime_home


@pytest.mark.slow
def test_hires_and_face_detail_flags_write_the_upscaled_size_and_record_both(sakura):
    result = runner.invoke(
        app,
        [
            "sakura",
            "--pose",
            "standing",
            "--seed",
            "5",
            "--hires",
            "1.5",
            "--face-detail",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    path = Path(json.loads(result.stdout)["outputs"][0]["path"])
    with Image.open(path) as png:
        assert png.size == (192, 288)
        parameters = png.text["parameters"]
    ours = read_png_info(path)
    assert (ours["width"], ours["height"]) == (128, 192)  # the base size, like A1111's Size
    assert ours["hires"] == {
        "scale": 1.5,
        "denoise": 0.5,
        "steps": 4,
        "upscaler": "latent",
        "width": 192,
        "height": 288,
    }
    theirs = parse_a1111(parameters)
    assert theirs["Hires upscale"] == "1.5"
    assert theirs["Hires steps"] == "4"
    assert theirs["Hires upscaler"] == "Latent"
    assert theirs["Denoising strength"] == "0.5"
    assert (theirs["width"], theirs["height"]) == (128, 192)
    # --face-detail reached the worker: the real detector ran on the final image.
    detail = ours["face_detail"]
    assert detail["model"] == "animeface" and detail["applied"] is bool(detail["faces"])
    if not detail["applied"]:
        assert theirs["Face detail"] == "no face found" and "ADetailer model" not in theirs
    # Without the flags, --from-png turns both passes on again: the same pixels.
    again = runner.invoke(app, ["--from-png", str(path), "--json"])
    assert again.exit_code == 0, again.output
    copy = Path(json.loads(again.stdout)["outputs"][0]["path"])
    assert np.array_equal(np.asarray(Image.open(copy)), np.asarray(Image.open(path)))


def _face_at(box):
    """A stand-in for `animeface.detect`: one face at `box` (x, y, w, h), or none."""

    def detect(_image):
        if box is None:
            return []
        x, y, width, height = box
        position = SimpleNamespace(x=x, y=y, width=width, height=height)
        return [SimpleNamespace(face=SimpleNamespace(pos=position), likelihood=0.9)]

    return detect


@pytest.fixture(scope="module")
def warm(tmp_path_factory, tiny_models):
    """A home holding `sakura`, one warm tiny engine on it and a first-pass image
    (module-scoped: the face detail tests share the engine load)."""
    import shutil

    from evals.tiny_models import CONFIG_NAME
    from tools.characters.library import CharacterLibrary
    from tools.settings import CONFIG_FILENAME

    home = tmp_path_factory.mktemp("second-passes")
    shutil.copyfile(tiny_models / CONFIG_NAME, home / CONFIG_FILENAME)
    settings = load_settings(home=home, env={})
    CharacterLibrary(settings.paths).add("sakura", Image.new("RGB", (96, 128), (240, 200, 210)))
    engine = Engine(settings)
    job = RenderJob("1girl, smile", "lowres", Image.new("RGB", (128, 192)), None, 3)
    image = engine.render(
        [job], width=128, height=192, ipadapter_weight=0.9, controlnet_strength=0.5
    )[0]
    return SimpleNamespace(home=home, engine=engine, job=job, image=image)


@pytest.mark.slow
def test_face_detail_redraws_inside_the_face_box_only(warm, monkeypatch):
    animeface = pytest.importorskip("animeface")
    engine, job, image = warm.engine, warm.job, warm.image
    box = (40, 30, 40, 40)
    monkeypatch.setattr(animeface, "detect", _face_at(box))
    detail = FaceDetailSettings(mask_blur=2)
    redrawn, record = face_detail_pass(engine, job, image, detail)
    assert record["applied"] is True
    assert record["faces"] == [list(box)]
    before, after = np.asarray(image).astype(int), np.asarray(redrawn).astype(int)
    assert redrawn.size == image.size
    changed = np.abs(before - after).sum(axis=2) > 0
    x, y, width, height = box
    reach = 4 * detail.mask_blur  # dilated by the blur, then blurred (~3 radii of spread)
    outside = np.ones_like(changed)
    outside[y - reach : y + height + reach, x - reach : x + width + reach] = False
    assert not changed[outside].any()
    assert changed[y : y + height, x : x + width].mean() > 0.5


@pytest.mark.slow
def test_each_face_is_its_own_crop_and_pass_with_seed_plus_j(warm, monkeypatch):
    """Issue 23 #3, as ADetailer's scripts/!adetailer.py fix_p2: two faces, two inpaint passes,
    each masked to its own face, with seeds seed and seed + 1, the second on the first's output."""
    from tools.engine import face_detail

    animeface = pytest.importorskip("animeface")
    engine, job, image = warm.engine, warm.job, warm.image
    boxes = [(8, 10, 32, 32), (80, 120, 32, 32)]

    def detect(_image):
        return [
            SimpleNamespace(
                face=SimpleNamespace(pos=SimpleNamespace(x=x, y=y, width=w, height=h)),
                likelihood=0.9,
            )
            for x, y, w, h in boxes
        ]

    monkeypatch.setattr(animeface, "detect", detect)
    calls = []

    class Spy:
        def __init__(self, pipe):
            self.pipe = pipe

        def __getattr__(self, name):
            return getattr(self.pipe, name)

        def __call__(self, **kwargs):
            calls.append(kwargs["generator"].initial_seed())
            return self.pipe(**kwargs)

    real = face_detail.derived_pipeline
    monkeypatch.setattr(face_detail, "derived_pipeline", lambda *a: Spy(real(*a)))
    # What each pass crops: its image (RGB) and its mask (L), before the crop.
    cropped = []
    fill = face_detail._fill
    monkeypatch.setattr(face_detail, "_fill", lambda *args: cropped.append(args[1]) or fill(*args))
    redrawn, record = face_detail_pass(engine, job, image, FaceDetailSettings(mask_blur=0))
    assert record["faces"] == [list(box) for box in boxes]
    masks = [picture.getbbox() for picture in cropped if picture.mode == "L"]
    inputs = [picture for picture in cropped if picture.mode == "RGB"]
    assert list(zip(masks, calls, strict=True)) == [
        ((8, 10, 41, 43), job.seed),
        ((80, 120, 113, 153), job.seed + 1),
    ]
    assert not np.array_equal(np.asarray(inputs[1]), np.asarray(image.convert("RGB")))
    changed = np.abs(np.asarray(redrawn).astype(int) - np.asarray(image).astype(int)).sum(axis=2)
    between = changed[50:110, 50:70]  # between the two faces: neither crop's mask
    assert not between.any() and changed[10:42, 8:40].any() and changed[120:152, 80:112].any()


@pytest.mark.slow
def test_face_detail_without_a_face_keeps_the_image(warm, monkeypatch):
    animeface = pytest.importorskip("animeface")
    engine, job, image = warm.engine, warm.job, warm.image
    monkeypatch.setattr(animeface, "detect", _face_at(None))
    kept, record = face_detail_pass(engine, job, image, FaceDetailSettings())
    assert kept is image
    assert record["applied"] is False and record["faces"] == []


@pytest.mark.slow
def test_face_detail_setting_records_adetailer_keys_in_the_saved_png(warm, monkeypatch):
    from tools.generation.runtime import Runtime
    from tools.generation.specs import GenerationRequest

    animeface = pytest.importorskip("animeface")
    monkeypatch.setattr(animeface, "detect", _face_at((40, 30, 40, 40)))
    settings = load_settings(overrides={"output": {"face_detail": True}}, home=warm.home, env={})
    runtime = Runtime(settings, engine=warm.engine)  # as the worker shares its warm engine
    request = GenerationRequest(character="sakura", random_pose=True, seed=7)
    record = runtime.producer.produce(runtime.planner.plan(request)[0])
    ours = read_png_info(Path(record.path))
    assert ours["face_detail"]["applied"] is True
    assert ours["face_detail"]["faces"] == [[40, 30, 40, 40]]
    with Image.open(record.path) as png:
        theirs = parse_a1111(png.text["parameters"])
    assert theirs["ADetailer model"] == "animeface"
    assert theirs["ADetailer confidence"] == "0.3"
    assert theirs["ADetailer denoising strength"] == "0.4"
    assert theirs["ADetailer mask blur"] == "4"
    assert theirs["ADetailer inpaint padding"] == "32"


@pytest.mark.slow
def test_derived_pipelines_keep_the_warm_dtype_and_share_modules(warm):
    engine = warm.engine
    img2img = derived_pipelines.derived_pipeline(engine, "img2img")
    inpaint = derived_pipelines.derived_pipeline(engine, "inpaint")
    assert img2img.unet is engine.pipe.unet and inpaint.vae is engine.pipe.vae
    assert img2img.controlnet is engine.pipe.controlnet
    assert derived_pipelines.derived_pipeline(engine, "img2img") is img2img


@pytest.mark.parametrize(
    ("steps", "denoise"), [(25, 0.5), (15, 0.5), (12, 0.3), (7, 0.75), (20, 1.0)]
)
def test_hires_schedule_runs_exactly_the_hires_steps_as_a1111(steps, denoise):
    # A1111 modules/sd_samplers_common.py setup_img2img_steps (steps given): total =
    # int(steps / min(denoise, 0.999)), t_enc = steps - 1; diffusers runs int(total * strength).
    total, strength = derived_pipelines.a1111_hires_schedule(steps, denoise)
    assert total == max(steps, int(steps / min(denoise, 0.999)))
    assert min(int(total * strength), total) == steps


@pytest.mark.slow
def test_hires_pass_runs_and_records_the_hires_steps_whatever_the_denoise(warm):
    from tools.engine.hires import hires_pass
    from tools.settings import HiresSettings

    reported: list[tuple[int, int]] = []
    hires = HiresSettings(scale=1.5, denoise=0.3, steps=5, upscaler="lanczos")
    image, record = hires_pass(
        warm.engine, warm.job, warm.image, hires, lambda *step: reported.append(step)
    )
    assert reported == [(step, 5) for step in range(1, 6)]
    assert record["steps"] == 5 and image.size == (192, 288)


@pytest.mark.slow
def test_hires_at_denoise_0_is_the_upscale_without_a_step(warm):
    """A1111 accepts a hires `denoising_strength` of 0 (`setup_img2img_steps`: 0 steps, the
    sigmas [0], so its sampler loop runs no step): the upscale comes back. It was a 422
    (output.hires.denoise > 0), and a1111_hires_schedule divides by it."""
    from tools.engine.hires import hires_pass
    from tools.settings import HiresSettings

    reported: list[tuple[int, int]] = []

    def on_step(step: int, steps: int) -> None:
        reported.append((step, steps))

    for upscaler in ("lanczos", "latent"):
        hires = HiresSettings(scale=1.5, denoise=0.0, steps=5, upscaler=upscaler)
        image, record = hires_pass(warm.engine, warm.job, warm.image, hires, on_step)
        assert record["steps"] == 0 and image.size == (192, 288), upscaler
        if upscaler == "lanczos":
            expected = warm.image.convert("RGB").resize((192, 288), Image.Resampling.LANCZOS)
            assert image.tobytes() == expected.tobytes()
    assert reported == []


class _OverflowingHalfVae(torch.nn.Module):
    """A VAE that says it is in fp16 and decodes NaN there (an anime VAE overflowing), the real
    tiny one's image once cast to fp32: what tests/test_prompt_models.py's HalfVae simulates for
    the base pass, around the real VAE so a whole inpaint pass runs on it."""

    def __init__(self, vae):
        super().__init__()
        self.inner = vae
        self.half = True
        self.decodes = 0

    @property
    def config(self):
        return self.inner.config

    @property
    def dtype(self):
        return torch.float16 if self.half else torch.float32

    @property
    def device(self):
        return self.inner.device

    def to(self, *args, dtype=None, **kwargs):
        if dtype is not None:
            self.half = dtype == torch.float16
        return self

    def encode(self, pixels, *args, **kwargs):
        return self.inner.encode(pixels.float(), *args, **kwargs)

    def decode(self, latents, *args, **kwargs):
        self.decodes += 1
        if self.half:
            return (torch.full((latents.shape[0], 3, *latents.shape[-2:]), float("nan")),)
        return self.inner.decode(latents.float(), *args, **kwargs)


@pytest.mark.slow
def test_face_detail_redoes_an_overflowing_half_precision_decode_in_fp32(warm, monkeypatch):
    """Issue 23 (suspected, confirmed): the inpaint pipeline decoded in the VAE's dtype (diffusers
    pipelines/stable_diffusion/pipeline_stable_diffusion_inpaint.py: no upcast, no NaN check), so
    an fp16 overflow pasted a black face; it now decodes as the base pass (vae.decode_latents)."""
    animeface = pytest.importorskip("animeface")
    engine, job, image = warm.engine, warm.job, warm.image
    monkeypatch.setattr(animeface, "detect", _face_at((40, 30, 40, 40)))
    detail = FaceDetailSettings(mask_blur=2)
    expected, _ = face_detail_pass(engine, job, image, detail)
    inpaint = derived_pipelines.derived_pipeline(engine, "inpaint")
    monkeypatch.setattr(inpaint, "vae", _OverflowingHalfVae(inpaint.vae))
    redecodes = engine.vae_redecodes
    redrawn, _ = face_detail_pass(engine, job, image, detail)
    assert engine.vae_redecodes == redecodes + 1
    assert np.array_equal(np.asarray(redrawn), np.asarray(expected))


@pytest.mark.slow
def test_a_vae_that_overflowed_once_decodes_in_fp32_from_then_on(warm, monkeypatch):
    """A1111 modules/processing.py `decode_latent_batch` (`auto_vae_precision`) converts the VAE
    to fp32 after a NaN decode and keeps it there; ours went back to fp16 after each redo, so
    every later decode ran twice. The VAE stays fp16 between decodes: the img2img and inpaint
    pipelines encode their fp16 inputs with it."""
    animeface = pytest.importorskip("animeface")
    engine, job, image = warm.engine, warm.job, warm.image
    monkeypatch.setattr(animeface, "detect", _face_at((40, 30, 40, 40)))
    detail = FaceDetailSettings(mask_blur=2)
    expected, _ = face_detail_pass(engine, job, image, detail)
    inpaint = derived_pipelines.derived_pipeline(engine, "inpaint")
    vae = _OverflowingHalfVae(inpaint.vae)
    monkeypatch.setattr(inpaint, "vae", vae)
    redecodes = engine.vae_redecodes
    first, _ = face_detail_pass(engine, job, image, detail)
    assert vae.decodes == 2 and engine.vae_redecodes == redecodes + 1
    again, _ = face_detail_pass(engine, job, image, detail)
    assert vae.decodes == 3 and engine.vae_redecodes == redecodes + 1
    assert vae.half
    assert np.array_equal(np.asarray(again), np.asarray(first))
    assert np.array_equal(np.asarray(first), np.asarray(expected))


@pytest.mark.slow
def test_face_detail_crop_is_diffusers_padding_mask_crop(warm, monkeypatch):
    """The crop, fill and paste done outside the pipeline (so that the engine decodes) give
    what diffusers' own `padding_mask_crop` gives with an fp32 VAE, pixel for pixel."""
    from tools.engine.derived_pipelines import at_least_one_step, conditioning
    from tools.engine.face_detail import face_mask

    animeface = pytest.importorskip("animeface")
    engine, job, image = warm.engine, warm.job, warm.image
    box = (40, 30, 40, 40)
    monkeypatch.setattr(animeface, "detect", _face_at(box))
    detail = FaceDetailSettings(mask_blur=2)
    ours, _ = face_detail_pass(engine, job, image, detail)
    pipe = derived_pipelines.derived_pipeline(engine, "inpaint")
    mask = face_mask(image.size, [SimpleNamespace(x=40, y=30, width=40, height=40)], 2)
    mask = pipe.mask_processor.blur(mask, blur_factor=2)
    steps = at_least_one_step(engine.sampling.steps, detail.denoise)
    with torch.inference_mode():
        theirs = pipe(
            **conditioning(engine, job, pipe, steps)[0],
            image=image.convert("RGB"),
            mask_image=mask,
            padding_mask_crop=detail.padding,
            strength=detail.denoise,
            num_inference_steps=steps,
            width=image.width,
            height=image.height,
        ).images[0]
    assert np.array_equal(np.asarray(ours), np.asarray(theirs))
