"""The Ray head's loop against a stand-in for Ray (the boundary): which tasks it collects, what
one job's error does to the others, out of memory, broken devices, cancels, actor names.

The real cluster is tests/test_scale.py and tests/test_ray_cluster.py; here every interleaving is
set up by hand, so nothing waits on a real actor.
"""

from __future__ import annotations

import io
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from tests.test_jobs import specs
from tools.jobs.faults import FaultPlan, InjectedOutOfMemory
from tools.jobs.job import JobState


class RayError(Exception):
    pass


class RayTaskError(RayError):
    def __init__(self, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.cause = cause


class RayActorError(RayError):
    pass


class TaskCancelledError(RayError):
    pass


class Ref:
    def __init__(self, value: Any = None, error: BaseException | None = None, ready=True):
        self.value, self.error, self.ready, self.cancelled = value, error, ready, False


class FakeActor:
    def __init__(self, ray: FakeRay, name: str) -> None:
        self.ray, self.name, self.killed, self.tasks = ray, name, False, []
        self.ticks = 0
        method = SimpleNamespace
        self.host = method(remote=lambda: Ref({"host": "node-a", "pid": 1, "home": "/tmp/x"}))
        self.render = method(remote=self._render)
        self.progress = method(
            # Answered when read, as a real actor answers when the call reaches it.
            remote=lambda: Ref(
                lambda: {"ticks": self.ticks, "loading": False, "steps": 1, "running": self.running}
            )
        )
        self.cleanup = method(remote=lambda: Ref(None))
        self.refs: list[tuple[str, Ref]] = []

    @property
    def running(self) -> str | None:
        """The task it runs: the oldest unfinished one (one render at a time, in order)."""
        return next((token for token, ref in self.refs if not ref.ready), None)

    def _render(self, task: dict[str, Any]) -> Ref:
        self.tasks.append(task)
        ref = self.ray.behaviour(self, task)
        self.refs.append((task["token"], ref))
        return ref


class FakeRay:
    """What the head calls of `ray`; `behaviour(actor, task)` decides each task's ref."""

    exceptions = SimpleNamespace(
        RayError=RayError,
        RayTaskError=RayTaskError,
        RayActorError=RayActorError,
        TaskCancelledError=TaskCancelledError,
    )

    def __init__(self) -> None:
        self.actors: list[FakeActor] = []
        self.behaviour = lambda actor, task: Ref({"images": []})

    def remote(self, _cls: type) -> Any:
        ray = self

        class Options:
            def options(self, name: str, **_: Any) -> Any:
                return SimpleNamespace(remote=lambda *args: ray._new(name))

        return Options()

    def _new(self, name: str) -> FakeActor:
        actor = FakeActor(self, name)
        self.actors.append(actor)
        return actor

    def wait(self, refs: list[Ref], num_returns: int = 1, timeout: float | None = None):
        ready = [ref for ref in refs if ref.ready]
        return ready[:num_returns], [ref for ref in refs if ref not in ready[:num_returns]]

    def get(self, ref: Ref, timeout: float | None = None) -> Any:
        if ref.error is not None:
            raise ref.error
        return ref.value() if callable(ref.value) else ref.value

    def kill(self, actor: FakeActor) -> None:
        actor.killed = True

    def cancel(self, ref: Ref) -> None:
        ref.cancelled = True

    def put(self, data: bytes) -> Ref:
        return Ref(data)

    def get_runtime_context(self) -> Any:
        return SimpleNamespace(gcs_address="127.0.0.1:6379")


@pytest.fixture
def fake_ray(monkeypatch: pytest.MonkeyPatch) -> FakeRay:
    ray = FakeRay()
    for module in ("ray_head", "ray_slots", "ray_task"):
        monkeypatch.setattr(f"tools.jobs.{module}.ray_module", lambda: ray)
    return ray


@pytest.fixture
def head_home(anime_home: Path, reference_image: Path) -> Path:
    from PIL import Image

    from tools.characters.library import CharacterLibrary
    from tools.settings import load_settings

    CharacterLibrary(load_settings().paths).add("sakura", Image.open(reference_image))
    return anime_home


def make_head(home: Path, slots: int = 1, gpu: bool = False, faults: str = ""):
    from tools.jobs.faults import parse_faults
    from tools.jobs.ray_head import RayHead
    from tools.jobs.ray_slots import ActorSlot
    from tools.settings import load_settings

    settings = load_settings(env={}, home=home)
    names = [f"ray-{'gpu' if gpu else 'slot'}{n}" for n in range(slots)]
    head = RayHead(
        settings, [ActorSlot(n, gpu=gpu) for n in names], FaultPlan(parse_faults(faults))
    )
    head.step()  # spawn the actors
    head.step()  # they answer: ready
    assert all(slot.ready for slot in head.slots)
    return head


def tiny_png(colour: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), colour).save(buffer, format="PNG")
    return buffer.getvalue()


