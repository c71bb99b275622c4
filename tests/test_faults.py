"""Fault injection: off by default, rules read only from the worker's environment."""

from __future__ import annotations

import re
import traceback
from pathlib import Path

import pytest

from tools.jobs.faults import ENV_VAR, FaultPlan, InjectedFault, InjectedOutOfMemory, parse_faults
from tools.jobs.worker import is_out_of_memory


def test_off_unless_the_environment_asks():
    assert not FaultPlan.from_env({}).active
    FaultPlan.from_env({}).before_image("job", 0, 1)  # nothing happens


def test_a_fault_fires_on_its_image_and_first_attempt_only():
    plan = FaultPlan.from_env({ENV_VAR: "raise@2"})
    plan.before_image("job", 1, 1)
    with pytest.raises(InjectedFault, match="image 2"):
        plan.before_image("job", 2, 1)
    plan.before_image("job", 2, 2)  # the retry gets through


def test_always_fires_on_every_attempt_and_oom_reads_as_out_of_memory():
    plan = FaultPlan.from_env({ENV_VAR: "oom@0:always"})
    for attempt in (1, 2, 3):
        with pytest.raises(InjectedOutOfMemory) as caught:
            plan.before_image("job", 0, attempt)
        assert is_out_of_memory(caught.value)
    assert not is_out_of_memory(ValueError("out of memory"))


def test_random_faults_are_reproducible_and_roughly_as_frequent_as_asked():
    rule = parse_faults("random:0.3:7")[0]
    draws = [rule.fires(f"job{n}", 0, 1) for n in range(400)]
    assert draws == [rule.fires(f"job{n}", 0, 1) for n in range(400)]
    assert 80 < sum(d is not None for d in draws) < 160
    assert {d for d in draws if d} == {"crash", "hang", "raise", "oom"}


@pytest.mark.parametrize("text", ["explode@1", "crash@x", "crash@1:sometimes"])
def test_a_misspelt_rule_is_refused(text):
    with pytest.raises(ValueError, match=ENV_VAR):
        parse_faults(text)


@pytest.mark.parametrize("kind", ["raise", "oom"])
def test_the_soak_eval_counts_the_faults_the_worker_logs(kind):
    from evals.soak import FAULT_PATTERNS

    try:
        FaultPlan.from_env({ENV_VAR: f"{kind}@0"}).before_image("job", 0, 1)
    except RuntimeError:
        logged = traceback.format_exc()  # what the worker writes to its log
    assert re.search(FAULT_PATTERNS[kind], logged, flags=re.M), logged


def test_production_code_does_not_know_the_fault_classes():
    """Injected faults look like real ones (an OOM reads as CUDA's message): nothing outside
    tools/jobs/faults.py tells them apart, so the paths they test are the real paths."""
    root = Path(__file__).resolve().parent.parent
    naming = [
        str(path.relative_to(root))
        for folder in ("tools", "assistant", "posebank")
        for path in (root / folder).rglob("*.py")
        if path.name != "faults.py" and re.search(r"\bInjected\w+", path.read_text())
    ]
    assert naming == []
