"""The A1111 API where it must behave as A1111 does (issue 25's follow-ups): img2img at
denoising 0, a request giving one side of the size, png-info of JPEG and WebP (EXIF
UserComment), and the img2img init images' lifetime.

Read against AUTOMATIC1111/stable-diffusion-webui `modules/processing.py`,
`modules/sd_samplers_common.py`, `modules/images.py` and `modules/api/api.py`. End-to-end tests
use the session's background server (`studio`, tests/conftest.py) and the real `webuiapi`.
"""

from __future__ import annotations

import base64
import io
import json

from PIL import Image
from test_a1111_api import SMALL, _api, _pixels, app_client  # noqa: F401 (a fixture)


def test_img2img_at_denoising_0_gives_the_init_image_back(studio):
    """A1111 accepts `denoising_strength: 0` (its request model has no bound): t_enc =
    int(0 · steps) = 0 (`setup_img2img_steps`), so only the schedule's lowest noise level is
    sampled and the init image comes back all but unchanged (the ADetailer-only pass people
    use it for). Here no step runs: its pixels come back, resized. It was a 422 (denoise > 0)."""
    api = _api(studio)
    start = Image.new("RGB", (96, 80), (200, 30, 30))
    for x in range(0, 96, 8):
        start.paste((20, 200, 60), (x, 0, x + 4, 80))
    result = api.img2img(images=[start], prompt="a cat", seed=4, denoising_strength=0, **SMALL)
    assert len(result.images) == 1, result
    expected = start.resize((64, 64), Image.Resampling.LANCZOS)
    assert _pixels(result.images[0]) == _pixels(expected)
    record = json.loads(result.images[0].info["anime-chat"])
    assert record["init_image"]["denoise"] == 0
    assert result.info["denoising_strength"] == 0
