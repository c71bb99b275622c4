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
# Tasks each actor holds at once: the next one waits in the actor (it renders one at a time)
# while the head collects and commits the last, so the GPU never idles on the head.
TASKS_PER_ACTOR = 2


@dataclass
class InFlight:
    ref: Any
    token: str  # its images' lease token (one per task: each task's leases are its own)
    job: Job
    images: list[JobImage]
    # Seconds without progress that count as a hang: the load allowance while the actor loads
    # models (or until it shows a step, on models it had not loaded), else worker.hang_timeout.
    allowance: float
    hang_timeout: float
    load_allowance: float
    faults: set[int] = field(default_factory=set)  # its images that carry an injected fault
    settings_key: str = ""  # its settings, as `ActorSlot.loaded` names them
    last_progress: float = field(default_factory=time.monotonic)
    ticks: int = -1
    started: bool = False  # a probe saw the actor run it
    cancelled: bool = False  # the job ended (cancelled, failed): the result is thrown away

    def silent_for(self) -> float:
        return time.monotonic() - self.last_progress

    def saw(self, progress: dict[str, Any], probe_sent: float) -> bool:
        """The actor's progress as a probe read it: a change of its counter while it runs this
        task is progress. A task waiting behind another one is not silent (the running one is
        judged): its clock starts when it starts. True when this probe saw it start."""
        running = progress.get("running")
        if running != self.token:
            if running is not None and not self.started:
                self.last_progress = max(self.last_progress, probe_sent)
            return False
        starts, self.started = not self.started, True
        if progress["ticks"] != self.ticks:
            self.ticks, self.last_progress = progress["ticks"], time.monotonic()
        if progress["loading"]:
            self.allowance = self.load_allowance
        elif progress["steps"]:
            self.allowance = self.hang_timeout
        return starts


@dataclass
class ActorSlot:
    name: str
    gpu: bool
    actor: Any = None
    actor_name: str = ""
    incarnation: int = 0
    # Its actor's tasks in submission order (at most TASKS_PER_ACTOR).
    inflight: list[InFlight] = field(default_factory=list)
    probe: Any = None  # a progress() call on its way, sent at probe_sent
    probe_sent: float = 0.0
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

    def ran(self) -> list[InFlight]:
        """The task its actor ran (seen running, else the oldest): the others waited behind it,
        so a death or a stop gives their images back uncounted, their faults still due."""
        return [inflight for inflight in self.inflight if inflight.started] or self.inflight[:1]

    def batch_size(self, request: dict[str, Any], default: int) -> int:
        """Images per task: one on a CPU slot, else the job's batch size (or the limit)."""
        if not self.gpu:
            return 1
        if self.batch_limit:
            return self.batch_limit
        captured = (request.get("settings") or {}).get("output") or {}
        size = captured.get("batch_size", default)
        return size if isinstance(size, int) else 4


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