def rendered(task: dict[str, Any]) -> dict[str, Any]:
    """What an actor sends back for a task: a tiny PNG per image with its metadata."""
    from PIL import Image

    images = []
    for spec in task["specs"]:
        buffer = io.BytesIO()
        Image.new("RGB", (8, 8), (200, 30, 30)).save(buffer, format="PNG")
        placeholder = f"/ray-pending/{spec['index']}.png"
        meta = {
            **{"key": spec["key"], "character": spec["character"], "posture": "standing"},
            "pose": spec["pose"],
            **{"prompt": "p", "negative_prompt": "n", "seed": spec["seed"], "steps": 2},
            **{"sampler": "euler", "guidance_scale": 5.0, "width": 8, "height": 8},
            **{"model": "tiny", "clip_skip": 1, "controlnet": "c", "controlnet_strength": 1.0},
            **{"ipadapter": "i", "ipadapter_weight": 0.5},
        }
        save = {"placeholder": placeholder, "key": spec["key"], "meta": meta}
        images.append(
            {
                "key": spec["key"],
                "record": {"path": placeholder, "rejected": []},
                "saves": [{**save, "png": buffer.getvalue()}],
            }
        )
    return {"images": images}


def submit(home: Path, count: int, batch_size: int | None = None) -> str:
    from tools.jobs.journal import JobJournal
    from tools.settings import load_settings

    settings = load_settings(env={}, home=home).model_dump(mode="json")
    if batch_size is not None:
        settings["output"]["batch_size"] = batch_size
    journal = JobJournal.for_state(home / ".anime-chat")
    return journal.submit(specs(count), settings=settings)


def no_backoff(head: Any) -> None:
    """The backoff after a failed try is over (it is tested with the journal)."""
    with head.journal.transaction() as db:
        db.execute("UPDATE jobs SET not_before = 0")


def test_every_finished_task_is_collected_none_judged_hung(head_home, fake_ray):
    """Issue 22 §4: `ray.wait(num_returns=1)` named one ready task; another one past its
    allowance was declared hung, its actor killed and its images thrown away."""
    head = make_head(head_home, slots=2)
    job_id = submit(head_home, 2)
    fake_ray.behaviour = lambda actor, task: Ref(rendered(task), ready=False)
    head.step()  # both images are taken; neither is ready yet
    inflights = [inflight for slot in head.slots for inflight in slot.inflight]
    assert len(inflights) == 2
    for inflight in inflights:
        inflight.ref.ready = True
        inflight.last_progress -= 10 * head.settings.worker.hang_timeout  # long ago
    head._last_beat = 0.0
    head.step()
    assert not any(actor.killed for actor in fake_ray.actors)
    assert head.journal.get(job_id).state == JobState.DONE


def test_a_task_that_shows_progress_is_not_hung_however_long_it_runs(head_home, fake_ray):
    head = make_head(head_home)
    submit(head_home, 1)
    fake_ray.behaviour = lambda actor, task: Ref(rendered(task), ready=False)
    head.step()
    slot = head.slots[0]
    (inflight,) = slot.inflight
    for _ in range(3):
        inflight.last_progress -= 2 * inflight.allowance  # silent for longer than allowed...
        fake_ray.actors[0].ticks += 1  # ...but a step happened since the last probe
        head._last_beat = 0.0
        head.step()  # sends the probe
        head._last_beat = 0.0
        head.step()  # reads it
    assert not fake_ray.actors[0].killed and slot.inflight == [inflight]
    inflight.last_progress -= 2 * inflight.allowance  # now truly silent
    head._last_beat = 0.0
    head.step()
    head._last_beat = 0.0
    head.step()
    assert fake_ray.actors[0].killed
    job = head.journal.list()[0]
    assert job.state == JobState.QUEUED and "no progress" in job.error


