"""Fault injection for tests and the soak eval; off unless the worker's environment asks for it.

Only the worker process reads `ANIME_WORKER_FAULTS` (no config key, no CLI flag), so no ordinary
use can switch it on. The value is a comma-separated list of rules:

- `KIND@N`          the first time image N (0-based) of a job starts, on whichever worker: with
                    several workers the journal records that it fired, so its retry elsewhere
                    gets through
- `KIND@N:always`   every time (a job that can never succeed)
- `random:P:SEED`   before each image, with probability P, a random kind; the draw depends on
                    (SEED, job, image, attempt), so a retry draws again

With several workers the rules apply to every one of them, local or Ray actor (the Ray head
decides for its actors and sends the kind along with the image).

KIND is `crash` (the process dies at once, like kill -9 or a segfault), `hang` (stops beating
and sleeps forever), `raise` (an ordinary exception) or `oom` (a CUDA out-of-memory error).
"""

from __future__ import annotations

import os
import random
import signal
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

ENV_VAR = "ANIME_WORKER_FAULTS"
KINDS = ("crash", "hang", "raise", "oom")


class InjectedFault(RuntimeError):
    """The `raise` fault."""


class InjectedOutOfMemory(RuntimeError):
    """The `oom` fault: reads like torch's `CUDA out of memory` error."""


@dataclass(frozen=True)
class Rule:
    kind: str
    image: int | None = None
    always: bool = False
    probability: float = 0.0
    seed: int = 0

    def fires(self, job_id: str, image: int, attempt: int) -> str | None:
        if self.kind == "random":
            draw = random.Random(f"{self.seed}:{job_id}:{image}:{attempt}")
            return draw.choice(KINDS) if draw.random() < self.probability else None
        if image == self.image and (self.always or attempt == 1):
            return self.kind
        return None


def parse_faults(text: str) -> list[Rule]:
    rules = []
    for part in filter(None, (piece.strip() for piece in text.split(","))):
        if part.startswith("random:"):
            _, probability, seed = part.split(":")
            rules.append(Rule("random", probability=float(probability), seed=int(seed)))
            continue
        kind, _, where = part.partition("@")
        image, _, mode = where.partition(":")
        if kind not in KINDS or not image.isdigit() or mode not in ("", "always"):
            raise ValueError(f"{ENV_VAR}: cannot read '{part}' (e.g. crash@3, hang@2:always)")
        rules.append(Rule(kind, image=int(image), always=mode == "always"))
    return rules


class FaultPlan:
    def __init__(self, rules: list[Rule]) -> None:
        self.rules = rules

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> FaultPlan:
        env = os.environ if env is None else env
        return cls(parse_faults(env.get(ENV_VAR, "")))

    @property
    def active(self) -> bool:
        return bool(self.rules)

    def kind_for(
        self,
        job_id: str,
        image: int,
        attempt: int,
        first_time: Callable[[], bool] | None = None,
    ) -> str | None:
        """The fault due as image `image` starts, if any. `first_time` (the journal's record
        that a once-only rule fired) replaces "first attempt" when several workers share a job."""
        for rule in self.rules:
            if rule.kind != "random" and not rule.always and first_time is not None:
                if rule.image == image and first_time():
                    return rule.kind
                continue
            kind = rule.fires(job_id, image, attempt)
            if kind is not None:
                return kind
        return None

    def before_image(
        self,
        job_id: str,
        image: int,
        attempt: int,
        first_time: Callable[[], bool] | None = None,
    ) -> None:
        """Called by the worker as image `image` of a job starts; may not return."""
        kind = self.kind_for(job_id, image, attempt, first_time)
        if kind is not None:
            trigger(kind, image)


def trigger(kind: str, image: int) -> None:
    if kind == "crash":
        os.kill(os.getpid(), signal.SIGKILL)
    elif kind == "hang":
        while True:
            time.sleep(3600)
    elif kind == "raise":
        raise InjectedFault(f"injected fault at image {image}")
    elif kind == "oom":
        raise InjectedOutOfMemory(f"CUDA out of memory (injected at image {image})")
