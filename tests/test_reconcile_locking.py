"""Reconcile reads files with no lock held, reads no pixels, and reads a foreign file once."""

from __future__ import annotations

import contextlib
import os
import sqlite3
from pathlib import Path

from PIL import Image

from tests.test_gallery import home  # noqa: F401  (fixtures)
from tests.test_hostile_files import png_with_record
from tools.gallery import reconcile as reconcile_module
from tools.gallery.catalog import Catalog
from tools.store.png_text import read_png_text


def foreign_files(root: Path, count: int) -> list[Path]:
    day = root / "anime-output" / "2026-02-02"
    day.mkdir(parents=True, exist_ok=True)
    return [png_with_record(day / f"foreign_{n}.png", {"not": "ours"}) for n in range(count)]


def catalog(root: Path) -> Catalog:
    return Catalog(root / "anime-output", root / ".anime-chat")


def test_a_writer_is_never_blocked_while_reconcile_reads_files(home, monkeypatch):  # noqa: F811
    foreign_files(home, 3)
    records = catalog(home)
    database = home / ".anime-chat" / "generations.sqlite"
    real_read = reconcile_module.valid_record
    writes: list[str] = []

    def read_and_try_to_write(path):
        other = sqlite3.connect(database, timeout=0, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")  # raises "database is locked" if reconcile holds it
            other.execute("ROLLBACK")
            writes.append(path.name)
        finally:
            other.close()
        return real_read(path)

    monkeypatch.setattr(reconcile_module, "valid_record", read_and_try_to_write)
    report = records.reconcile()
    assert len(writes) == 3 and len(report.foreign) == 3


def test_no_pixel_is_decoded_and_a_foreign_file_is_read_once(home, monkeypatch):  # noqa: F811
    files = foreign_files(home, 4)
    records = catalog(home)

    def no_decoding(self, *args, **kwargs):
        raise AssertionError("reconcile decoded pixels")

    monkeypatch.setattr(Image.Image, "load", no_decoding)
    monkeypatch.setattr("PIL.ImageFile.ImageFile.load", no_decoding)
    reads: list[str] = []
    real_read = reconcile_module.valid_record
    monkeypatch.setattr(
        reconcile_module, "valid_record", lambda path: reads.append(path.name) or real_read(path)
    )
    first = records.reconcile()
    assert sorted(reads) == sorted(p.name for p in files) and len(first.foreign) == 4
    reads.clear()
    again = records.reconcile()
    assert reads == [] and sorted(again.foreign) == sorted(first.foreign)
    os.utime(files[0], ns=(1, 1))  # changed since: read again
    records.reconcile()
    assert reads == [files[0].name]


def test_png_text_reads_every_text_chunk_kind_and_stops_at_crafted_ones(tmp_path):
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("plain", "a")
    info.add_text("zipped", "b" * 500, zip=True)
    info.add_itxt("intl", "ü", lang="de", tkey="x")
    info.add_itxt("intl_zip", "ü" * 300, zip=True)
    path = tmp_path / "t.png"
    Image.new("RGB", (8, 8)).save(path, pnginfo=info)
    with Image.open(path) as image:
        assert read_png_text(path) == dict(image.text)


def test_two_trashes_of_one_image_at_once_leave_it_trashed_and_found(home):  # noqa: F811
    """Both requests read the row before either moves the file, unless moves take turns."""
    import threading

    from tools.gallery import catalog as catalog_module

    first, second = catalog(home), catalog(home)  # two requests (or processes), one index
    image_id = str(first.page(catalog_module.Filters())[0][0]["id"])
    both_read = threading.Barrier(2, timeout=2)
    real_get = Catalog.get

    def get_then_wait(self, wanted):
        row = real_get(self, wanted)
        if threading.current_thread().name.startswith("trash") and not row["trashed"]:
            with contextlib.suppress(threading.BrokenBarrierError):
                both_read.wait()  # released only if both saw it untrashed at once
        return row

    Catalog.get = get_then_wait
    try:
        threads = [
            threading.Thread(target=c.trash_image, args=(image_id,), name=f"trash{n}")
            for n, c in enumerate((first, second))
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    finally:
        Catalog.get = real_get
    row = first.get(image_id)
    assert row["trashed"] == 1 and row["missing"] == 0 and Path(row["path"]).is_file()


def test_an_image_trashed_while_reconcile_reads_is_not_marked_missing(home, monkeypatch):  # noqa: F811
    foreign_files(home, 1)  # something for reconcile to read
    records = catalog(home)
    with records.index.transaction() as connection:
        victim = connection.execute("SELECT id FROM images ORDER BY id LIMIT 1").fetchone()["id"]
    real_read = reconcile_module.valid_record
    trashed: list[str] = []

    def read_while_another_tab_trashes(path):
        if not trashed:  # the listing of the disk is taken; the trash moves the file now
            trashed.append(str(catalog(home).trash_image(str(victim))["path"]))
        return real_read(path)

    monkeypatch.setattr(reconcile_module, "valid_record", read_while_another_tab_trashes)
    records.reconcile()
    row = records.get(str(victim))
    assert row["trashed"] and Path(row["path"]).is_file()
    assert not row["missing"]
