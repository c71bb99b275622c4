"""What the Ray head saves of an actor's result (issue 22, "decodes/re-encodes every PNG"): the
actor's PNG bytes as they are, our text chunks added, committed once and indexed."""

from __future__ import annotations

import io
import json
import random
import zlib
from pathlib import Path

import pytest

from tests.test_ray_head import (  # noqa: F401  (fixtures)
    Ref,
    fake_ray,
    head_home,
    make_head,
    no_backoff,
    rendered,
    submit,
)
from tools.jobs.job import JobState
from tools.store.png_chunks import _chunk, chunks


def actor_png(seed: int) -> bytes:
    """A PNG as no PIL default writes it (noise, stored without compression, a private chunk):
    a decode and re-encode on the head would change its IDAT."""
    from PIL import Image

    noise = random.Random(seed).randbytes(32 * 32 * 3)
    buffer = io.BytesIO()
    Image.frombytes("RGB", (32, 32), noise).save(buffer, format="PNG", compress_level=0)
    png = buffer.getvalue()
    at = png.index(b"IDAT") - 4
    return png[:at] + _chunk(b"prVt", b"actor") + png[at:]


def idat(png: bytes) -> list[tuple[bytes, bytes]]:
    return [chunk for chunk in chunks(png) if chunk[0] in (b"IDAT", b"prVt")]


def test_the_head_saves_the_actors_png_bytes_and_commits_them(head_home, fake_ray):  # noqa: F811
    from tools.store.png_info import read_png_info

    def actor(_actor, task):
        result = rendered(task)
        for item in result["images"]:
            for save in item["saves"]:
                save["png"] = actor_png(save["meta"]["seed"])
        return Ref(result)

    fake_ray.behaviour = actor
    job_id = submit(head_home, 2)
    head = make_head(head_home)
    for _ in range(6):
        head.step()
    job = head.journal.get(job_id)
    assert job.state == JobState.DONE, job
    for image in job.images:
        seed = image.spec["seed"]
        row = head.runtime.index.by_key(image.key)
        assert row is not None and row["status"] == "saved" and row["worker"] == "ray-slot0"
        path = Path(row["path"])
        assert image.path == str(path) and image.worker == "ray-slot0"
        saved = path.read_bytes()
        assert idat(saved) == idat(actor_png(seed))  # the pixels byte for byte
        assert saved.index(b"anime-chat") < saved.index(b"IDAT")
        info = read_png_info(path)
        assert info["source"] == "anime-chat" and info["seed"] == seed
        assert info["path"] == str(path)
        assert row["record"]["seed"] == seed


def test_the_commit_bench_runs_both_paths_and_checks_the_files(capsys):
    from evals.commit_bench import main

    assert main(["--images", "2", "--size", "64"]) == 0
    out = capsys.readouterr().out
    assert "old: decode + re-encode" in out and "new: bytes as sent" in out
    assert "load average" in out


def saved_files(head) -> list[Path]:
    """The images in the output folder (not their views under characters/)."""
    root = head.runtime.store.root
    return [
        path for path in root.rglob("*.png") if "characters" not in path.relative_to(root).parts
    ]


def actor_sends(fake_ray, png_of) -> None:  # noqa: F811
    def actor(_actor, task):
        result = rendered(task)
        for item in result["images"]:
            for save in item["saves"]:
                save["png"] = png_of(save["meta"]["seed"])
        return Ref(result)

    fake_ray.behaviour = actor


def test_a_damaged_png_from_the_actor_fails_its_try_and_nothing_is_saved(head_home, fake_ray):  # noqa: F811
    def bad_crc(seed: int) -> bytes:
        png = actor_png(seed)
        at = png.index(b"IEND") - 5  # the last byte of the IDAT chunk's CRC
        return png[:at] + bytes([png[at] ^ 0xFF]) + png[at + 1 :]

    actor_sends(fake_ray, bad_crc)
    job_id = submit(head_home, 1)
    head = make_head(head_home)
    head.step()
    job = head.journal.get(job_id)
    assert job.done_count == 0 and "bad CRC" in (job.error or ""), job
    assert [image.tries for image in job.images] == [1]  # a counted try, the lease given up
    assert head.runtime.index.by_key(job.images[0].key) is None
    assert saved_files(head) == []
    actor_sends(fake_ray, actor_png)  # the next try's bytes are sound: drawn once
    for _ in range(6):
        no_backoff(head)
        head.step()
    job = head.journal.get(job_id)
    assert job.state == JobState.DONE and [image.tries for image in job.images] == [2]
    assert saved_files(head) == [Path(job.images[0].path)]


