"""The Ray head's slots: one actor each (a GPU of the cluster, or a CPU slot), the task it runs
now, and how the head judges that task's progress (a hang is no progress, not a long task)."""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tools.jobs.job import Job, JobImage
from tools.jobs.ray_actor import ray_module

log = logging.getLogger("anime.ray")

# A slot whose actor fails to start this many times in a row is given up (as the local
# supervisor gives up on a worker that cannot start).
MAX_START_FAILURES = 4


@dataclass
class InFlight:
    ref: Any
    job: Job
    images: list[JobImage]
    # Seconds without progress that count as a hang: the load allowance while the actor loads
    # models (or until it shows a step, on models it had not loaded), else worker.hang_timeout.
    allowance: float
    hang_timeout: float
    load_allowance: float
    last_progress: float = field(default_factory=time.monotonic)
    ticks: int = -1
    probe: Any = None  # a progress() call on its way, sent at probe_sent
    probe_sent: float = 0.0
    cancelled: bool = False  # the job ended (cancelled, failed): the result is thrown away

    def silent_for(self) -> float:
        return time.monotonic() - self.last_progress

    def saw(self, progress: dict[str, Any]) -> None:
        """The actor's progress as a probe read it: a change of its counter is progress."""
        if progress["ticks"] != self.ticks:
            self.ticks, self.last_progress = progress["ticks"], time.monotonic()
        if progress["loading"]:
            self.allowance = self.load_allowance
        elif progress["steps"]:
            self.allowance = self.hang_timeout


@dataclass
class ActorSlot:
    name: str
    gpu: bool
    actor: Any = None
    actor_name: str = ""
    token: str = ""
    incarnation: int = 0
    inflight: InFlight | None = None
    loaded: set[str] = field(default_factory=set)  # settings it has rendered with
    # Answered once the actor runs: until then (no node has room for it, e.g. its node left)
    # the slot leases nothing, so no job fails for want of a place to run.
    started: Any = None
    ready: bool = False
    respawn_at: float = 0.0
    start_failures: int = 0
    given_up: bool = False
    # Images per task after an out-of-memory error halved it; None: the job's batch size.
    batch_limit: int | None = None


def home_tag(home: Path) -> str:
    """A short tag of a home, in its actors' names: two homes can share one cluster."""
    return hashlib.sha256(str(home.resolve()).encode()).hexdigest()[:8]


def cluster_slots(slots: int | None) -> list[ActorSlot]:
    """One slot per GPU of the cluster, or `slots` CPU slots (also where there is no GPU)."""
    if slots:
        return [ActorSlot(f"ray-slot{n}", gpu=False) for n in range(slots)]
    gpus = int(ray_module().cluster_resources().get("GPU", 0))
    if not gpus:
        log.warning("the cluster has no GPU: one CPU actor (--slots N for more)")
        return [ActorSlot("ray-slot0", gpu=False)]
    return [ActorSlot(f"ray-gpu{n}", gpu=True) for n in range(gpus)]
