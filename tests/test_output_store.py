import json
import multiprocessing
from pathlib import Path

import pytest
from PIL import Image

from tools.settings import load_settings
from tools.store.gen_index import GenerationIndex
from tools.store.output_store import OutputStore, read_png_metadata


def make_store(home: Path) -> OutputStore:
    settings = load_settings(env={}, home=home)
    return OutputStore(settings, GenerationIndex(settings.paths.state / "generations.sqlite"))


def meta(character: str = "sakura", posture: str = "standing", **extra) -> dict:
    return {
        "character": character,
        "posture": posture,
        "pose": {"id": f"{posture}_basic", "tags": [posture]},
        "prompt": "masterpiece, sakura",
        "negative_prompt": "lowres",
        "seed": 7,
        "steps": 4,
        "sampler": "Euler a",
        "guidance_scale": 7.0,
        "width": 64,
        "height": 64,
        "model": "tiny",
        "clip_skip": 2,
        "controlnet": "cn",
        "controlnet_strength": 0.5,
        "ipadapter": "ip",
        "ipadapter_weight": 0.95,
        **extra,
    }


def image(colour: str = "red") -> Image.Image:
    return Image.new("RGB", (64, 64), colour)


def test_names_count_per_character_and_posture(tmp_path):
    store = make_store(tmp_path)
    paths = [store.save(image(), meta()) for _ in range(3)]
    other = store.save(image(), meta(posture="sitting"))
    assert [p.name for p in paths] == [f"sakura_standing_00{i}.png" for i in (1, 2, 3)]
    assert other.name == "sakura_sitting_001.png"
    assert paths[0].parent.parent == tmp_path / "anime-output"


def test_never_overwrites_files_it_did_not_write(tmp_path):
    store = make_store(tmp_path)
    folder = store.folder_for(accepted=True)
    folder.mkdir(parents=True)
    (folder / "sakura_standing_001.png").write_bytes(b"someone else's")
    path = store.save(image(), meta())
    assert path.name == "sakura_standing_002.png"
    assert (folder / "sakura_standing_001.png").read_bytes() == b"someone else's"


def test_parameters_chunk_and_views(tmp_path):
    store = make_store(tmp_path)
    path = store.save(image(), meta(collection="beach"))
    text = read_png_metadata(path)
    assert text["parameters"].startswith("masterpiece, sakura\nNegative prompt: lowres\n")
    for field in (
        "Steps: 4",
        "Sampler: Euler a",
        "CFG scale: 7.0",
        "Seed: 7",
        "Size: 64x64",
        "Model: tiny",
        "Pose: standing_basic",
        "IP-Adapter weight: 0.95",
        "Schedule type: Uniform",
        'ControlNet 0: "Module: none, Model: cn, Weight: 0.5"',
    ):
        assert field in text["parameters"]
    assert json.loads(text["anime-chat"])["path"] == str(path)
    assert (
        tmp_path / "anime-output" / "characters" / "sakura"
    ).iterdir().__next__().resolve() == path
    assert next((tmp_path / "anime-output" / "collections" / "beach").iterdir()).resolve() == path


def test_same_key_rewrites_same_path(tmp_path):
    store = make_store(tmp_path)
    first = store.save(image("red"), meta(), key="job1:0")
    again = store.save(image("blue"), meta(), key="job1:0")
    assert first == again
    assert len(list(first.parent.glob("*.png"))) == 1
    assert store.index.by_key("job1:0")["status"] == "saved"


def test_rejected_images_go_to_rejected(tmp_path):
    store = make_store(tmp_path)
    path = store.save(image(), meta(accepted=False))
    assert "rejected" in path.parts
    assert not (tmp_path / "anime-output" / "characters").exists()


def _save_many(home: str, count: int) -> None:
    store = make_store(Path(home))
    for _ in range(count):
        store.save(image(), meta())


def test_concurrent_processes_never_clash(tmp_path):
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_save_many, args=(str(tmp_path), 5)) for _ in range(3)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
        assert worker.exitcode == 0
    names = sorted(p.name for p in make_store(tmp_path).folder_for(True).glob("*.png"))
    assert names == [f"sakura_standing_{i:03d}.png" for i in range(1, 16)]