def test_an_error_of_one_job_fails_that_job_and_the_head_serves_the_next(head_home, fake_ray):
    """Issue 22 §5: a character removed mid-render stopped the whole head (every slot), and
    the uncounted requeue made a deterministic error loop forever."""
    from tools.characters.library import CharacterLibrary

    head = make_head(head_home)
    doomed = submit(head_home, 1)
    fake_ray.behaviour = lambda actor, task: Ref(rendered(task), ready=False)
    head.step()
    CharacterLibrary(head.settings.paths).remove("sakura")
    head.slots[0].inflight[0].ref.ready = True
    head.step()  # commits: the character is gone
    failed = head.journal.get(doomed)
    assert failed.state == JobState.FAILED and "sakura" in failed.error
    head.step()  # still serving
    assert head.slots[0].ready and not fake_ray.actors[0].killed


def test_out_of_memory_halves_the_batch_then_asks_for_low_memory(head_home, fake_ray):
    """Issue 22 §6: Ray retried an OOM at the same batch and never set low_memory."""
    head = make_head(head_home, gpu=True)
    job_id = submit(head_home, 4, batch_size=4)
    oom = RayTaskError(InjectedOutOfMemory("CUDA out of memory (injected)"))
    fake_ray.behaviour = lambda actor, task: Ref(error=oom)
    sizes = []
    for _ in range(4):
        no_backoff(head)
        head.step()  # a task, at once answered by the error
        sizes.append(len(fake_ray.actors[0].tasks[-1]["specs"]))
    assert sizes[:3] == [4, 2, 1]
    job = head.journal.get(job_id)
    assert job.low_memory and fake_ray.actors[0].tasks[-1]["low_memory"]


def test_a_broken_device_gets_a_new_actor(head_home, fake_ray):
    head = make_head(head_home, gpu=True)
    submit(head_home, 1)
    broken = RayTaskError(RuntimeError("CUDA error: device-side assert triggered"))
    fake_ray.behaviour = lambda actor, task: Ref(error=broken)
    head.step()
    head.step()
    assert fake_ray.actors[0].killed
    head.step()
    assert len(fake_ray.actors) == 2 and not fake_ray.actors[1].killed


def test_a_cancel_stops_the_running_task_and_a_retry_draws_the_rest(head_home, fake_ray):
    """Issue 22 §1 on Ray: the head ignored beat_lease's False, so a cancel never stopped a task."""
    head = make_head(head_home)
    job_id = submit(head_home, 2)
    fake_ray.behaviour = lambda actor, task: Ref(rendered(task), ready=False)
    head.step()  # both images: one task runs, the other waits behind it
    refs = [inflight.ref for inflight in head.slots[0].inflight]
    assert len(refs) == 2
    head.journal.cancel(job_id)
    head._last_beat = 0.0
    head.step()
    assert all(ref.cancelled for ref in refs)  # the waiting one too
    for ref in refs:
        ref.ready, ref.error = True, RayTaskError(RuntimeError("cancelled by the head"))
    head.step()  # the cancelled tasks end: nothing of them is committed, nothing counted
    job = head.journal.get(job_id)
    assert job.state == JobState.CANCELLED and job.done_count == 0
    assert head.journal.retry(job_id)
    fake_ray.behaviour = lambda actor, task: Ref(rendered(task))
    for _ in range(4):
        head.step()
    assert head.journal.get(job_id).state == JobState.DONE


def test_two_homes_name_their_actors_apart(head_home, fake_ray, tmp_path):
    """Issue 22 §7: both heads named their actors `ray-slot0-1` in one namespace."""
    import shutil

    other = tmp_path / "other-home"
    shutil.copytree(head_home, other)
    first, second = make_head(head_home), make_head(other)
    names = [actor.name for actor in fake_ray.actors]
    assert len(set(names)) == 2
    assert first.slots[0].actor_name != second.slots[0].actor_name


