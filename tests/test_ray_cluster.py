"""A real multi-node Ray cluster (`ray.cluster_utils.Cluster`: two raylets, two object stores,
one CPU each) on loopback only: a 12-image job over two slots, one actor killed mid-job.

Real processes, the tiny models; the cluster runs in its own process (tests/ray_cluster.py),
the head is `anime-gen worker --ray ADDRESS`, the kill comes from a third driver.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests import test_worker
from tests.test_scale import GEN, assert_each_image_once
from tests.test_worker import submit, wait_until
from tools.jobs.journal import JobJournal

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="needs the ray extra"),
]
studio = test_worker.studio

# Every Ray process of these tests names itself by the loopback address.
LOOPBACK_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
IPV4 = re.compile(r"\b\d{1,3}(?:\.\d{1,3}){3}\b")


@pytest.fixture
def cluster(studio: Path) -> Iterator[dict[str, Any]]:
    """Two nodes, each with its own temp root; what tests/ray_cluster.py printed."""
    import shutil
    import tempfile

    # Short: Ray's socket paths live under it (a Unix socket path has ~107 bytes).
    root = Path(tempfile.mkdtemp(prefix="anime-rc-", dir="/tmp"))
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.ray_cluster", str(root), str(studio)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, **LOOPBACK_ENV},
    )
    try:
        line = process.stdout.readline()  # the cluster is up (or the process died: "")
        assert line, "the test cluster did not start"
        yield {**json.loads(line), "root": root}
    finally:
        process.stdin.close()
        try:
            process.wait(timeout=120)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        shutil.rmtree(root, ignore_errors=True)


RAY_KILL = """
import sys, ray
ray.init(address=sys.argv[1], namespace=sys.argv[2], _node_ip_address="127.0.0.1",
         log_to_driver=False)
ray.kill(ray.get_actor(sys.argv[3]))
"""


def test_two_nodes_share_a_job_through_an_actor_kill_each_image_once(studio, cluster, tmp_path):
    from tools.jobs.client import wait_for_job

    address, nodes = cluster["address"], cluster["nodes"]
    assert address.startswith("127.0.0.1:") and {n["ip"] for n in nodes} == {"127.0.0.1"}
    log = tmp_path / "ray-head.log"
    # Image 7 hangs on whichever actor draws it first: that actor is mid-job when it is killed.
    env = {**os.environ, **LOOPBACK_ENV, "ANIME_WORKER_FAULTS": "hang@7"}
    with open(log, "wb") as output:
        head = subprocess.Popen(
            [*GEN, "worker", "--ray", address, "--slots", "2"],
            stdout=output,
            stderr=output,
            env=env,
        )
    info_file = studio / ".anime-chat" / "ray.json"

    def head_up() -> bool:
        assert head.poll() is None, log.read_text()
        return info_file.exists() and len(json.loads(info_file.read_text())["actors"]) == 2

    try:
        # The head holds the worker lock before the job goes in: no local worker starts.
        wait_until(head_up, 120, "the ray head")
        settings, journal, job_id = submit(12)
        state = settings.paths.state

        def hung_lease() -> str | None:
            assert head.poll() is None, log.read_text()
            with journal.transaction() as db:
                row = db.execute(
                    "SELECT lease FROM job_images WHERE job_id = ? AND idx = 7 AND tries = 1",
                    (job_id,),
                ).fetchone()
            return row and row["lease"]

        slot = wait_until(hung_lease, 180, "image 7 in flight").split(":")[0]
        info = json.loads((state / "ray.json").read_text())
        kill = [sys.executable, "-c", RAY_KILL, address, info["namespace"], info["actors"][slot]]
        subprocess.run(kill, env={**os.environ, **LOOPBACK_ENV}, check=True, timeout=120)
        wait_for_job(settings, job_id, timeout=300)
        # The other actor may finish the job before the new one reports where it runs: wait.
        wait_until(lambda: log.read_text().count(" runs on ") >= 3, 120, "the new actor")
    finally:
        head.terminate()
        head.wait(timeout=120)
    text = log.read_text()
    job = assert_each_image_once(studio, job_id, 12)
    assert sorted(job.workers) == ["ray-slot0", "ray-slot1"] and job.images[7].tries == 2
    assert f"ray actor {slot} died (" in text, text[-3000:]
    # Each actor's home lay under its node's temp root, and both nodes drew.
    homes = re.findall(r"actor (ray-slot\d)-\w+-(\d+) runs on \S+ \(pid \d+, home (\S+)\)", text)
    roots = {n["name"]: n["tmp"] for n in nodes}
    where = {
        (name, int(incarnation)): next(n for n, tmp in roots.items() if home.startswith(tmp))
        for name, incarnation, home in homes
    }
    first = {where[("ray-slot0", 1)], where[("ray-slot1", 1)]}
    assert first == set(roots) and len(where) >= 3, text[-3000:]
    # On loopback only: the head joined at 127.0.0.1, as 127.0.0.1, and names no other address.
    assert re.search(
        r"joined the Ray cluster at 127\.0\.0\.1:\d+ as 127\.0\.0\.1 \(nodes: "
        r"127\.0\.0\.1, 127\.0\.0\.1\)",
        text,
    ), text[-3000:]
    assert set(IPV4.findall(text)) == {"127.0.0.1"}
    # No process of either node touched a path of the head's home, and no actor home is left.
    audit = cluster["root"] / "audit.log"
    assert not audit.exists(), audit.read_text()[:3000]
    for tmp in roots.values():
        assert not list(Path(tmp).glob("anime-actors/*")), list(Path(tmp).rglob("*"))
    assert JobJournal.for_state(state).get(job_id).state == "done"
