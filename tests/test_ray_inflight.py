"""Two tasks in flight per Ray actor (issue 22, "keep ≥ 2 tasks in flight per actor"): the next
one waits in the actor while the head commits the last. The one that waits is judged from when
it starts, an actor death gives both back (the try counted for the one that ran), a cancel
stops both (tests/test_ray_head.py), a head killed outright (SIGKILL) counts the try of the
one that ran only, and every image is saved once on a real local Ray.
"""

from __future__ import annotations

import importlib.util
import shutil
import signal
from pathlib import Path

import pytest

from tests import test_worker
from tests.test_ray_head import (  # noqa: F401  (fixtures)
    RayActorError,
    Ref,
    fake_ray,
    head_home,
    make_head,
    no_backoff,
    rendered,
    submit,
)
from tests.test_scale import assert_each_image_once, running_ray_head
from tools.jobs.job import JobState

studio = test_worker.studio


def turn(head) -> None:
    head._last_beat = 0.0  # beat and judge on this turn
    head.step()


def test_a_task_waiting_behind_a_running_one_is_not_judged_hung(head_home, fake_ray):  # noqa: F811
    head = make_head(head_home)
    job_id = submit(head_home, 2)
    fake_ray.behaviour = lambda actor, task: Ref(rendered(task), ready=False)
    head.step()
    slot, actor = head.slots[0], fake_ray.actors[0]
    running, waiting = slot.inflight
    assert actor.running == running.token
    for _ in range(3):  # the running one steps; the waiting one has waited "for ever"
        running.last_progress -= 2 * running.allowance
        waiting.last_progress -= 10 * waiting.allowance
        actor.ticks += 1
        turn(head)  # sends the probe
        turn(head)  # reads it
    assert not actor.killed and slot.inflight == [running, waiting]
    assert running.started and not waiting.started
    running.ref.ready = True  # it ends; the waiting one starts, its clock from now on
    turn(head)
    turn(head)
    assert slot.inflight == [waiting] and waiting.started and not actor.killed
    waiting.last_progress -= 2 * waiting.allowance  # now it is silent itself
    turn(head)
    turn(head)
    assert actor.killed
    job = head.journal.get(job_id)
    assert job.done_count == 1 and "no progress" in job.error
    assert [image.tries for image in job.images] == [1, 1]


def test_an_actor_death_gives_both_tasks_back_and_counts_one_try(head_home, fake_ray):  # noqa: F811
    head = make_head(head_home, faults="crash@1")
    job_id = submit(head_home, 2)
    fake_ray.behaviour = lambda actor, task: Ref(rendered(task), ready=False)
    head.step()
    first, second = head.slots[0].inflight
    assert second.faults == {1}  # its fault was due...
    for inflight in (first, second):  # the actor died: each of its calls answers so
        inflight.ref.ready, inflight.ref.error = True, RayActorError("the actor died")
    head.step()
    assert fake_ray.actors[0].killed and head.slots[0].inflight == []
    job = head.journal.get(job_id)
    assert job.done_count == 0 and "died" in job.error
    # The try counts for the task that ran, not for the one that waited behind it.
    assert [image.tries for image in job.images] == [1, 0]
    with head.journal.transaction() as db:
        assert (
            db.execute("SELECT COUNT(*) FROM job_images WHERE lease IS NOT NULL").fetchone()[0] == 0
        )
    fake_ray.behaviour = lambda actor, task: Ref(rendered(task))
    for _ in range(6):
        no_backoff(head)
        head.step()
    job = head.journal.get(job_id)
    assert job.state == JobState.DONE and [image.tries for image in job.images] == [2, 1]
    # ...and, as it never ran, comes with the image's next try.
    assert [task["faults"] for task in fake_ray.actors[1].tasks] == [{}, {1: "crash"}]


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="needs the ray extra")
def test_one_real_actor_holds_two_tasks_and_saves_every_image_once(studio, tmp_path):
    from tools.jobs.client import wait_for_job

    with running_ray_head(studio, tmp_path / "ray-head.log", slots=1) as (_head, log):
        settings, journal, job_id = test_worker.submit(4)
        wait_for_job(settings, job_id, timeout=300)
        text = log.read_text()
    job = assert_each_image_once(studio, job_id, 4)
    # Two tasks went to the one actor at once (the second waited in it), none was lost,
    # judged hung or drawn twice.
    assert "ray-slot0: a task of job" in text and "waits behind the running one" in text, text
    assert "no progress" not in text and "died (" not in text, text[-3000:]
    assert job.workers == ["ray-slot0"] and job.attempts == 1
    assert [image.tries for image in job.images] == [1, 1, 1, 1]


def test_a_head_stopped_with_two_tasks_out_gives_both_back_uncounted(head_home, fake_ray):  # noqa: F811
    head = make_head(head_home, faults="crash@1")
    job_id = submit(head_home, 2)
    fake_ray.behaviour = lambda actor, task: Ref(rendered(task), ready=False)
    head.step()
    assert [inflight.faults for inflight in head.slots[0].inflight] == [set(), {1}]
    head.stopping = True  # SIGTERM
    assert head.serve() == 0
    job = head.journal.get(job_id)
    assert job.state == JobState.QUEUED and job.attempts == 0
    assert [image.tries for image in job.images] == [0, 0]
    fake_ray.behaviour = lambda actor, task: Ref(rendered(task))
    restarted = make_head(head_home, faults="crash@1")
    for _ in range(4):
        restarted.step()
    assert restarted.journal.get(job_id).state == JobState.DONE
    # The fault of the task that waited never fired: it comes with the image's next try.
    assert {1: "crash"} in [task["faults"] for task in fake_ray.actors[-1].tasks]


