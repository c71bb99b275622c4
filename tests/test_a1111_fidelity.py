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


def test_a_side_left_out_is_the_configured_one_and_is_named_in_the_warnings():
    """A1111 defaults both sides to 512 (`StableDiffusionProcessing`); here a field left out is
    the configured value (docs/A1111_API.md), also for one side: an SDXL setup configured for
    832x1216 asked for width 1024 draws 1024x1216, not 1024x512. It was 512, silently."""
    from tools.server.a1111_mapping import A1111Request, map_request
    from tools.settings_sections import Resolution

    sdxl = Resolution(832, 1216)
    mapping = map_request(A1111Request(width=1024), {}, None, sdxl)
    assert mapping.flags["output"]["resolution"] == "1024x1216"
    assert [w for w in mapping.warnings if "height" in w] == [
        "height not given: used the configured 1216 (output.resolution 832x1216;"
        " A1111 would use 512)"
    ]
    only_height = map_request(A1111Request(height=640), {}, None, sdxl)
    assert only_height.flags["output"]["resolution"] == "832x640"
    assert any(w.startswith("width not given") for w in only_height.warnings)
    # Both given: as asked, no warning; a side off the grid of 8 is rounded down and named.
    both = map_request(A1111Request(width=768, height=512), {}, None, sdxl)
    assert both.flags["output"]["resolution"] == "768x512"
    assert not [w for w in both.warnings if "width" in w or "height" in w]
    odd = map_request(A1111Request(width=770, height=512), {}, None, sdxl)
    assert odd.flags["output"]["resolution"] == "768x512"
    assert any("770x512 rounded down" in w for w in odd.warnings)
    # Neither: no resolution of the request's own (the configured one), nothing to warn about.
    assert "output" not in map_request(A1111Request(), {}, None, sdxl).flags


def test_txt2img_with_only_a_width_draws_the_configured_height(studio):
    """The session server is configured for 128x192 (evals/tiny_models.py)."""
    result = _api(studio).session.post(
        f"{_api(studio).baseurl}/txt2img",
        json={"prompt": "a lamp", "seed": 2, "steps": 1, "width": 64},
    )
    assert result.status_code == 200, result.text
    image = Image.open(io.BytesIO(base64.b64decode(result.json()["images"][0])))
    assert image.size == (64, 192)
    info = json.loads(result.json()["info"])
    assert (info["width"], info["height"]) == (64, 192)
    assert any(w.startswith("height not given: used the configured 192") for w in info["warnings"])
