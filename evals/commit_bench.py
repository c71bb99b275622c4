"""What saving one image costs the Ray head: the old path (decode the actor's PNG, re-encode it
with our metadata) beside the new one (the actor's bytes, our text chunks added).

    python -m evals.commit_bench [--images 8] [--size 1024]

Both go through the real output store (name reserved in the index, temp file renamed into
place, row marked saved); the images are smooth gradients with a little noise, about as
compressible as a render. The old path is kept here only as the reference (issue 22: the head's
one loop spent it on every image, which caps a many-GPU cluster).
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import tempfile
import time
from pathlib import Path


def render_like_png(number: int, size: int) -> bytes:
    """A PNG about as an actor sends one: PIL's default encoder, no metadata."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(number)
    ramp = np.linspace(0, 255, size, dtype=np.float32)
    pixels = np.stack(
        [ramp[None, :].repeat(size, 0), ramp[:, None].repeat(size, 1), np.full((size, size), 128)],
        axis=-1,
    )
    pixels = pixels + rng.normal(0, 6, pixels.shape)
    buffer = io.BytesIO()
    Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def _old_path(store, png: bytes, meta: dict, key: str) -> Path:
    """What tools/jobs/ray_commit.py did before: the pixels decoded and written again."""
    from PIL import Image

    with Image.open(io.BytesIO(png)) as image:
        image.load()
        return store.save(image, meta, key=key)


def _new_path(store, png: bytes, meta: dict, key: str) -> Path:
    return store.save_png(png, meta, key=key)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--size", type=int, default=1024)
    args = parser.parse_args(argv)

    from evals.gallery_bench import synthetic_meta
    from tools.generation.runtime import Runtime
    from tools.settings import load_settings
    from tools.store.png_chunks import chunks
    from tools.store.png_info import read_png_info

    pngs = [render_like_png(n, args.size) for n in range(args.images)]
    mb = sum(map(len, pngs)) / len(pngs) / 1e6
    print(f"{args.images} images of {args.size}x{args.size} ({mb:.2f} MB each as PNG)")
    results = {}
    with tempfile.TemporaryDirectory(prefix="commit-bench-") as folder:
        settings = load_settings(env={}, home=Path(folder))
        store = Runtime(settings).store  # the head's own store
        for label, save in (
            ("old: decode + re-encode", _old_path),
            ("new: bytes as sent", _new_path),
        ):
            started = time.perf_counter()
            paths = []
            for number, png in enumerate(pngs):
                meta = synthetic_meta(number) | {"width": args.size, "height": args.size}
                meta["key"] = f"{label[:3]}{number}:0"
                paths.append(save(store, png, meta, meta["key"]))
            elapsed = time.perf_counter() - started
            for png, path in zip(pngs, paths, strict=True):  # the files, checked on disk
                assert read_png_info(path)["path"] == str(path)
                if save is _new_path:
                    idat = [c for c in chunks(png) if c[0] == b"IDAT"]
                    assert [c for c in chunks(path.read_bytes()) if c[0] == b"IDAT"] == idat
            results[label] = elapsed / len(pngs) * 1000
            print(f"  {label:<26} {results[label]:8.1f} ms per image")
    old, new = results.values()
    print(
        f"  speed-up {old / new:.0f}x; load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
