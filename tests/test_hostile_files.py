"""Files in the output folder that the gallery and `index rebuild` must survive: a partial
record, a decompression bomb, a record whose names would build paths outside the home."""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import pytest
from PIL import Image, PngImagePlugin

from evals.gallery_bench import synthetic_meta
from tests.test_gallery import client, home, listed  # noqa: F401  (fixtures)
from tools.settings import load_settings
from tools.store.index_rebuild import rebuild_index
from tools.store.output_store import METADATA_KEY


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def bomb_png(path: Path) -> Path:
    """A tiny file whose header declares 20000×20000 pixels."""
    header = struct.pack(">IIBBBBB", 20000, 20000, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IEND", b""))
    return path


def png_with_record(path: Path, record: dict) -> Path:
    info = PngImagePlugin.PngInfo()
    info.add_text(METADATA_KEY, json.dumps(record))
    Image.new("RGB", (16, 16), (10, 20, 30)).save(path, pnginfo=info)
    return path


def hostile_files(root: Path) -> list[Path]:
    day = root / "anime-output" / "2026-01-01"
    day.mkdir(parents=True, exist_ok=True)
    partial = {"character": "sakura", "posture": "standing", "pose": "standing", "seed": 1}
    deep = day / "deep.png"  # a record nested past Python's recursion limit
    header = _chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0))
    text = _chunk(b"tEXt", METADATA_KEY.encode() + b"\x00" + b"[" * 100_000 + b"]" * 100_000)
    deep.write_bytes(b"\x89PNG\r\n\x1a\n" + header + text + _chunk(b"IEND", b""))
    bad_zlib = day / "bad-zlib.png"  # a zTXt chunk whose data is not zlib
    text = _chunk(b"zTXt", METADATA_KEY.encode() + b"\x00\x00not zlib")
    bad_zlib.write_bytes(b"\x89PNG\r\n\x1a\n" + header + text + _chunk(b"IEND", b""))
    return [
        bomb_png(day / "bomb.png"),
        png_with_record(day / "partial.png", partial),
        deep,
        bad_zlib,
    ]


def test_a_bomb_and_a_partial_record_do_not_take_the_gallery_down(client, home):  # noqa: F811
    before = len(listed(client))
    hostile_files(home)
    assert client.post("/api/gallery/reconcile", json={}).status_code == 200
    assert client.get("/api/images").status_code == 200
    assert client.get("/gallery").status_code == 200
    assert len(listed(client)) == before


def test_index_rebuild_skips_and_names_a_bomb_and_a_partial_record(home):  # noqa: F811
    skipped = hostile_files(home)
    report = rebuild_index(load_settings(home=home, env={}))
    assert sorted(report.skipped) == sorted(skipped)
    assert report.images == 5


def test_names_in_a_record_never_build_folders_outside_the_home(client, home, tmp_path):  # noqa: F811
    meta = synthetic_meta(9, "sakura", ("standing", ["standing"]), "crafted", False)
    meta.update(character="../../../escaped", collection="../../../escaped_too")
    png_with_record(home / "anime-output" / "crafted.png", meta)
    client.post("/api/gallery/reconcile", json={})
    for image in listed(client, trashed="1") + listed(client, rejected="1"):
        image_id = image["id"]
        client.post(f"/api/images/{image_id}/keep", json={})
        client.post(f"/api/images/{image_id}/trash", json={})
        client.post(f"/api/images/{image_id}/restore", json={})
    outside = [p for p in tmp_path.rglob("*escaped*")]
    assert all(home / "anime-output" in p.parents for p in outside), outside


def test_many_compressed_text_chunks_are_refused_not_inflated(tmp_path):
    """Each zTXt under the per-chunk cap, but nine of them: 72 MiB of text from a 74 KB file.
    PIL caps the total too (PngImagePlugin's MAX_TEXT_MEMORY, 64 MiB)."""
    from tools.store.index_rebuild import valid_record
    from tools.store.png_text import MAX_TEXT_BYTES, read_png_text

    inflates = zlib.compress(b"a" * (MAX_TEXT_BYTES - 1), 9)
    texts = b"".join(_chunk(b"zTXt", b"k%d\x00\x00" % i + inflates) for i in range(9))
    header = _chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0))
    path = tmp_path / "many.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + header + texts + _chunk(b"IEND", b""))
    with pytest.raises(ValueError, match="text"):
        read_png_text(path)
    assert valid_record(path) is None


def test_an_indexed_image_whose_file_was_damaged_still_shows(client, home):  # noqa: F811
    image = listed(client)[0]
    Path(image["path"]).write_bytes(b"not a png any more")
    for url in (f"/api/images/{image['id']}", f"/gallery/image/{image['id']}"):
        assert client.get(url).status_code == 200, url


@pytest.mark.parametrize(
    "chunk", [b"anime-chat\x00\x01\x00\x00\x00not zlib", b"anime-chat\x00"], ids=["zlib", "short"]
)
def test_a_mark_on_a_file_with_a_malformed_second_record_chunk(client, chunk):  # noqa: F811
    image = listed(client)[0]
    path = Path(image["path"])
    data = path.read_bytes()
    end = data.rindex(b"IEND") - 4
    path.write_bytes(data[:end] + _chunk(b"iTXt", chunk) + data[end:])
    answer = client.post(f"/api/images/{image['id']}/star", json={"starred": True})
    assert answer.status_code == 200 and answer.json()["starred"]


def test_a_damaged_compressed_text_chunk_is_a_value_error(tmp_path):
    from tools.store.png_text import read_png_text

    path = hostile_files(tmp_path)[3]
    with pytest.raises(ValueError, match="compressed"):
        read_png_text(path)


def test_a_thumbnail_of_a_file_replaced_by_a_bomb_or_a_fifo_is_404(client):  # noqa: F811
    import os
    import threading

    first, second = listed(client)[:2]
    bomb_png(Path(first["path"]))
    fifo = Path(second["path"])
    fifo.unlink()
    os.mkfifo(fifo)  # opened for reading, it would block until a writer came
    answers = {}

    def ask() -> None:
        for image in (first, second):
            answers[image["id"]] = client.get(f"/api/images/{image['id']}/thumb").status_code

    asking = threading.Thread(target=ask, daemon=True)
    asking.start()
    asking.join(120)  # a hang guard only
    if asking.is_alive():
        with open(fifo, "wb"):  # let the blocked reader go
            pass
    assert answers == {first["id"]: 404, second["id"]: 404}
