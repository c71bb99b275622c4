"""Image leases in the journal: several workers share one job; lost leases go back; faults once."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.test_jobs import specs
from tools.jobs.faults import ENV_VAR, FaultPlan
from tools.jobs.job import JobState
from tools.jobs.journal import JobJournal
from tools.jobs.leases import BeatWatch
from tools.sqlite_db import connect


@pytest.fixture
def journal(tmp_path: Path) -> JobJournal:
    return JobJournal.for_state(tmp_path / "state")


def test_two_workers_lease_different_images_of_one_job(journal):
    job_id = journal.submit(specs(5, "big"))
    job, first = journal.claim_images("gpu0", "a", 1, limit=2)
    again, second = journal.claim_images("gpu1", "b", 2, limit=2)
    assert job.id == again.id == job_id and first == [0, 1] and second == [2, 3]
    assert journal.get(job_id).state == JobState.RUNNING and journal.get(job_id).attempts == 1
    for index in first:
        assert journal.lease_done(job_id, index, "a", "gpu0", f"/out/{index}.png", {})
    assert not journal.lease_done(job_id, 2, "a", "gpu0", "/out/2.png", {})  # b's image
    for index in second:
        journal.lease_done(job_id, index, "b", "gpu1", f"/out/{index}.png", {})
    _, last = journal.claim_images("gpu1", "b", 2, limit=2)
    journal.lease_done(job_id, last[0], "b", "gpu1", "/out/4.png", {})
    done = journal.get(job_id)
    assert done.state == JobState.DONE and done.workers == ["gpu0", "gpu1"]
    assert done.summary()["images_done"] == done.summary()["images_total"] == 5


def test_a_lost_lease_puts_its_images_back_and_counts_an_attempt(journal):
    job_id = journal.submit(specs(3))
    journal.claim_images("gpu0", "a", 1, limit=1)
    journal.claim_images("gpu1", "b", 2, limit=1)
    assert journal.lease_failed("a", "worker process died (SIGKILL)", 3, 0) == {
        job_id: JobState.QUEUED
    }
    # b still draws image 1 and commits it; image 0 is free for anyone.
    assert journal.beat_lease(job_id, "b") and not journal.beat_lease(job_id, "a")
    assert journal.lease_done(job_id, 1, "b", "gpu1", "/out/1.png", {})
    job, again = journal.claim_images("gpu1", "b", 2, limit=3)
    assert again == [0, 2] and job.attempts == 2
    assert journal.lease_failed("b", "boom", 2, 0) == {job_id: JobState.FAILED}
    assert "gave up after 2 attempts" in journal.get(job_id).error


class Clock:
    """A clock the test moves: the wall clock (a step) or the watcher's monotonic one."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_silent_leases_are_found_and_a_stopped_worker_gives_back_uncounted(journal):
    job_id = journal.submit(specs(1))
    journal.claim_images("gpu0", "a", 1)
    clock = Clock(100.0)
    watch = BeatWatch(journal, clock)
    assert watch.silent(older_than=60) == {}
    clock.now += 61
    assert watch.silent(older_than=60) == {"a": 61}
    journal.beat_lease(job_id, "a")  # a beat: no longer silent
    assert watch.silent(older_than=60) == {}
    journal.release_leases("a", requeue=True)
    job = journal.get(job_id)
    assert job.state == JobState.QUEUED and job.attempts == 0


@pytest.mark.parametrize("step", [3600.0, -3600.0])
def test_a_wall_clock_step_neither_silences_a_beating_lease_nor_hides_a_hung_one(
    journal, monkeypatch, step
):
    """Issue 22 (suspected, confirmed): leases were judged by `time.time() - lease_beat`, so a
    step forward past hang_timeout (NTP, a laptop resume) made every beating worker look hung
    (the supervisor killed them all, a failed try each), and a step back hid a hung one for as
    long as the clock went back. The watcher now compares stamps with themselves."""
    job_id = journal.submit(specs(2))
    journal.claim_images("gpu0", "beating", 1)
    journal.claim_images("gpu1", "hung", 2)
    clock = Clock(100.0)
    watch = BeatWatch(journal, clock)
    assert watch.silent(older_than=60) == {}
    wall = time.time() + step
    monkeypatch.setattr(time, "time", lambda: wall)
    for _ in range(3):  # 3 x 30 s of the watcher's time: only the beating one beats
        clock.now += 30
        wall += 0.25
        assert journal.beat_lease(job_id, "beating")
        silent = watch.silent(older_than=60)
    assert set(silent) == {"hung"} and silent["hung"] == 90


@pytest.mark.parametrize("step", [3600.0, -3600.0])
def test_a_backoff_survives_a_wall_clock_step(journal, monkeypatch, step):
    """A failed job waits its backoff: a clock that went back an hour does not make it wait
    an hour more (a stamp further ahead than the longest backoff is due)."""
    job_id = journal.submit(specs(1))
    journal.claim_images("gpu0", "a", 1)
    journal.lease_failed("a", "worker process died (SIGKILL)", 3, backoff=30)
    assert journal.claim_images("gpu0", "b", 1) is None  # backing off
    wall = time.time() + step
    monkeypatch.setattr(time, "time", lambda: wall)
    claimed = journal.claim_images("gpu0", "b", 1)
    assert claimed is not None and claimed[0].id == job_id