def test_an_actor_that_cannot_start_is_given_up(head_home, fake_ray):
    from tools.jobs.ray_head import RayHead
    from tools.jobs.ray_slots import MAX_START_FAILURES, ActorSlot
    from tools.settings import load_settings

    original = fake_ray._new

    def failing(name: str) -> FakeActor:
        actor = original(name)
        actor.host = SimpleNamespace(remote=lambda: Ref(error=RayActorError("init failed")))
        return actor

    fake_ray._new = failing
    settings = load_settings(env={}, home=head_home)
    head = RayHead(settings, [ActorSlot("ray-slot0", gpu=False)], FaultPlan([]))
    for _ in range(MAX_START_FAILURES):
        head.slots[0].respawn_at = 0.0
        head.step()
        head.step()
    assert head.slots[0].given_up and head.serve() == 1


def test_a_character_sheet_and_its_calibration_land_in_the_heads_home(
    head_home, fake_ray, reference_image
):
    """Issue 22 (suspected, confirmed): a sheet image's task named the head's staging path and
    reference path (the actor wrote there, on its own machine, and the head got nothing; the
    task builder even failed: the new character is not in the library yet), and baselines an
    actor measured stayed in its throwaway library (a sheet's calibration job did nothing)."""
    from tools.jobs.journal import JobJournal
    from tools.jobs.ray_actor import RenderActor

    head = make_head(head_home)
    staging = head_home / ".anime-chat" / "sheets" / "newbie"
    sheet = {**specs(1, "sheet")[0], "character": "newbie"}
    sheet["sheet"] = {
        "tags": "1girl",
        "reference": str(reference_image),
        "path": str(staging / "0.png"),
    }
    journal = JobJournal.for_state(head_home / ".anime-chat")
    sheet_job = journal.submit([sheet])
    calibration = journal.submit([{**specs(1, "cal")[0], "calibration_only": True}])
    drawn = tiny_png()

    def actor_side(actor: FakeActor, task: dict[str, Any]) -> Ref:
        (spec,) = task["specs"]
        if spec.get("sheet"):
            local = RenderActor._local_sheet(
                SimpleNamespace(home=actor_home), spec, task["sheet_references"]
            )
            assert str(head_home) not in local.model_dump_json()  # the actor's own paths
            assert Path(local.sheet.reference).read_bytes() == reference_image.read_bytes()
            record = {"path": local.sheet.path, "rejected": []}
            item = {"key": spec["key"], "record": record, "saves": [], "sheet_png": drawn}
            return Ref({"images": [item], "baselines": {}})
        record = {"path": None, "rejected": []}
        item = {"key": spec["key"], "record": record, "saves": []}
        return Ref({"images": [item], "baselines": {"sakura": {"consistency_baseline": 0.42}}})

    actor_home = head_home.parent / "actor-home"
    actor_home.mkdir()
    fake_ray.behaviour = actor_side
    for _ in range(4):
        head.step()
    done = journal.get(sheet_job)
    assert done.state == JobState.DONE, done.error
    assert done.images[0].path == str(staging / "0.png")
    assert (staging / "0.png").read_bytes() == drawn
    assert journal.get(calibration).state == JobState.DONE
    assert head.runtime.characters.get("sakura").consistency_baseline == 0.42


def test_a_damaged_sheet_png_fails_its_try_and_is_not_written(head_home, fake_ray):
    from tools.jobs.journal import JobJournal

    head = make_head(head_home)
    staging = head_home / ".anime-chat" / "sheets" / "newbie"
    sheet = {**specs(1, "sheet")[0], "character": "newbie"}
    sheet["sheet"] = {"tags": "1girl", "reference": None, "path": str(staging / "0.png")}
    journal = JobJournal.for_state(head_home / ".anime-chat")
    job_id = journal.submit([sheet])

    def actor_side(actor: FakeActor, task: dict[str, Any]) -> Ref:
        (spec,) = task["specs"]
        record = {"path": "/actor-home/sheets/0.png", "rejected": []}
        cut = tiny_png()[:-20]  # the actor's file ends early
        return Ref(
            {"images": [{"key": spec["key"], "record": record, "saves": [], "sheet_png": cut}]}
        )

    fake_ray.behaviour = actor_side
    for _ in range(4):
        head.step()
    job = journal.get(job_id)
    assert job.done_count == 0 and "PNG" in (job.error or ""), job
    assert not (staging / "0.png").exists()
