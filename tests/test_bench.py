"""`python -m evals.bench`: the CPU overhead bench and the GPU bench's code paths at toy size."""

import json
import re
from pathlib import Path

import pytest

from evals.bench import main

pytestmark = pytest.mark.slow


def run_bench(argv: list[str], capsys) -> tuple[dict, str]:
    assert main(argv) == 0
    out = capsys.readouterr().out
    last = out.strip().splitlines()[-1]
    report = json.loads(out[: out.index("\n}\n") + 2])
    return report, last


def test_cpu_bench_compares_the_same_images_and_ends_with_the_ratio(
    tmp_path: Path, tiny_models: Path, capsys
):
    (tmp_path / "tiny-models").symlink_to(tiny_models)  # reuse the session's build
    report, last = run_bench(["--images", "1", "--workdir", str(tmp_path)], capsys)
    ratio = float(re.fullmatch(r"overhead_ratio=(\d+\.\d+)", last)[1])
    assert ratio == report["overhead_ratio"] > 0
    for side in ("raw", "project"):
        assert report[side]["per_image_s"] > 0 and report[side]["load_s"] > 0
    assert report["settings"]["images"] == 1
    # A warm-up image and the timed one, drawn by each side.
    assert len(list((tmp_path / "raw-output").glob("*.png"))) == 2
    saved = list((tmp_path / "home" / "anime-output").rglob("bench_*.png"))
    assert len({path.name for path in saved}) == 2


def test_gpu_bench_paths_run_at_toy_size(tmp_path: Path, capsys):
    argv = ["--gpu", "--tiny", "--batches", "2", "--repeats", "1", "--workdir", str(tmp_path)]
    report, last = run_bench(
        [*argv, "--variants", "engine,engine-cfg-cutoff-0.4", "--json", str(tmp_path / "r.json")],
        capsys,
    )
    assert report["mode"] == "gpu-tiny"
    names = {(row["name"], row["batch"]) for row in report["rows"]}
    expected = {"raw-diffusers", "engine", "engine-cfg-cutoff-0.4"}
    assert names == {(name, 2) for name in expected}
    assert all(row["per_image_s"] > 0 for row in report["rows"])
    assert last == f"speedup={report['best']['speedup']}"
    assert json.loads((tmp_path / "r.json").read_text()) == report
