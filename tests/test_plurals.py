"""Counts in what the user reads agree with their nouns: "1 character", "2 characters"."""

import pytest

from tools.text import plural


@pytest.mark.parametrize(
    ("count", "noun", "expected"),
    [(0, "image", "0 images"), (1, "image", "1 image"), (2, "image", "2 images"),
     (1, "recent image", "1 recent image"), (3, "try", "3 tries"), (1, "try", "1 try"),
     (2, "pass", "2 passes"), (2, "man", "2 men", ), (-1, "step", "-1 steps")],
)  # fmt: skip
def test_plural(count, noun, expected):
    many = "men" if noun == "man" else None
    assert plural(count, noun, many) == expected


def test_a_job_of_one_image_says_image():
    from tools.jobs.job import ImageState, Job, JobImage, JobState

    image = JobImage(0, "k", {}, ImageState.PENDING, None, None)
    request = {"characters": ["sakura"], "pose": "standing"}
    job = Job("j1", 0.0, 0.0, 0, JobState.QUEUED, 1, 0.0, None, {}, None, None, None, False,
              request, [image])  # fmt: skip
    line = job.describe()
    assert "0/1 image " in line and "images" not in line


def test_a_job_of_several_poses_counts_them():
    from tools.jobs.job import ImageState, Job, JobImage, JobState

    images = [JobImage(n, f"k{n}", {}, ImageState.PENDING, None, None) for n in range(2)]
    request = {"characters": ["rin", "sakura"], "pose": "a", "poses": ["a", "b"]}
    job = Job("j1", 0.0, 0.0, 0, JobState.QUEUED, 0, 0.0, None, {}, None, None, None, False,
              request, images)  # fmt: skip
    assert job.summary()["what"] == "rin, sakura · 2 poses · 2 images"
    assert job.summary()["queued"] == "1970-01-01T00:00:00+00:00"


def test_hires_of_one_step_in_anime_gen_info():
    from tools.store.png_info import format_info

    hires = {"scale": 2, "upscaler": "latent", "denoise": 0.5, "steps": 1, "width": 8, "height": 8}
    text = format_info({"source": "anime-chat", "hires": hires})
    assert "1 step ->" in text and "1 steps" not in text
