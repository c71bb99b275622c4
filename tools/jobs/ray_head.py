"""The head of `anime-gen worker --ray`: leases images for each actor slot and commits results.

For each slot (one actor per GPU of the cluster, or `--slots N` CPU actors) the head leases
images from the journal, under a token per task, exactly as a local worker does, sends the actor
what the images need (`tools.jobs.ray_task`), saves the PNG bytes it sends back under their keys
(the head owns the output store and the index) and commits them. Each actor holds two tasks
(one renders, the next waits in it: its GPU never idles while the head commits). A dead actor's
running task fails (the job backs off), the waiting one goes back uncounted, a new actor takes
the slot. A running task that shows no progress (steps, phases) for `worker.hang_timeout` (the
load allowance while it loads) is a hang. One job's error fails its try; the others go on.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import time
import traceback
import uuid

from tools.errors import UserError
from tools.jobs.faults import FaultPlan
from tools.jobs.heartbeat import load_allowance
from tools.jobs.job import Job
from tools.jobs.journal import JobJournal
from tools.jobs.ray_actor import RenderActor, ray_module
from tools.jobs.ray_commit import commit_task
from tools.jobs.ray_slots import (
    MAX_START_FAILURES,
    TASKS_PER_ACTOR,
    ActorSlot,
    InFlight,
    home_tag,
)
from tools.jobs.ray_task import TaskBuilder
from tools.jobs.worker import is_device_broken, is_out_of_memory
from tools.settings import Settings, load_settings

log = logging.getLogger("anime.ray")

NAMESPACE = "anime-chat"
INFO_NAME = "ray.json"  # <state>/ray.json: the head's pid, cluster address and actor names
POLL_SECONDS = 0.2
BEAT_SECONDS = 1.0
CLEANUP_SECONDS = 10.0  # how long the head waits for each actor to remove its home on stop


class RayHead:
    def __init__(self, settings: Settings, slots: list[ActorSlot], faults: FaultPlan) -> None:
        from tools.generation.runtime import Runtime

        self.settings = settings
        self.runtime = Runtime(settings)
        self.journal = JobJournal.for_state(settings.paths.state)
        self.slots = slots
        self.tasks = TaskBuilder(settings, self.runtime, self.journal, faults)
        self.stopping = False
        self.home_tag = home_tag(settings.home)
        self._config = load_settings(env={}, home=settings.home).model_dump(mode="json")
        self._last_beat = 0.0

    # -- the loop ----------------------------------------------------------------------------
    def serve(self) -> int:
        reason = None
        try:
            while not self.stopping:
                if all(slot.given_up for slot in self.slots):
                    log.error("no ray actor can start; giving up")
                    return 1
                self.step()
        except BaseException as error:
            reason = f"ray head failed ({type(error).__name__}: {error})"
            raise
        finally:
            self._stop(reason)
        return 0

    def step(self) -> None:
        """One turn: start actors, hand out work, collect every finished task, judge the rest."""
        ray = ray_module()
        for slot in self.slots:
            if slot.given_up:
                continue
            if slot.actor is None and time.monotonic() >= slot.respawn_at:
                self._spawn(slot)
            if slot.actor is not None and not slot.ready:
                self._check_started(slot)
            # Up to TASKS_PER_ACTOR each: the next waits in the actor while the head commits.
            while slot.ready and len(slot.inflight) < TASKS_PER_ACTOR and not self.stopping:
                if not self._dispatch(slot):
                    break
        refs = [inflight.ref for slot in self.slots for inflight in slot.inflight]
        if not refs:
            time.sleep(POLL_SECONDS)
            return
        ready, _ = ray.wait(refs, num_returns=1, timeout=POLL_SECONDS)
        if ready:  # every finished task, not only the first: none is judged hung once done
            ready, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
        for slot in self.slots:
            for inflight in list(slot.inflight):  # in submission order
                if inflight.ref in ready and inflight in slot.inflight:  # (not lost meanwhile)
                    self._collect(slot, inflight)
        self._beat()

    def _spawn(self, slot: ActorSlot) -> None:
        ray = ray_module()
        slot.incarnation += 1
        # The home's tag: two homes (two heads) can share one cluster and its namespace.
        slot.actor_name = f"{slot.name}-{self.home_tag}-{slot.incarnation}"
        slot.loaded = set()
        resources = {"num_gpus": 1, "num_cpus": 1} if slot.gpu else {"num_cpus": 1}
        slot.actor = (
            ray.remote(RenderActor)
            # Its tasks (one renders, the others wait) and the head's progress probes at once.
            .options(
                name=slot.actor_name,
                max_restarts=0,
                max_concurrency=TASKS_PER_ACTOR + 1,
                **resources,
            )
            .remote(slot.name, self._config)
        )
        slot.started, slot.ready = slot.actor.host.remote(), False
        log.info("starting actor %s", slot.actor_name)
        self._write_info()

    def _check_started(self, slot: ActorSlot) -> None:
        ray = ray_module()
        ready, _ = ray.wait([slot.started], timeout=0)
        if not ready:
            return
        try:
            where = ray.get(slot.started)
        except ray.exceptions.RayError as error:
            slot.start_failures += 1
            log.warning("actor %s did not start (%s)", slot.actor_name, type(error).__name__)
            slot.actor = None
            if slot.start_failures >= MAX_START_FAILURES:
                log.error("slot %s: its actor cannot start; giving it up", slot.name)
                slot.given_up = True
            slot.respawn_at = time.monotonic() + min(0.5 * 2**slot.start_failures, 30.0)
            return
        slot.ready, slot.start_failures = True, 0
        log.info(
            "actor %s runs on %s (pid %s, home %s)",
            slot.actor_name,
            where["host"],
            where["pid"],
            where.get("home"),
        )

    def _write_info(self) -> None:
        from tools.atomic import write_json_atomic

        ray = ray_module()
        info = {
            "pid": os.getpid(),
            "address": ray.get_runtime_context().gcs_address,
            "namespace": NAMESPACE,
            # What another driver needs to join a token-protected cluster (this file is 0600).
            "auth_token": os.environ.get("RAY_AUTH_TOKEN"),
            "actors": {slot.name: slot.actor_name for slot in self.slots if slot.actor_name},
        }
        write_json_atomic(self.settings.paths.state / INFO_NAME, info)

    def _dispatch(self, slot: ActorSlot) -> bool:
        """Lease images for one more task of the slot's actor; False when none are waiting."""
        token = f"{slot.name}:{uuid.uuid4().hex[:12]}"
        limit = functools.partial(slot.batch_size, default=self.settings.output.batch_size)
        # Not started: the task may wait in the actor behind another (`_judge` says when it runs)
        claimed = self.journal.claim_images(slot.name, token, os.getpid(), limit, started=False)
        if claimed is None:
            return False
        job, indices = claimed
        images = [image for image in job.images if image.index in indices]
        try:
            task = self.tasks.task(job, images)
        except Exception as error:
            self._job_failed(slot, token, job, error)
            return False  # (the slot fills on the next turn)
        task["token"] = token  # the actor names the task it runs by it
        settings_key = json.dumps(task["request"].get("settings"), sort_keys=True)
        timeout = self.settings.worker.hang_timeout
        loading = load_allowance(timeout)
        # Loaded once a task came back: the next may run first (threads take them in any order)
        allowance = timeout if settings_key in slot.loaded else loading
        ref = slot.actor.render.remote(task)
        task_args = (allowance, timeout, loading, set(task["faults"]), settings_key)
        slot.inflight.append(InFlight(ref, token, job, images, *task_args))
        if len(slot.inflight) > 1:
            log.info("%s: a task of job %s waits behind the running one", slot.name, job.id)
        self.journal.beat_lease(job.id, token, {"image": indices[0], "phase": "rendering"})
        return True

    def _collect(self, slot: ActorSlot, inflight: InFlight) -> None:
        ray = ray_module()
        try:
            result = ray.get(inflight.ref)
        except ray.exceptions.RayError as error:
            if not isinstance(error, ray.exceptions.RayTaskError) and not (
                inflight.cancelled and isinstance(error, ray.exceptions.TaskCancelledError)
            ):  # the actor died: this task and the one waiting behind it (`_lost`)
                self._lost(slot, f"ray actor {slot.name} died ({type(error).__name__})")
                return
            slot.inflight.remove(inflight)
            cause = getattr(error, "cause", None)
            if not inflight.cancelled:
                self._task_failed(
                    slot, inflight, cause if isinstance(cause, BaseException) else error
                )
            return
        slot.inflight.remove(inflight)
        slot.loaded.add(inflight.settings_key)
        if inflight.cancelled:  # its leases were given back: nothing of it is committed
            return
        try:
            commit_task(self.runtime, self.journal, slot.name, inflight, result)
        except Exception as error:  # one job's error (a character removed mid-render, disk full)
            self._job_failed(slot, inflight.token, inflight.job, error)

    def _task_failed(self, slot: ActorSlot, inflight: InFlight, cause: BaseException) -> None:
        """The actor raised: as the local worker does, out of memory halves the batch, then
        renders in low-memory mode; a broken device gets a new actor."""
        job, size = inflight.job, len(inflight.images)
        if is_out_of_memory(cause) and size > 1:
            slot.batch_limit = size // 2
            log.warning("job %s: out of memory at batch %d on %s", job.id, size, slot.name)
            self.journal.release_leases(inflight.token)
            return
        self._job_failed(slot, inflight.token, job, cause, low_memory=is_out_of_memory(cause))
        if is_device_broken(cause):
            log.warning("%s: its device is broken; replacing the actor", slot.name)
            self._replace(slot)

    def _job_failed(
        self,
        slot: ActorSlot,
        token: str,
        job: Job,
        error: BaseException,
        low_memory: bool = False,
    ) -> None:
        """An error of one job: its try fails (a user error is not retried); the head goes on."""
        worker = self.settings.worker
        if isinstance(error, UserError):
            self.journal.lease_failed(token, str(error), 0, 0)
            return
        reason = f"{type(error).__name__}: {error}".splitlines()[0]
        log.warning("job %s on %s: %s\n%s", job.id, slot.name, reason, traceback.format_exc())
        self.journal.lease_failed(
            token, reason, worker.max_attempts, worker.retry_backoff, low_memory=low_memory
        )

    def _lost(self, slot: ActorSlot, reason: str) -> None:
        """The slot's actor is gone or given up on: its images back to the queue, a new actor.
        The try counts for the task it ran (seen running, else the oldest); a task that waited
        behind it gives its images back uncounted."""
        worker = self.settings.worker
        for inflight in slot.ran():
            slot.inflight.remove(inflight)
            for job_id, state in self.journal.lease_failed(
                inflight.token, reason, worker.max_attempts, worker.retry_backoff
            ).items():
                log.warning("job %s: %s -> %s", job_id, reason, state)
        self._replace(slot)

    def _replace(self, slot: ActorSlot) -> None:
        """A new actor for the slot; the tasks still waiting in the old one give their images
        back uncounted."""
        with contextlib.suppress(Exception):
            ray_module().kill(slot.actor)
        for inflight in slot.inflight:
            self.journal.release_leases(inflight.token)
            self.journal.unfire_faults(inflight.job.id, list(inflight.faults))
        slot.actor, slot.inflight, slot.ready, slot.probe = None, [], False, None

    def _beat(self) -> None:
        """Beat each busy slot's leases (a cancelled job cancels its task) and judge progress."""
        now = time.monotonic()
        if now - self._last_beat < BEAT_SECONDS:
            return
        self._last_beat = now
        for slot in self.slots:
            for inflight in slot.inflight:
                if inflight.cancelled or self.journal.beat_lease(inflight.job.id, inflight.token):
                    continue
                log.info("job %s ended; cancelling its task on %s", inflight.job.id, slot.name)
                inflight.cancelled = True
                self.journal.release_leases(inflight.token)
                ray_module().cancel(inflight.ref)
            if slot.inflight:
                self._judge(slot)

    def _judge(self, slot: ActorSlot) -> None:
        """A hang is a probe answered with no progress of a task for its allowance, or a probe
        the actor has not answered for that long (the process is stuck whole). A task that
        waits behind the running one is judged from when it starts (`InFlight.saw`)."""
        ray = ray_module()
        answered = False
        if slot.probe is not None:
            ready, _ = ray.wait([slot.probe], timeout=0)
            if ready:
                with contextlib.suppress(ray.exceptions.RayError):
                    progress = ray.get(slot.probe)
                    for inflight in slot.inflight:
                        if inflight.saw(progress, slot.probe_sent):  # a try from now on
                            self.journal.lease_started(inflight.token)
                slot.probe, answered = None, True
        for inflight in slot.inflight:
            if not (inflight.started or inflight is slot.inflight[0]):
                continue  # it waits behind the running one: that one is judged
            unanswered = slot.probe is not None and (
                time.monotonic() - slot.probe_sent > inflight.allowance
            )
            if inflight.silent_for() > inflight.allowance and (answered or unanswered):
                silent = inflight.silent_for()
                log.warning("%s: no progress for %.0f s; killing its actor", slot.name, silent)
                inflight.started = True  # the try counts for the task that hung
                self._lost(slot, f"worker hung (no progress for {inflight.allowance:g} s)")
                return
        if slot.probe is None:
            slot.probe, slot.probe_sent = slot.actor.progress.remote(), time.monotonic()

    def _stop(self, failure: str | None = None) -> None:
        """Stop every actor (each removes its home first). A stop on purpose gives the images
        back uncounted; a head that failed counts the try of each task that ran, so a
        deterministic error ends (a task waiting behind it gives its images back uncounted)."""
        ray = ray_module()
        worker = self.settings.worker
        for slot in self.slots:
            ran = slot.ran()
            for inflight in slot.inflight:
                if failure is not None and inflight in ran:
                    self.journal.lease_failed(
                        inflight.token, failure, worker.max_attempts, worker.retry_backoff
                    )
                    continue
                self.journal.release_leases(inflight.token, requeue=True)
                if inflight not in ran:
                    self.journal.unfire_faults(inflight.job.id, list(inflight.faults))
            if slot.actor is not None:
                with contextlib.suppress(Exception):
                    ray.get(slot.actor.cleanup.remote(), timeout=CLEANUP_SECONDS)
                with contextlib.suppress(Exception):
                    ray.kill(slot.actor)
        (self.settings.paths.state / INFO_NAME).unlink(missing_ok=True)