def test_a_once_only_fault_fires_on_one_worker_only(journal):
    job_id = journal.submit(specs(3))
    plan = FaultPlan.from_env({ENV_VAR: "crash@1"})
    fired = [
        plan.kind_for(job_id, 1, 1, lambda: journal.mark_fault_fired(job_id, 1)) for _ in range(3)
    ]
    assert fired == ["crash", None, None]
    always = FaultPlan.from_env({ENV_VAR: "raise@1:always"})
    assert always.kind_for(job_id, 1, 2, lambda: journal.mark_fault_fired(job_id, 1)) == "raise"


def test_an_old_journal_gets_the_lease_columns_and_keeps_its_jobs(tmp_path):
    from tools.jobs.journal import JOURNAL_NAME
    from tools.jobs.journal_db import SCHEMA

    path = tmp_path / "state" / JOURNAL_NAME
    old = connect(path, SCHEMA)
    old.execute(
        "INSERT INTO jobs (id, seq, created, updated, priority, state, request)"
        ' VALUES (\'j1\', 1, 0, 0, 0, \'done\', \'{"characters": ["a"], "pose": "p"}\')'
    )
    old.execute(
        "INSERT INTO job_images (job_id, idx, key, spec, state) VALUES ('j1', 0, 'k', '{}', 'done')"
    )
    old.close()
    journal = JobJournal(path)
    job = journal.get("j1")
    assert job.state == JobState.DONE and job.workers == [] and job.images[0].tries == 0


def test_worker_slots_follow_gpus_and_cpu_workers(tmp_path, monkeypatch):
    from tools.jobs.supervisor import worker_slots
    from tools.settings import load_settings

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    assert set(worker_slots(load_settings(env={}, home=tmp_path))) == {"gpu0", "gpu1"}
    picked = load_settings(env={"ANIME_WORKER_GPUS": "[1]"}, home=tmp_path)
    assert worker_slots(picked) == {"gpu1": {"CUDA_VISIBLE_DEVICES": "1"}}
    cpu = load_settings(env={"ANIME_WORKER_CPU_WORKERS": "2"}, home=tmp_path)
    slots = worker_slots(cpu)
    assert list(slots) == ["cpu0", "cpu1"] and slots["cpu0"]["CUDA_VISIBLE_DEVICES"] == ""
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert list(worker_slots(load_settings(env={}, home=tmp_path))) == ["cpu0"]


def test_jobs_lists_workers_per_job_and_throughput_per_worker(tmp_path, monkeypatch):
    import json

    from typer.testing import CliRunner

    from assistant.gen_cli import app

    monkeypatch.setenv("ANIME_HOME", str(tmp_path))
    journal = JobJournal.for_state(tmp_path / ".anime-chat")
    older = journal.submit(specs(1, "old"), label="older")
    journal.claim_images("gpu0", "a", 1)
    journal.lease_done(older, 0, "a", "gpu0", "/out/old.png", {"seconds": 2.0})
    job_id = journal.submit(specs(3), label="three")
    for worker, token in (("gpu0", "a"), ("gpu1", "b"), ("gpu0", "a")):
        job, (index,) = journal.claim_images(worker, token, 1)
        journal.lease_done(job.id, index, token, worker, f"/out/{index}.png", {"seconds": 2.0})
    listed = CliRunner().invoke(app, ["jobs", "--json"])
    rows = json.loads(listed.stdout)
    assert [row["id"] for row in rows] == [job_id, older]  # newest first
    assert rows[0] | {"error": None} == rows[0] and {
        key: rows[0][key] for key in ("label", "images_done", "images_total", "workers")
    } == {"label": "three", "images_done": 3, "images_total": 3, "workers": ["gpu0", "gpu1"]}
    text = CliRunner().invoke(app, ["jobs"]).stdout
    assert "by gpu0,gpu1" in text
    assert "gpu0: 3 images, 30.0 images/min" in text and "gpu1: 1 image" in text


def test_a_job_cancelled_with_its_last_images_in_flight_retries_to_done(journal):
    """Issue 22 §1: the images in flight land after the cancel; a retry has nothing to draw."""
    job_id = journal.submit(specs(2))
    journal.claim_images("gpu0", "a", 1, limit=2)
    assert journal.cancel(job_id)
    assert not journal.beat_lease(job_id, "a")  # the worker learns of the cancel
    for index in (0, 1):  # ...but its files were already written: they are committed
        journal.lease_done(job_id, index, "a", "gpu0", f"/out/{index}.png", {})
    assert journal.get(job_id).state == JobState.CANCELLED
    assert journal.retry(job_id)
    job = journal.get(job_id)
    assert job.state == JobState.DONE and job.error is None and job.done_count == 2
    assert journal.pending_count() == 0


