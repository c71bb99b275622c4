"""The REPL driven through stdin: commands, answers with paths, conversation memory, Ctrl-C.

Rendering (the worker boundary, `tools.generation.toolbox._render`) is replaced by a fake
generator that writes small PNGs and records requests.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from assistant.chat_cli import app
from assistant.planners.base import PoseRef
from tests.test_ollama_planner import closed_port_host
from tools.generation.specs import OutputRecord


class FakeGenerator:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.requests = []

    def run(self, request, on_image=None):
        self.requests.append(request)
        records = []
        for i in range(request.count):
            path = self.folder / f"{request.character}_{len(self.requests)}_{i}.png"
            Image.new("RGB", (32, 48), (40 * i % 255, 90, 160)).save(path)
            tags = (request.pose or "standing").split()
            record = OutputRecord(path=str(path), character=request.character,
                                  pose=PoseRef(id=f"{tags[0]}_{i}", tags=tags),
                                  seed=(request.seed or 100) + i)  # fmt: skip
            records.append(record)
            if on_image:
                on_image(record)
        return records


@pytest.fixture
def generator(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeGenerator:
    from tools.characters.library import CharacterLibrary
    from tools.settings import load_settings

    monkeypatch.setenv("ANIME_HOME", str(tmp_path))
    monkeypatch.setenv("OLLAMA_HOST", closed_port_host())
    monkeypatch.setenv("ANIME_CHAT_IMAGES", "off")
    CharacterLibrary(load_settings().paths).add("yuki", Image.new("RGB", (64, 64), "pink"))
    monkeypatch.setattr(
        "assistant.context.pose_lookup",
        lambda runtime: lambda query: PoseRef(id=None, tags=query.split()),
    )
    fake = FakeGenerator(tmp_path)
    monkeypatch.setattr(
        "tools.generation.toolbox._render",
        lambda runtime, request, on_image: fake.run(request, on_image),
    )
    return fake


def repl(*lines: str):
    return CliRunner().invoke(app, ["--planner", "rules"], input="".join(f"{x}\n" for x in lines))


def test_commands_and_a_request_with_paths_and_contact_sheet(generator, tmp_path):
    result = repl("/help", "/characters", "draw yuki sitting in the rain, 2 variations", "/quit")
    assert result.exit_code == 0, result.output
    assert "/characters" in result.output and "yuki" in result.output
    [request] = generator.requests
    assert (request.character, request.pose, request.prompt, request.count) == (
        "yuki", "sitting", "in the rain", 2)  # fmt: skip
    for i in range(2):
        assert str(tmp_path / f"yuki_1_{i}.png") in result.output
    assert "2 accepted, 0 rejected" in result.output
    [sheet] = (tmp_path / "anime-output" / "contact-sheets").glob("*.png")
    assert str(sheet) in result.output and Image.open(sheet).size == (512, 256)


def test_follow_ups_reuse_the_previous_request_and_seeds(generator):
    result = repl("draw yuki sitting, 2 variations, seed 7", "3 more of that",
                  "the second one again but smiling")  # fmt: skip
    assert result.exit_code == 0, result.output
    first, more, again = generator.requests
    assert (more.character, more.pose, more.count) == ("yuki", "sitting", 3)
    # "the second one" is the second image of the latest result (seeds 100, 101, 102)
    assert (again.count, again.seed, again.prompt) == (1, 101, "smiling")


def test_ctrl_c_cancels_the_job_for_real_and_keeps_the_session(anime_home, monkeypatch):
    """Ctrl-C (a real SIGINT) while the request waits for the worker: the job is cancelled in
    the journal, and the session goes on (/jobs answers, and shows it cancelled)."""
    from tools.characters.library import CharacterLibrary
    from tools.jobs.job import JobState
    from tools.jobs.journal import JobJournal
    from tools.jobs.processes import worker_lock
    from tools.settings import load_settings

    monkeypatch.setenv("OLLAMA_HOST", closed_port_host())
    monkeypatch.setenv("ANIME_CHAT_IMAGES", "off")
    state = load_settings().paths.state
    CharacterLibrary(load_settings().paths).add("yuki", Image.new("RGB", (64, 64), "pink"))
    queued: list[str] = []

    def press_ctrl_c_once_queued() -> None:
        journal = JobJournal.for_state(state)
        deadline = time.monotonic() + 120
        while not queued and time.monotonic() < deadline:
            queued.extend(job.id for job in journal.list())
            time.sleep(0.05)
        if queued:  # never interrupt anything but the wait
            os.kill(os.getpid(), signal.SIGINT)

    # Holding the worker lock stands in for a busy worker: the job waits, nothing renders.
    with worker_lock(state):
        presser = threading.Thread(target=press_ctrl_c_once_queued)
        presser.start()
        result = repl("draw yuki", "/jobs")
        presser.join()
    assert result.exit_code == 0, result.output
    [job] = JobJournal.for_state(state).list()
    assert job.id == queued[0] and job.state == JobState.CANCELLED
    assert "cancelled" in result.output and f"{job.id}  cancelled" in result.output


def test_unknown_command_and_end_of_input_exit_cleanly(generator):
    result = repl("/frobnicate")
    assert result.exit_code == 0
    assert "unknown command /frobnicate" in result.output


def test_jobs_command_reads_the_job_queue(generator):
    result = repl("/jobs")
    assert result.exit_code == 0
    assert "no jobs yet" in result.output


def test_one_character_is_counted_in_the_singular(generator):
    result = repl("who do I have")
    assert result.exit_code == 0, result.output
    assert "1 character:" in result.output and "1 characters" not in result.output
