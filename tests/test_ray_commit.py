"""What the Ray head saves of an actor's result (issue 22, "decodes/re-encodes every PNG"): the
actor's PNG bytes as they are, our text chunks added, committed once and indexed."""

from __future__ import annotations

import io
import random
from pathlib import Path

from tests.test_ray_head import (  # noqa: F401  (fixtures)
    Ref,
    fake_ray,
    head_home,
    make_head,
    rendered,
    submit,
)
from tools.jobs.job import JobState
from tools.store.png_chunks import chunks


def actor_png(seed: int) -> bytes:
    """A PNG as no PIL default writes it (noise, stored without compression, a private chunk):
    a decode and re-encode on the head would change its IDAT."""
    from PIL import Image

    noise = random.Random(seed).randbytes(32 * 32 * 3)
    buffer = io.BytesIO()
    Image.frombytes("RGB", (32, 32), noise).save(buffer, format="PNG", compress_level=0)
    png = buffer.getvalue()
    from tools.store.png_chunks import _chunk

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
