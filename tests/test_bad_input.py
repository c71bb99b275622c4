"""Bad input a new user makes: each is exit 1 with one line naming the file and the way out."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from assistant.gen_cli import app
from tests.test_gen_cli import snapshot
from tools.settings import load_settings
from tools.store.gen_index import GenerationIndex
from tools.store.output_store import OutputStore

runner = CliRunner()


def run(*args: str):
    return runner.invoke(app, list(args))


@pytest.fixture
def sakura(anime_home, reference_image):
    result = run("characters", "add", "sakura", "--image", str(reference_image))
    assert result.exit_code == 0, result.output
    return anime_home


def png_header_only(path: Path, width: int, height: int) -> Path:
    """A PNG that claims `width`×`height` (no pixel data needed to trip PIL's bomb check)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b""))
    return path


def test_reference_over_the_pixel_limit_is_one_line(anime_home, tmp_path):
    bomb = png_header_only(tmp_path / "huge.png", 20_000, 20_000)
    assert 2 * Image.MAX_IMAGE_PIXELS < 20_000**2
    before = snapshot(anime_home)
    result = run("characters", "add", "yuki", "--image", str(bomb))
    assert result.exit_code == 1
    assert f"error: reference image has too many pixels to open safely: {bomb}" in result.stderr
    assert "Traceback" not in result.output and "hint: use an image between" in result.stderr
    assert snapshot(anime_home) == before


@pytest.mark.parametrize(
    ("name", "what", "way_out"),
    [
        ("jobs.sqlite", "job journal", "move it aside"),
        ("generations.sqlite", "generation index", "anime-gen index rebuild"),
    ],
)
def test_corrupt_database_stops_before_anything_runs(sakura, name, what, way_out):
    corrupt = sakura / ".anime-chat" / name
    corrupt.parent.mkdir(exist_ok=True)
    corrupt.write_bytes(b"this is not a database" * 100)
    before = snapshot(sakura)
    result = run("sakura", "--pose", "standing", "--seed", "3")
    assert result.exit_code == 1, result.output
    assert f"error: {what} is corrupt: {corrupt}" in result.stderr
    assert way_out in result.stderr and "Traceback" not in result.output
    assert corrupt.read_bytes() == b"this is not a database" * 100
    assert snapshot(sakura) == before
    jobs = run("jobs")
    assert jobs.exit_code == (1 if name == "jobs.sqlite" else 0), jobs.output


def meta(character: str, seed: int, prompt: str, collection: str | None = None) -> dict:
    return {
        "key": f"job:{seed}",
        "request_id": "job",
        "character": character,
        "posture": "standing",
        "pose": {"id": "standing_01", "tags": ["standing"]},
        "prompt": prompt,
        "negative_prompt": "lowres",
        "user_prompt": "",
        "seed": seed,
        "steps": 4,
        "sampler": "Euler a",
        "guidance_scale": 7.0,
        "width": 64,
        "height": 96,
        "model": "sd15",
        "clip_skip": 2,
        "controlnet": "controlnet",
        "controlnet_strength": 1.0,
        "ipadapter": "ip-adapter/ip-adapter_sd15.safetensors",
        "ipadapter_weight": 0.7,
        "collection": collection,
        "scores": {"consistency": 0.9},
    }


def listing(index: GenerationIndex) -> list[tuple]:
    return [
        (
            r["path"],
            r["seed"],
            r["record"]["prompt"],
            r["character"],
            r["accepted"],
            r["collection"],
            r["record"].get("starred"),
        )  # fmt: skip
        for r in index.recent(limit=100, accepted_only=False)
    ]


def test_index_rebuild_restores_the_index_from_the_images(sakura):
    settings = load_settings()
    index_path = settings.paths.state / "generations.sqlite"
    index = GenerationIndex(index_path)
    store = OutputStore(settings, index)
    tile = Image.new("RGB", (64, 96), (200, 120, 140))
    paths = [
        store.save(tile, meta("sakura", 11, "sakura, garden", collection="faves")),
        store.save(tile, meta("sakura", 12, "sakura, beach")),
        store.save(tile, {**meta("sakura", 13, "sakura, rain"), "accepted": False}),
        store.save(tile, {**meta("sakura", 14, "sakura, night"), "starred": True}),
    ]
    trashed = settings.paths.output / ".trash" / paths[1].name
    trashed.parent.mkdir()
    paths[1].rename(trashed)
    with index.transaction() as connection:
        connection.execute(
            "UPDATE images SET path = ? WHERE path = ?", (str(trashed), str(paths[1]))
        )
    before = listing(index)
    index.close()
    # A collection the user made by hand, with a link: membership is read from the view.
    picked = settings.paths.output / "collections" / "picked"
    picked.mkdir(parents=True)
    (picked / paths[3].name).symlink_to(paths[3])
    before = [(*row[:5], "picked", *row[6:]) if row[1] == 14 else row for row in before]

    for suffix in ("", "-wal", "-shm"):
        Path(f"{index_path}{suffix}").unlink(missing_ok=True)
    result = run("index", "rebuild")
    assert result.exit_code == 0, result.output
    assert "4 images (1 rejected, 1 in the trash)" in result.stdout
    after = GenerationIndex(index_path)
    assert listing(after) == before
    assert [r["seed"] for r in after.recent(limit=100, accepted_only=False)] == [14, 13, 12, 11]
    trashed_row = next(r for r in after.recent(limit=100) if r["seed"] == 12)
    assert trashed_row["record"]["trashed"] is True and trashed_row["path"] == str(trashed)
    assert not list(index_path.parent.glob(".generations.sqlite.rebuild-*"))

    # And over a corrupt index: the way out the error names works.
    index_path.write_bytes(b"garbage")
    assert run("index", "rebuild").exit_code == 0
    assert listing(GenerationIndex(index_path)) == before
