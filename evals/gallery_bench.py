"""Gallery benchmark: the grid's first page and a search over N synthetic index rows.

    python -m evals.gallery_bench [--rows 20000] [--repeats 15]

Rows go in through `GenerationIndex.reserve` (the store's own insert path, so the full-text
triggers fill the search table as they do for real images); files are not written (the API
answers from the index; a missing file shows as missing). Each query is timed through the real
FastAPI app (TestClient: routing, auth, JSON), median of `repeats` runs after one warm-up.
Target (issue 14): each ≤ 200 ms on this machine.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

CHARACTERS = ("sakura", "yuki", "momo", "hana", "rin", "aoi", "mei", "kana")
POSES = (
    ("standing", ["standing", "waving"]),
    ("sitting_reading", ["sitting", "reading"]),
    ("lying", ["lying", "sleeping"]),
    ("running", ["running"]),
    ("kneeling_praying", ["kneeling", "praying"]),
    ("jumping", ["jumping", "happy"]),
)
SCENES = (
    "in a library",
    "at the beach, sunset",
    "school uniform, classroom",
    "cherry blossoms, spring",
    "rainy street at night, umbrella",
    "kimono, festival lanterns",
    "cafe, holding a cup of tea",
    "snowy mountain, winter coat",
)
TOKEN = "bench-token"


def synthetic_meta(
    number: int,
    character: str | None = None,
    pose: tuple[str, list[str]] | None = None,
    scene: str | None = None,
    accepted: bool = True,
) -> dict[str, Any]:
    """A record shaped like the ones `Producer.metadata` + the gate write (scores included)."""
    rng = random.Random(number)
    character = character or CHARACTERS[number % len(CHARACTERS)]
    pose_id, tags = pose or POSES[number % len(POSES)]
    scene = scene if scene is not None else SCENES[rng.randrange(len(SCENES))]
    scores = {
        "consistency": round(rng.uniform(0.85, 1.0), 3),
        "face": round(rng.uniform(0.5, 1.0), 3),
        "aesthetic": round(rng.uniform(0.3, 0.9), 3),
        "palette": round(rng.uniform(0.6, 1.0), 3),
    }
    return {
        "key": f"bench{number}:0",
        "request_id": f"bench{number}",
        "character": character,
        "posture": tags[0],
        "pose": {"id": pose_id, "tags": tags},
        "prompt": f"masterpiece, best quality, {character}, {', '.join(tags)}, {scene}",
        "negative_prompt": "lowres, bad anatomy",
        "user_prompt": scene,
        "seed": 1000 + number,
        "steps": 20,
        "sampler": "DPM++ 2M Karras",
        "guidance_scale": 7.0,
        "width": 512,
        "height": 768,
        "model": "counterfeit_v3" if number % 3 else "anything_v5",
        "clip_skip": 2,
        "controlnet": "lllyasviel/control_v11p_sd15_openpose",
        "controlnet_strength": 0.5,
        "ipadapter": "h94/IP-Adapter/ip-adapter_sd15.safetensors",
        "ipadapter_weight": 0.95,
        "collection": None,
        "loras": [],
        "scores": scores,
        "accepted": accepted,
        "attempts": 1,
        "output": {
            "path": None,
            "character": character,
            "pose": {"id": pose_id, "tags": tags},
            "seed": 1000 + number,
            "scores": scores,
            "accepted": accepted,
            "attempts": 1,
            "reasons": [] if accepted else ["consistency 0.412 < 0.90"],
        },
    }


def fill_index(home: Path, rows: int) -> None:
    """`rows` saved rows (every 10th rejected), one day per 500 rows, paths under the output."""
    from tools.store.gen_index import GenerationIndex

    index = GenerationIndex(home / ".anime-chat" / "generations.sqlite")
    start = datetime(2026, 1, 1, tzinfo=UTC)
    with index.transaction() as connection:
        for number in range(rows):
            meta = synthetic_meta(number, accepted=number % 10 != 9)
            when = start + timedelta(seconds=number * 170)
            folder = home / "anime-output" / ("" if meta["accepted"] else "rejected")
            path = folder / when.date().isoformat() / f"{meta['character']}_{number:06d}.png"
            created = when.isoformat(timespec="seconds")
            index.reserve(connection, path, meta["key"], meta, status="saved", created=created)
    index.close()


def _median_ms(client: Any, url: str, repeats: int) -> tuple[float, int]:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    answer = client.get(url, headers=headers)
    answer.raise_for_status()
    timings = []
    for _ in range(repeats):
        started = time.perf_counter()
        client.get(url, headers=headers).raise_for_status()
        timings.append((time.perf_counter() - started) * 1000)
    return statistics.median(timings), len(answer.json()["images"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args(argv)

    from fastapi.testclient import TestClient

    from tools.server.app import create_app
    from tools.server.studio import Studio

    with tempfile.TemporaryDirectory(prefix="gallery-bench-") as folder:
        home = Path(folder) / "home"
        started = time.perf_counter()
        fill_index(home, args.rows)
        filled = time.perf_counter() - started
        client = TestClient(
            create_app(Studio(home, TOKEN, "127.0.0.1")), base_url="http://127.0.0.1:7788"
        )
        queries = {
            "first page (limit 100)": "/api/images",
            "search 'cherry blos' (limit 100)": "/api/images?q=cherry+blos",
            "search 'sakura stand 10' (limit 100)": "/api/images?q=sakura+stand+10",
            "first page, character=yuki": "/api/images?character=yuki",
            "next page (cursor)": "/api/images?cursor=10000",
        }
        print(f"{args.rows} rows written in {filled:.1f} s; median of {args.repeats} runs:")
        worst = 0.0
        for label, url in queries.items():
            median, count = _median_ms(client, url, args.repeats)
            worst = max(worst, median)
            print(f"  {label:<38} {median:7.1f} ms  ({count} images)")
        print(
            f"slowest median {worst:.1f} ms (target ≤ 200 ms): {'ok' if worst <= 200 else 'SLOW'}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