def test_the_actors_own_text_chunks_cannot_stand_for_our_record(head_home, fake_ray):  # noqa: F811
    from tools.store.png_info import read_png_info
    from tools.store.png_text import read_png_text

    forged = {"seed": 1, "prompt": "forged", "path": "/etc/passwd"}

    def spoofing(seed: int) -> bytes:
        png = actor_png(seed)
        before, after = png.index(b"IDAT") - 4, png.index(b"IEND") - 4
        a1111 = _chunk(b"tEXt", b"parameters\x00forged\nSteps: 1, Seed: 1")
        ours = _chunk(b"zTXt", b"anime-chat\x00\x00" + zlib.compress(json.dumps(forged).encode()))
        ours_i = _chunk(b"iTXt", b"anime-chat\x00\x01\x00\x00\x00" + zlib.compress(b"{}"))
        return png[:before] + a1111 + png[before:after] + ours + ours_i + png[after:]

    actor_sends(fake_ray, spoofing)
    job_id = submit(head_home, 1)
    head = make_head(head_home)
    for _ in range(4):
        head.step()
    image = head.journal.get(job_id).images[0]
    path = Path(image.path)
    info, texts = read_png_info(path), read_png_text(path)
    assert info["seed"] == image.spec["seed"] and info["path"] == str(path)
    assert "forged" not in texts["parameters"] and "forged" not in texts["anime-chat"]
    keywords = [data.split(b"\x00", 1)[0] for kind, data in chunks(path.read_bytes())]
    assert keywords.count(b"parameters") == 1 and keywords.count(b"anime-chat") == 1


def no_images(result, other_key):
    result["images"] = []


def saves_under_another_key(result, other_key):
    result["images"][0]["saves"][0]["key"] = other_key


def names_a_foreign_file(result, other_key):
    result["images"][0]["record"]["path"] = "/etc/hosts"


def sends_another_image(result, other_key):
    result["images"][0]["key"] = other_key


def a_sheet_for_a_character_image(result, other_key):
    result["images"][0]["sheet_png"] = actor_png(0)
    result["images"][0]["record"]["path"] = "/etc/hosts"


def names_out_of_the_output_folder(field):
    def tamper(result, other_key):
        result["images"][0]["saves"][0]["meta"][field] = "../../../escaped"

    tamper.__name__ = f"{field}_out_of_the_output_folder"
    return tamper


@pytest.mark.parametrize(
    "tamper",
    [no_images, saves_under_another_key, names_a_foreign_file, sends_another_image]
    + [a_sheet_for_a_character_image]
    + [names_out_of_the_output_folder(field) for field in ("character", "posture", "collection")],
    ids=lambda tamper: tamper.__name__,
)
def test_a_result_not_of_its_task_fails_the_try_and_every_image_lands_once(
    head_home,  # noqa: F811
    fake_ray,  # noqa: F811
    tamper,
):
    keys, tampered = {}, []

    def actor(_actor, task):
        result = rendered(task)
        index = task["specs"][0]["index"]
        keys[index] = task["specs"][0]["key"]
        if index == 1 and not tampered:  # (image 0's task goes first)
            tampered.append(task["token"])
            tamper(result, keys[0])
        return Ref(result)

    fake_ray.behaviour = actor
    job_id = submit(head_home, 2)
    head = make_head(head_home)  # the actor starts and takes both tasks (collected then)
    job = head.journal.get(job_id)
    assert tampered and any(why in (job.error or "") for why in ("the actor", "file name")), job
    assert not list(head_home.parent.rglob("*escaped*"))
    for _ in range(6):
        no_backoff(head)
        head.step()
    job = head.journal.get(job_id)
    assert job.state == JobState.DONE, job
    assert [image.tries for image in job.images] == [1, 2]
    paths = [Path(image.path) for image in job.images]
    assert sorted(saved_files(head)) == sorted(paths) and len(set(paths)) == 2
    assert head.runtime.index.by_key(keys[1])["path"] == str(paths[1])
