"""The two ways `anime-chat` (one request or the REPL) talks to the studio: `StudioChat`, a thin
client of the studio server, where planning (Ollama included), execution and the session memory
live; and `LocalChat`, the same conversation in this process (`ANIME_IN_PROCESS=1`, tests).

Both answer a request with a `ChatAnswer`, so the CLI and the REPL print the same either way.
Session memory lives in the server, keyed by the session id it hands out on the first turn (a
restarted server starts a fresh memory); nothing heavy is imported here at module level.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console

    from assistant.conversation import Conversation, Turn
    from tools.server.client import StudioClient


@dataclass
class ChatAnswer:
    """One answered request: the reply, the plan (contract shape), the images made."""

    text: str
    plan: dict[str, Any]
    outputs: list[dict[str, Any]] = field(default_factory=list)
    paths: list[Path] = field(default_factory=list)
    failed: bool = False

    def contract(self) -> dict[str, Any]:
        """`anime-chat -c TEXT --json`: the plan's shape plus the `outputs` of the run."""
        return {**self.plan, "outputs": self.outputs}

    def as_json(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "plan": self.plan,
            "outputs": self.outputs,
            "paths": [str(path) for path in self.paths],
            "failed": self.failed,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ChatAnswer:
        return cls(
            data["text"],
            data["plan"],
            data["outputs"],
            [Path(path) for path in data["paths"]],
            data["failed"],
        )

    @classmethod
    def of_turn(cls, turn: Turn) -> ChatAnswer:
        from assistant import reply

        return cls(
            turn.text,
            turn.plan.contract(),
            [record.model_dump(mode="json") for record in turn.images],
            reply.image_paths(turn.outcomes),
            any(outcome.error for outcome in turn.outcomes),
        )


def characters_text(characters: list[Any]) -> str:
    """The REPL's `/characters` answer."""
    if not characters:
        return "no characters yet: `anime-gen characters add NAME --image PATH`"
    return "\n".join(c.name + (f": {c.description}" if c.description else "") for c in characters)


def jobs_text(state: Path) -> str:
    """The REPL's `/jobs` answer: the ten newest jobs."""
    from tools.jobs.journal import JobJournal

    jobs = JobJournal.for_state(state).list(10)
    if not jobs:
        return "no jobs yet"
    return "\n".join(job.describe() for job in jobs)


class LocalChat:
    """The conversation in this process."""

    def __init__(self, conversation: Conversation) -> None:
        self.conversation = conversation

    @property
    def planner_name(self) -> str:
        return self.conversation.planner.name

    @property
    def state(self) -> Path:
        return self.conversation.settings.paths.state

    def plan(self, text: str) -> dict[str, Any]:
        return self.conversation.plan(text).contract()

    def run(self, text: str, console: Console) -> ChatAnswer:
        return ChatAnswer.of_turn(self.conversation.run(text, console))

    def command(self, name: str) -> str:
        if name == "/characters":
            return characters_text(self.conversation.runtime.characters.list())
        return jobs_text(self.state)


class StudioChat:
    """The conversation in the studio server; this process only sends text and prints."""

    def __init__(self, client: StudioClient, planner: str, model: str | None) -> None:
        self.client = client
        self.planner = planner
        self.model = model
        self.session: str | None = None
        self._said: set[str] = set()

    @property
    def state(self) -> Path:
        return self.client.home / ".anime-chat"

    @property
    def planner_name(self) -> str:
        answer = self.client.call("POST", "/api/chat/planner", self._body(""))
        self._notices(answer.get("notices") or [])
        return answer["planner"]

    def _body(self, text: str) -> dict[str, Any]:
        return {"text": text, "planner": self.planner, "model": self.model, "session": self.session}

    def _notices(self, lines: list[str]) -> None:
        """Each notice once per conversation ("ollama is not reachable" is not news twice)."""
        import sys

        for line in lines:
            if line not in self._said:
                self._said.add(line)
                print(line, file=sys.stderr, flush=True)

    def plan(self, text: str) -> dict[str, Any]:
        answer = self.client.call("POST", "/api/plan", self._body(text))
        self._notices(answer.get("notices") or [])
        self.session = answer["session"]
        return answer["plan"]

    def run(self, text: str, console: Console) -> ChatAnswer:
        """Stream the turn: notices as they come, a bar per image, then the answer. Ctrl-C
        closes the stream, and the server cancels the turn's job before its next image."""
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

        from tools.server.client import with_my_environment

        self.client = with_my_environment(self.client)
        columns = ("{task.description}", BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        with Progress(*columns, console=console, transient=True) as progress:
            task = None
            for kind, data in self.client.stream("POST", "/api/chat", self._body(text)):
                if kind == "notice":
                    self._notices([data])
                elif kind == "plan":
                    self.session = data["session"]
                    if data["images"]:
                        task = progress.add_task("rendering", total=data["images"])
                elif kind == "image" and task is not None:
                    progress.advance(task)
                elif kind == "end":
                    self.session = data["session"]
                    return ChatAnswer.from_json(data["answer"])
        raise RuntimeError("the studio server ended the chat stream without an answer")

    def command(self, name: str) -> str:
        return self.client.call("POST", "/api/chat/command", {"text": name})["text"]