def test_stale_temp_files_from_killed_writes_are_swept(tmp_path):
    import os
    import time

    store = make_store(tmp_path)
    kept = store.save(image(), meta())
    stale = kept.parent / ".sakura_standing_002.png.abc.tmp"
    fresh = kept.parent / ".sakura_standing_003.png.def.tmp"
    stale.write_bytes(b"half")
    fresh.write_bytes(b"being written")
    old = time.time() - 3600
    os.utime(stale, (old, old))
    assert store.sweep_stale_temp_files(older_than=600) == 1
    assert not stale.exists() and fresh.exists() and kept.exists()


def test_index_records_carry_their_final_path(tmp_path):
    store = make_store(tmp_path)
    path = store.save(image(), meta())
    (row,) = store.index.recent()
    assert row["record"]["path"] == str(path) == row["path"]


def producer_meta() -> dict:
    """A record in the producer's own key order (Producer.metadata, then the gate's fields),
    with every optional field it writes."""
    base = meta()
    return {
        "key": "job9:0",
        "request_id": "job9",
        **{name: base[name] for name in ("character", "posture", "pose", "prompt")},
        "negative_prompt": "lowres",
        "user_prompt": "in the rain",
        **{name: base[name] for name in list(base)[5:]},
        "collection": "beach",
        "loras": [{"name": "style", "weight": 0.8}],
        "lora_hashes": {"style": "0123456789ab"},
        "embeddings": ["EasyNegative"],
        "vae": "kl-f8-anime",
        "fast_lora": "hyper-sd",
        "hires": {"denoise": 0.5, "scale": 1.5, "steps": 10, "upscaler": "latent"},
        "scores": {"consistency": 0.91, "face": None, "aesthetic": None, "palette": 0.88},
        "accepted": True,
        "attempts": 2,
        "output": {"path": None, "seed": 7, "rejected": ["x.png"]},
    }


def test_png_chunk_and_index_record_keep_the_exact_json_of_the_metadata(tmp_path):
    """ImageMetadata is typed but the bytes are contract: the PNG chunk is the record plus its
    path, the index's record column the record itself, field order included."""
    store = make_store(tmp_path)
    record = producer_meta()
    path = store.save(image(), record, key="job9:0")
    assert read_png_metadata(path)["anime-chat"] == json.dumps({**record, "path": str(path)})
    with store.index.transaction() as connection:
        (raw,) = connection.execute("SELECT record FROM images").fetchone()
    assert raw == json.dumps(record)
    assert read_png_metadata(path)["parameters"] == (
        "masterpiece, sakura\nNegative prompt: lowres\nSteps: 4, Sampler: Euler a, Schedule type:"
        " Uniform, CFG scale: 7.0, Seed: 7, Size: 64x64, Model: tiny, Clip skip: 2, Denoising"
        " strength: 0.5, Hires upscale: 1.5, Hires steps: 10, Hires upscaler: Latent, Lora hashes:"
        ' "style: 0123456789ab", Lora weights: "style: 0.8", VAE: kl-f8-anime,'
        ' ControlNet 0: "Module: none, Model: cn, Weight: 0.5",'
        " IP-Adapter: ip, IP-Adapter weight: 0.95, Pose: standing_basic, Pose tags: standing,"
        ' Character: sakura, Loras: "style:0.8", Embeddings: EasyNegative,'
        " Consistency: 0.91, Palette: 0.88"
    )
    assert read_png_metadata(path)["parameters"].count("VAE:") == 1  # once, as A1111 writes it


def test_metadata_missing_a_field_the_png_needs_is_refused_before_anything_is_written(tmp_path):
    from pydantic import ValidationError

    store = make_store(tmp_path)
    incomplete = meta()
    del incomplete["steps"]
    with pytest.raises(ValidationError):
        store.save(image(), incomplete)
    assert not (tmp_path / "anime-output").exists()