def test_one_off_failures_on_different_images_do_not_fail_the_job(journal):
    """Issue 22 §3: attempts count per image; three images failing once each is not a give-up."""
    job_id = journal.submit(specs(6, "big"))
    for failing in (1, 3, 5):
        while True:
            job, (index,) = journal.claim_images("gpu0", "a", 1, limit=1)
            if index == failing and job.images[index].tries == 1:
                assert journal.lease_failed("a", "crash", 3, 0) == {job_id: JobState.QUEUED}
                break
            journal.lease_done(job_id, index, "a", "gpu0", f"/out/{index}.png", {})
    while (claimed := journal.claim_images("gpu0", "a", 1, limit=1)) is not None:
        journal.lease_done(job_id, claimed[1][0], "a", "gpu0", "/out/x.png", {})
    assert journal.get(job_id).state == JobState.DONE


def test_a_poison_image_fails_the_job_naming_it(journal):
    job_id = journal.submit(specs(3))
    journal.claim_images("gpu0", "a", 1, limit=1)
    journal.lease_done(job_id, 0, "a", "gpu0", "/out/0.png", {})
    for attempt in (1, 2):
        job, indices = journal.claim_images("gpu0", "a", 1, limit=1)
        assert indices == [1]
        expected = JobState.QUEUED if attempt == 1 else JobState.FAILED
        assert journal.lease_failed("a", "boom", 2, 0) == {job_id: expected}
    error = journal.get(job_id).error
    assert "boom" in error and "gave up after 2 attempts" in error and "image 1" in error


def test_a_stopped_or_smaller_batch_lease_is_not_a_failed_try(journal):
    job_id = journal.submit(specs(1))
    for _ in range(3):
        journal.claim_images("gpu0", "a", 1)
        journal.release_leases("a", requeue=True)
    journal.claim_images("gpu0", "a", 1)
    assert journal.lease_failed("a", "boom", 2, 0) == {job_id: JobState.QUEUED}


def test_leases_cleared_after_a_kill_count_a_try_only_where_the_image_had_started(journal):
    """A Ray head SIGKILLed with two tasks out: on restart `clear_leases` counted a try for the
    images of the task that waited in the actor too, though they never started, and their
    once-only fault (marked as the task was sent) never fired."""
    once = FaultPlan.from_env({ENV_VAR: "crash@1,crash@2"})
    job_id = journal.submit(specs(4, "big"))

    def fault(index: int) -> str | None:
        return once.kind_for(job_id, index, 1, lambda: journal.mark_fault_fired(job_id, index))

    journal.claim_images("gpu0", "local", 1)  # image 0: a local worker starts what it leases
    journal.claim_images("ray-slot0", "ran", 1, limit=1, started=False)  # image 1
    assert fault(1) == "crash"  # (it fires: the task runs)
    journal.lease_started("ran")  # the actor said it runs it
    journal.lease_failed("ran", "ray actor died", 3, 0)  # ...and died of it
    with journal.transaction() as db:
        db.execute("UPDATE jobs SET not_before = 0")
    journal.claim_images("ray-slot0", "ran-again", 1, limit=2, started=False)  # images 1, 2
    journal.claim_images("ray-slot0", "waited", 1, limit=1, started=False)  # image 3
    assert fault(1) is None and fault(2) == "crash"  # 2's fault is due in the task sent...
    journal.clear_leases()  # ...but the head was killed before the actor said it ran it
    job = journal.get(job_id)
    assert job.state == JobState.RUNNING
    assert [image.tries for image in job.images] == [1, 1, 0, 0]
    assert fault(1) is None and fault(2) == "crash"  # 1's fired on its started try; 2's is due
    for _ in range(4):  # the restarted head draws every image, each once
        _, (index,) = journal.claim_images("ray-slot0", "next", 1, limit=1)
        assert journal.lease_done(job_id, index, "next", "ray-slot0", f"/out/{index}.png", {})
    job = journal.get(job_id)
    assert job.state == JobState.DONE and [image.tries for image in job.images] == [2, 2, 1, 1]


def test_a_journal_from_before_started_leases_counts_its_leases_as_before(tmp_path):
    """A journal with the lease columns of the release before `lease_started` opens, and its
    leases (whose worker died) count their try as they did."""
    from tools.jobs.journal import JOURNAL_NAME
    from tools.jobs.journal_db import IMAGE_LEASE_COLUMNS, SCHEMA
    from tools.sqlite_db import add_missing_columns

    path = tmp_path / "state" / JOURNAL_NAME
    old = connect(path, SCHEMA)
    before = {
        k: v for k, v in IMAGE_LEASE_COLUMNS.items() if k not in ("lease_started", "fault_lease")
    }
    add_missing_columns(old, "job_images", before)
    old.execute(
        "INSERT INTO jobs (id, seq, created, updated, priority, state, attempts, request)"
        " VALUES ('j1', 1, 0, 0, 0, 'running', 1, '{}')"
    )
    old.execute(
        "INSERT INTO job_images (job_id, idx, key, spec, state, lease, tries)"
        " VALUES ('j1', 0, 'k', '{}', 'pending', 'gone', 1)"
    )
    old.close()
    journal = JobJournal(path)
    journal.clear_leases()
    assert [image.tries for image in journal.get("j1").images] == [1]
