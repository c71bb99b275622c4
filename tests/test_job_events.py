"""A job's event stream never depends on when it samples the journal: each image's last step,
each image and the job's end reach the client even when the render outran every sample."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.test_jobs import specs
from tools.jobs.journal import JobJournal
from tools.server.app import create_app
from tools.server.studio import Studio

TOKEN = "test-token"
STEPS = 4


@pytest.fixture
def app_client(anime_home: Path) -> TestClient:
    from assistant.studio import routers

    studio = Studio(anime_home, TOKEN, "127.0.0.1")
    return TestClient(create_app(studio, routers()), base_url="http://127.0.0.1:7788")


def _events(client: TestClient, job_id: str) -> list[tuple[str, dict]]:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    answer = client.get(f"/api/jobs/{job_id}/events", headers=headers)
    assert answer.status_code == 200, answer.text
    events = []
    for block in answer.text.split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        if "event" in lines:
            events.append((lines["event"], json.loads(lines["data"])))
    return events


def _finish_unseen(journal: JobJournal, count: int, beat_steps: bool) -> str:
    """A job whose images all rendered and landed before any client looked (a fast machine)."""
    job_id = journal.submit(specs(count), settings={"output": {"steps": STEPS}})
    _, indices = journal.claim_images("w", "token", 1, limit=count)
    for index in indices:
        journal.beat_lease(job_id, "token", {"image": index, "step": 0, "phase": "rendering"})
        if beat_steps:
            progress = {"image": index, "step": STEPS, "steps": STEPS, "phase": "rendering"}
            journal.beat_lease(job_id, "token", progress)
        journal.lease_done(job_id, index, "token", "w", f"/out/{index}.png", {"seed": index})
    return job_id


@pytest.mark.parametrize("beat_steps", [False, True])
def test_every_image_shows_its_last_step_then_lands_then_the_job_ends(
    app_client, anime_home, beat_steps
):
    journal = JobJournal.for_state(anime_home / ".anime-chat")
    job_id = _finish_unseen(journal, 3, beat_steps)
    events = _events(app_client, job_id)
    kinds = [kind for kind, _ in events]
    assert kinds[-1] == "end" and kinds.count("end") == 1
    assert events[-1][1]["state"] == "done" and len(events[-1][1]["records"]) == 3
    for index in range(3):
        landed = next(i for i, (k, d) in enumerate(events) if k == "image" and d["index"] == index)
        steps = [d["step"] for k, d in events[:landed] if k == "progress" and d["image"] == index]
        assert steps and steps[-1] == STEPS, events
        assert events[landed][1]["record"] == {"seed": index}


def test_the_worker_records_each_images_last_step_however_fast_the_steps_come(
    tmp_path, monkeypatch
):
    from tools.jobs import heartbeat

    # Beats closer together than BEAT_EVERY are coalesced; a whole render can fit in one gap.
    monkeypatch.setattr(heartbeat, "BEAT_EVERY", 3600.0)
    journal = JobJournal.for_state(tmp_path / "state")
    job_id = journal.submit(specs(1))
    job, _ = journal.claim_images("w", "token", 1)
    beats = heartbeat.Heartbeat(journal, job, "token")
    beats.beat(force=True, image=0, step=0, phase="rendering")
    for step in range(1, STEPS + 1):
        beats.on_step(step, STEPS)
        if step < STEPS:
            assert journal.get(job_id).progress["step"] == 0  # coalesced
    assert journal.get(job_id).progress == {
        "image": 0,
        "step": STEPS,
        "steps": STEPS,
        "phase": "rendering",
    }
