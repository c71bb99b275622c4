"""A1111's LoRA hashes (tools/engine/lora_hashes.py) on the tiny LoRA the fixture ships."""

import hashlib
import json
import shutil
import struct

from safetensors.torch import load_file, save_file

from evals.tiny_models import EMBEDDING_NAME, LORA_NAME
from tools.engine.lora_hashes import addnet_hash, embedding_hashes, lora_hashes
from tools.engine.prompt_syntax import LoraRequest
from tools.settings import load_settings


def test_hash_is_sha256_after_the_header_and_ignores_metadata(tiny_models, tmp_path):
    source = tiny_models / "lora" / f"{LORA_NAME}.safetensors"
    data = source.read_bytes()
    (header_size,) = struct.unpack("<Q", data[:8])
    assert addnet_hash(source) == hashlib.sha256(data[8 + header_size :]).hexdigest()
    retagged = tmp_path / "retagged.safetensors"
    save_file(load_file(str(source)), str(retagged), metadata={"ss_output_name": "other"})
    assert addnet_hash(retagged) == addnet_hash(source)


def test_a_stored_sshs_hash_wins(tiny_models, tmp_path):
    tensors = load_file(str(tiny_models / "lora" / f"{LORA_NAME}.safetensors"))
    stored = tmp_path / "stored.safetensors"
    save_file(tensors, str(stored), metadata={"sshs_model_hash": "f" * 64})
    assert addnet_hash(stored) == "f" * 64


def test_short_hashes_by_name_for_local_files_only(tiny_models, tmp_path):
    paths = load_settings(env={}, home=tmp_path).paths
    (paths.models / "lora").mkdir(parents=True)
    shutil.copy(tiny_models / "lora" / f"{LORA_NAME}.safetensors", paths.models / "lora")
    loras = (LoraRequest(LORA_NAME, 0.8), LoraRequest("someone/hub-lora", 1.0))
    hashes = lora_hashes(loras, paths)
    assert list(hashes) == [LORA_NAME]
    assert hashes[LORA_NAME] == addnet_hash(paths.models / "lora" / f"{LORA_NAME}.safetensors")[:12]
    assert json.dumps(hashes)  # plain data for the metadata chunk


def test_an_image_records_its_lora_hashes_in_a1111_spelling(anime_home, tiny_models):
    from PIL import Image

    from tools.generation.runtime import Runtime
    from tools.generation.specs import GenerationRequest
    from tools.store.metadata import ImageMetadata
    from tools.store.output_store import png_parameters

    settings = load_settings(overrides={"models": {"loras": f"{LORA_NAME}:0.8"}})
    lora = settings.paths.models / "lora" / f"{LORA_NAME}.safetensors"
    lora.parent.mkdir(parents=True)
    shutil.copy(tiny_models / "lora" / lora.name, lora)
    runtime = Runtime(settings)
    runtime.characters.add("sakura", Image.new("RGB", (96, 128), (240, 200, 210)))
    request = GenerationRequest(character="sakura", random_pose=True, seed=1)
    spec = runtime.planner.plan(request)[0]
    meta = runtime.producer.metadata(spec, spec.seed)
    short = addnet_hash(lora)[:12]
    assert meta["lora_hashes"] == {LORA_NAME: short}
    assert f'Lora hashes: "{LORA_NAME}: {short}"' in png_parameters(ImageMetadata.of(meta))


def test_an_image_records_its_embeddings_ti_hashes_as_a1111(anime_home, tiny_models):
    """Issue 23 #10: A1111 modules/sd_hijack_clip.py forward writes `TI hashes` (the whole
    file's SHA-256, 12 digits: textual_inversion.py set_hash), which Civitai reads."""
    from PIL import Image

    from tools.generation.runtime import Runtime
    from tools.generation.specs import GenerationRequest
    from tools.store.metadata import ImageMetadata
    from tools.store.output_store import png_parameters
    from tools.store.png_info import parse_a1111

    folder = anime_home / "models" / "embeddings"
    folder.mkdir(parents=True)
    for file in (tiny_models / "embeddings").iterdir():
        shutil.copy(file, folder / file.name)
    embedding = next(folder.glob(f"{EMBEDDING_NAME}.*"))
    short = hashlib.sha256(embedding.read_bytes()).hexdigest()[:12]
    paths = load_settings().paths
    assert embedding_hashes([EMBEDDING_NAME, "not-installed"], paths) == {EMBEDDING_NAME: short}
    runtime = Runtime(load_settings(overrides={"output": {"negative_prompt": EMBEDDING_NAME}}))
    runtime.characters.add("sakura", Image.new("RGB", (96, 128), (240, 200, 210)))
    spec = runtime.planner.plan(GenerationRequest(character="sakura", random_pose=True, seed=1))[0]
    meta = runtime.producer.metadata(spec, spec.seed)
    assert meta["ti_hashes"] == {EMBEDDING_NAME: short}
    parameters = png_parameters(ImageMetadata.of(meta))
    assert f'TI hashes: "{EMBEDDING_NAME}: {short}"' in parameters
    assert parse_a1111(parameters)["ti_hashes"] == {EMBEDDING_NAME: short}
