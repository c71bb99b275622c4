"""`anime-gen worker --ray ADDRESS`: how the head joins a cluster, and what a bad address does."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

GEN = [sys.executable, "-m", "assistant.gen_cli"]


def test_an_unreachable_ray_address_fails_in_one_line_and_holds_no_lock(anime_home: Path):
    """Issue 22 §9: `ray.init` had not failed after 280 s, and the worker lock was taken
    first, so front ends thought a worker ran. Connect first (bounded), then take the lock."""
    if importlib.util.find_spec("ray") is None:
        pytest.skip("needs the ray extra")
    from tools.jobs.client import ensure_worker
    from tools.settings import load_settings

    # 120 s: a hang guard only (the probe gives up within seconds).
    failed = subprocess.run(
        [*GEN, "worker", "--ray", "127.0.0.1:1"], capture_output=True, text=True, timeout=120
    )
    assert failed.returncode == 1
    errors = [line for line in failed.stderr.splitlines() if line.startswith("error")]
    assert len(errors) == 1 and "127.0.0.1:1" in errors[0], failed.stderr
    assert "Traceback" not in failed.stderr
    assert ensure_worker(load_settings())  # no lock left behind: a local worker starts


def test_a_loopback_address_pins_the_driver_to_loopback():
    """`ray start --head --node-ip-address 127.0.0.1` runs its raylet on loopback; a driver that
    names itself by the machine's address finds no raylet there ("Failed to connect")."""
    from tools.jobs.ray_workers import driver_options

    for address in ("127.0.0.1:6379", "localhost:6379"):
        assert driver_options(address)["_node_ip_address"] == "127.0.0.1"
    assert "_node_ip_address" not in driver_options("10.0.0.5:6379")
