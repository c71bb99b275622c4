"""Fault injection: off by default, rules read only from the worker's environment."""

from __future__ import annotations

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