def test_a_failing_head_counts_the_try_of_the_task_that_ran_only(
    head_home,  # noqa: F811
    fake_ray,  # noqa: F811
    monkeypatch,
):
    head = make_head(head_home)
    job_id = submit(head_home, 2)
    fake_ray.behaviour = lambda actor, task: Ref(rendered(task), ready=False)
    head.step()

    def broken() -> None:
        raise OSError("disk full")

    monkeypatch.setattr(head, "step", broken)
    with pytest.raises(OSError):
        head.serve()
    job = head.journal.get(job_id)
    assert job.state == JobState.QUEUED and "disk full" in job.error
    assert [image.tries for image in job.images] == [1, 0]
    with head.journal.transaction() as db:
        assert not db.execute("SELECT 1 FROM job_images WHERE lease IS NOT NULL").fetchall()


def test_both_first_tasks_of_a_fresh_actor_may_load_the_models(head_home, fake_ray):  # noqa: F811
    """Either may run first (Ray's threads take them in any order) and load the models: the
    one dispatched second must not get the short allowance of settings already loaded."""
    head = make_head(head_home)
    submit(head_home, 3)
    fake_ray.behaviour = lambda actor, task: Ref(rendered(task), ready=False)
    head.step()
    slot = head.slots[0]
    first, second = slot.inflight
    assert first.allowance == second.allowance == first.load_allowance
    first.ref.ready = True  # it came back: the actor has loaded these settings
    head.step()  # collected
    head.step()  # the next task is sent
    (_, third) = slot.inflight
    assert third.allowance == third.hang_timeout < third.load_allowance


def test_a_head_killed_with_two_tasks_out_counts_the_try_of_the_one_that_ran(head_home, fake_ray):  # noqa: F811
    """SIGKILL runs no `_stop`: the restarted head clears the leases the journal holds, and
    only the task the actor was seen running was a try (the other waited behind it)."""
    head = make_head(head_home, faults="crash@1")
    job_id = submit(head_home, 2)
    fake_ray.behaviour = lambda actor, task: Ref(rendered(task), ready=False)
    head.step()
    running, waiting = head.slots[0].inflight
    assert waiting.faults == {1}
    turn(head)  # sends the probe
    turn(head)  # reads it: the actor runs the first task
    assert running.started and not waiting.started
    del head  # SIGKILL: nothing of the head runs any more
    restarted = make_head(head_home, faults="crash@1")
    restarted.journal.clear_leases()  # as `run_ray_worker` does, the home's lock being free
    job = restarted.journal.get(job_id)
    assert [image.tries for image in job.images] == [1, 0]
    fake_ray.behaviour = lambda actor, task: Ref(rendered(task))
    for _ in range(4):
        restarted.step()
    job = restarted.journal.get(job_id)
    assert job.state == JobState.DONE and [image.tries for image in job.images] == [2, 1]
    assert job.done_count == 2
    # The fault of the task that waited never fired: it comes with the image's next try.
    assert {1: "crash"} in [task["faults"] for task in fake_ray.actors[-1].tasks]


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="needs the ray extra")
def test_a_real_head_killed_with_two_tasks_out_counts_one_try(studio, tmp_path, monkeypatch):
    """The real `anime-gen worker --ray` SIGKILLed while its actor runs one task (image 0
    hangs there) and holds the next: its restart counts the try of image 0 only."""
    from tools.jobs.client import wait_for_job

    monkeypatch.setenv("ANIME_WORKER_FAULTS", "hang@0")
    state = studio / ".anime-chat"
    with running_ray_head(studio, tmp_path / "killed.log", slots=1) as (head, _log):
        settings, journal, job_id = test_worker.submit(2)

        def leases() -> dict[int, int]:
            with journal.transaction() as db:
                rows = db.execute(
                    "SELECT idx, lease_started FROM job_images WHERE lease IS NOT NULL"
                )
                return {row["idx"]: row["lease_started"] for row in rows}

        test_worker.wait_until(lambda: leases() == {0: 1, 1: 0}, 300, "image 0 running, 1 waiting")
        head.send_signal(signal.SIGKILL)
        head.wait()
    # Its Ray temp dir (`run_ray_worker` removes it on a stop), named after the driver's pid.
    for session in Path("/tmp").glob(f"anime-ray-*/session_*_{head.pid}"):
        shutil.rmtree(session.parent, ignore_errors=True)
    (state / "ray.json").unlink()  # the killed head left it: the restarted one writes its own
    with running_ray_head(studio, tmp_path / "restarted.log", slots=1):
        wait_for_job(settings, job_id, timeout=300)
    job = assert_each_image_once(studio, job_id, 2)
    assert [image.tries for image in job.images] == [2, 1]
