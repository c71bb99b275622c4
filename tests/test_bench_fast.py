"""`python -m evals.bench`: the few-step rows (speed at toy size, gate scores both ways)."""

import json
from pathlib import Path

import pytest

from evals.bench import main

pytestmark = pytest.mark.slow


def run_bench(argv: list[str], capsys) -> tuple[dict, str]:
    assert main(argv) == 0
    out = capsys.readouterr().out
    return json.loads(out[: out.index("\n}\n") + 2]), out.strip().splitlines()[-1]


def test_fast_lora_row_and_quality_cost_run_on_the_tiny_models(
    tmp_path: Path, tiny_models: Path, capsys
):
    (tmp_path / "tiny-models").symlink_to(tiny_models)
    argv = ["--gpu", "--tiny", "--batches", "1", "--repeats", "1", "--workdir", str(tmp_path)]
    report, _ = run_bench([*argv, "--variants", "engine-fast-lora-6-steps"], capsys)
    assert {row["name"] for row in report["rows"]} == {"raw-diffusers", "engine-fast-lora-6-steps"}

    report, last = run_bench(
        ["--fast-quality", "--images", "2", "--workdir", str(tmp_path)], capsys
    )
    normal, fast = report["sides"]["normal"], report["sides"]["fast"]
    assert (normal["steps"], fast["steps"]) == (4, 6) and normal["images"] == fast["images"] == 2
    assert all(
        side[name] is not None for side in (normal, fast) for name in ("consistency", "palette")
    )
    assert last == f"fast_consistency_delta={report['consistency_delta']}"
    assert report["consistency_delta"] == round(fast["consistency"] - normal["consistency"], 4)
