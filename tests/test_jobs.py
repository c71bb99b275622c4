"""The job journal on its own: queue order, runs, retries with backoff, cancel, concurrency."""

from __future__ import annotations

import multiprocessing
import time
from pathlib import Path

import pytest

from tools.jobs.job import JobState
from tools.jobs.journal import JobJournal


def specs(count: int, request_id: str = "r1") -> list[dict]:
    return [
        {
            "key": f"{request_id}:{index}",
            "request_id": request_id,
            "index": index,
            "character": "sakura",
            "pose": {"id": "standing_neutral", "tags": ["standing"]},
            "posture": "standing",
            "user_prompt": "",
            "seed": 7 + index,
            "collection": None,
        }
        for index in range(count)
    ]


@pytest.fixture
def journal(tmp_path: Path) -> JobJournal:
    return JobJournal.for_state(tmp_path / "state")


def test_submit_stores_images_one_by_one_and_summarises(journal):
    job_id = journal.submit(specs(3), label="test", overrides={"output": {"steps": 4}})
    job = journal.get(job_id)
    assert job.state == JobState.QUEUED and job.attempts == 0
    assert [image.key for image in job.images] == ["r1:0", "r1:1", "r1:2"]
    assert job.request["count"] == 3 and job.request["characters"] == ["sakura"]
    assert job.request["overrides"] == {"output": {"steps": 4}}
    assert journal.find(job_id[:6]).id == job_id


def test_interactive_requests_go_ahead_of_large_batches(journal):
    batch = journal.submit(specs(10, "big"))
    small = journal.submit(specs(2, "small"))
    second_small = journal.submit(specs(1, "small2"))
    order = [journal.claim(worker_pid=1).id for _ in range(3)]
    assert order == [small, second_small, batch]
    assert journal.claim(worker_pid=1) is None


def test_a_run_finishes_only_when_every_image_is_done(journal):
    journal.submit(specs(2))
    job = journal.claim(1)
    assert job.state == JobState.RUNNING and job.attempts == 1
    journal.image_done(job, 0, "/out/a.png", {"path": "/out/a.png"})
    with pytest.raises(RuntimeError, match="1 images to do"):
        journal.finish(job)
    journal.image_done(job, 1, "/out/b.png", {"path": "/out/b.png"})
    assert journal.finish(job)
    done = journal.get(job.id)
    assert done.state == JobState.DONE and done.summary()["outputs"] == ["/out/a.png", "/out/b.png"]


def test_failed_attempts_back_off_then_fail_with_the_reason(journal):
    job_id = journal.submit(specs(1))
    run = journal.claim(1)
    assert journal.attempt_failed(job_id, run.run_token, "boom", 2, backoff=30) == JobState.QUEUED
    waiting = journal.get(job_id)
    assert waiting.error == "boom" and waiting.not_before > time.time() + 25
    assert journal.claim(1) is None  # still backing off
    journal.retry(job_id)  # only failed/cancelled jobs are retried: no effect
    assert journal.get(job_id).not_before > time.time()
    with journal.transaction() as db:
        db.execute("UPDATE jobs SET not_before = 0")
    second = journal.claim(1)
    assert second.attempts == 2
    assert (
        journal.attempt_failed(job_id, second.run_token, "boom again", 2, backoff=30)
        == JobState.FAILED
    )
    failed = journal.get(job_id)
    assert (
        failed.state == JobState.FAILED
        and "boom again" in failed.error
        and "2 attempts" in failed.error
    )
    assert journal.retry(job_id) and journal.get(job_id).attempts == 0


def test_a_stale_run_cannot_touch_the_job_again(journal):
    job_id = journal.submit(specs(1))
    first = journal.claim(1)
    journal.attempt_failed(job_id, first.run_token, "hung", 3, backoff=0)
    second = journal.claim(2)
    assert journal.beat(first, {"step": 3}) is None
    assert journal.attempt_failed(job_id, first.run_token, "late", 3, backoff=0) is None
    journal.image_done(second, 0, "/out/a.png", {})
    assert not journal.finish(first)
    assert journal.finish(second)


def test_cancel_reaches_the_running_worker_through_its_heartbeat(journal):
    job_id = journal.submit(specs(2))
    run = journal.claim(1)
    assert journal.beat(run, {"step": 1}) == JobState.RUNNING
    assert journal.cancel(job_id)
    assert journal.beat(run, {"step": 2}) == JobState.CANCELLED
    assert not journal.cancel(job_id)
    assert journal.retry(job_id) and journal.get(job_id).state == JobState.QUEUED


def test_release_gives_the_run_back_uncounted(journal):
    job_id = journal.submit(specs(1))
    run = journal.claim(1)
    assert journal.release(job_id, run.run_token)
    job = journal.get(job_id)
    assert job.state == JobState.QUEUED and job.attempts == 0


def _submit_many(path: str, tag: str) -> None:
    journal = JobJournal(Path(path))
    for number in range(10):
        journal.submit(specs(2, f"{tag}{number}"))


def test_processes_submitting_at_once_lose_nothing(journal):
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_submit_many, args=(str(journal.path), t)) for t in "ab"]
    for process in workers:
        process.start()
    for process in workers:
        process.join(60)
        assert process.exitcode == 0
    claimed = []
    while (job := journal.claim(1)) is not None:
        claimed.append(job.request["count"])
    assert len(claimed) == 20


def test_jobs_cli_lists_and_cancels(tmp_path, monkeypatch):
    import json

    from typer.testing import CliRunner

    from assistant.jobs_cli import jobs_app

    monkeypatch.setenv("ANIME_HOME", str(tmp_path))
    journal = JobJournal.for_state(tmp_path / ".anime-chat")
    job_id = journal.submit(specs(2))
    runner = CliRunner()
    listed = json.loads(runner.invoke(jobs_app, ["--json"]).output)
    assert [(job["id"], job["state"], job["images"]) for job in listed] == [(job_id, "queued", 2)]
    assert runner.invoke(jobs_app, ["cancel", job_id[:5]]).exit_code == 0
    again = runner.invoke(jobs_app, ["cancel", job_id])
    assert again.exit_code == 1 and "already cancelled" in again.output
    assert runner.invoke(jobs_app, ["cancel", "nope"]).exit_code == 1
    assert "cancelled" in runner.invoke(jobs_app, []).output


def test_a_user_error_in_the_worker_reaches_the_cli_with_its_own_hint(journal, tmp_path):
    from tools.errors import UserError
    from tools.jobs.client import raise_unless_done

    job_id = journal.submit(specs(1))
    claimed = journal.claim(worker_pid=1)
    problem = UserError("checkpoint not found: x.safetensors", "put the file in ~/models")
    journal.attempt_failed(job_id, claimed.run_token, str(problem), 0, 0)
    failed = journal.find(job_id)
    assert failed.state == JobState.FAILED
    with pytest.raises(UserError) as err:
        raise_unless_done(failed, tmp_path)
    assert err.value.message == f"job {job_id} failed: checkpoint not found: x.safetensors"
    assert err.value.hint == f"put the file in ~/models; then anime-gen jobs retry {job_id}"


def test_a_background_process_runs_this_checkout_from_any_folder(tmp_path):
    import subprocess
    import sys

    import tools
    from tools.jobs.processes import child_env

    done = subprocess.run(
        [sys.executable, "-c", "import tools; print(tools.__file__)"],
        cwd=tmp_path,
        env=child_env({"PATH": "/usr/bin:/bin"}),
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert Path(done.stdout.strip()).resolve() == Path(tools.__file__).resolve()
