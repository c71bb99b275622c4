"""Render actors on a Ray cluster: `anime-gen worker --ray ADDRESS [--slots N]`.

This process is the head. It holds the home's worker lock (so no local worker starts beside it)
and keeps the journal, the output store and the generation index; the actors only render. For
each slot (one actor per GPU of the cluster, `num_gpus=1`, or `--slots N` CPU actors) the head
leases images from the journal under the slot's token, exactly as a local worker does, and sends
the actor everything an image needs: the image specs, the character's record and reference
bytes, the pose (the actor draws its map), the job's settings, and the files under
`<home>/models/` that the settings name or that a prompt may name (LoRAs, embeddings, a VAE),
by content: each file goes into the object store once and an actor fetches the ones it lacks.
An actor never reads the head's home. It sends back PNG bytes, metadata and scores; the head
saves each image under its key and commits it.

Ray actors are not restarted and their tasks not retried by default, and a `RayActorError` can
arrive after the task ran: the journal makes that safe. A dead actor's leases fail (the job backs
off like after a crashed local worker), a new actor takes the slot, and the images are drawn
again under the same keys, so each lands once. A task that outlives `worker.hang_timeout` per
image (plus load time on a fresh actor) counts as a hang: its actor is killed and replaced.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import secrets
import shutil
import signal
import socket
import sys
import tempfile
from pathlib import Path
from typing import Any

from tools.errors import UserError
from tools.jobs.faults import FaultPlan
from tools.jobs.journal import JobJournal
from tools.jobs.processes import (
    WorkerAlreadyRunning,
    checkout_path,
    read_worker_pid,
    worker_lock,
    worker_running,
)
from tools.jobs.ray_actor import ray_module
from tools.jobs.ray_head import NAMESPACE, RayHead
from tools.jobs.ray_slots import cluster_slots
from tools.settings import Settings

log = logging.getLogger("anime.ray")


LOOPBACK = ("127.0.0.1", "localhost", "::1")
PROBE_SECONDS = 10.0


def driver_options(address: str) -> dict[str, Any]:
    """`ray.init` options for joining the cluster at `address`. On a loopback address the driver
    names itself 127.0.0.1 too: a `ray start --head --node-ip-address 127.0.0.1` cluster has its
    raylet there, and Ray would otherwise look for one on the machine's network address
    (`resolve_ip_for_localhost`, ray/_private/services.py) and fail to connect."""
    host = _host_port(address)[0]
    return {"_node_ip_address": "127.0.0.1"} if host in LOOPBACK else {}


def probe(address: str) -> None:
    """Fail fast, naming the address, when nothing answers there: `ray.init` would retry for
    minutes while front ends wait."""
    host, port = _host_port(address)
    if port is None:
        raise UserError(
            f"cannot read the Ray address '{address}'", "give HOST:PORT, `auto` or `local`"
        )
    try:
        with socket.create_connection((host, port), timeout=PROBE_SECONDS):
            pass
    except OSError as error:
        raise UserError(
            f"cannot reach the Ray cluster at {address} ({error.strerror or error})",
            "start it (`ray start --head --node-ip-address 127.0.0.1`) or check the address",
        ) from None


def _host_port(address: str) -> tuple[str, int | None]:
    host, _, port = address.removeprefix("ray://").rpartition(":")
    return host.strip("[]"), int(port) if port.isdigit() else None


def connect(address: str, slots: int | None, temp_dir: Path) -> None:
    """Join (or, for `local`, start) the cluster."""
    if address not in ("local", "auto"):
        probe(address)
    if address == "local":
        # Ray reads the mode when it is imported: set it first. The local cluster asks for a
        # token of its own (written to ray.json), not one saved under ~/.ray.
        os.environ["RAY_AUTH_MODE"] = "token"
        os.environ.setdefault("RAY_AUTH_TOKEN", secrets.token_hex(32))
    ray = ray_module()
    env_vars = {"OMP_NUM_THREADS": "1"} if slots else {}
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_ENDPOINT"):
        if name in os.environ:
            env_vars[name] = os.environ[name]
    if address == "local":
        # The actors run this checkout, on this machine.
        env_vars["PYTHONPATH"] = checkout_path(os.environ.get("PYTHONPATH"))
        ray.init(
            num_cpus=slots or os.cpu_count() or 1,
            include_dashboard=False,
            _temp_dir=str(temp_dir),
            _node_ip_address="127.0.0.1",
            namespace=NAMESPACE,
            runtime_env={"env_vars": env_vars},
        )
    else:
        ray.init(
            address=None if address == "auto" else address,
            namespace=NAMESPACE,
            runtime_env={"env_vars": env_vars},
            **({} if address == "auto" else driver_options(address)),
        )
    nodes = sorted(node["NodeManagerAddress"] for node in ray.nodes() if node["Alive"])
    log.info(
        "joined the Ray cluster at %s as %s (nodes: %s)",
        ray.get_runtime_context().gcs_address,
        ray.util.get_node_ip_address(),
        ", ".join(nodes),
    )


def run_ray_worker(settings: Settings, address: str, slots: int | None = None) -> int:
    """`anime-gen worker --ray ADDRESS`: connect, then hold the home's worker lock and serve
    until stopped. Connecting comes first: while it lasts no front end takes the home for
    served, and a cluster that cannot be reached is one error line, with no lock held."""
    if importlib.util.find_spec("ray") is None:
        ray_module()  # the install hint
    state = settings.paths.state
    if worker_running(state):
        raise WorkerAlreadyRunning(read_worker_pid(state))
    temp_dir = Path(tempfile.mkdtemp(prefix="anime-ray-", dir="/tmp"))
    try:
        connect(address, slots, temp_dir)
        with worker_lock(state):
            journal = JobJournal.for_state(state)
            journal.clear_leases()  # the lock was free: no worker of this home is alive
            faults = FaultPlan.from_env()
            if faults.active:
                log.warning("FAULT INJECTION ACTIVE: %s", os.environ.get("ANIME_WORKER_FAULTS"))
            head = RayHead(settings, cluster_slots(slots), faults)

            def stop(signum: int, _frame: Any) -> None:
                head.stopping = True

            signal.signal(signal.SIGTERM, stop)
            signal.signal(signal.SIGINT, stop)
            log.info("ray head for %s: %s", state, ", ".join(s.name for s in head.slots))
            return head.serve()
    finally:
        if "ray" in sys.modules:
            ray_module().shutdown()
        shutil.rmtree(temp_dir, ignore_errors=True)
