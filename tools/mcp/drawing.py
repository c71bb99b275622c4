"""The MCP tools that make images: `draw`, `create_character` and `chat`.

Each queues its work in the studio server (the same routes `anime-gen` and `anime-chat` use),
follows it, and reports progress; a cancelled call cancels the jobs it queued.
"""

from __future__ import annotations

from typing import Any

from tools.errors import UserError
from tools.mcp.args import ChatArgs, CreateCharacterFromArgs, DrawArgs
from tools.mcp.calls import (
    Call,
    Reply,
    Toolset,
    image_lines,
    preview_paths,
    with_library_names,
)
from tools.server.client import ServerError, StudioClient, with_my_environment
from tools.server.follow import follow_job
from tools.user_paths import expand_user

LABEL = "mcp"


def _bodies(args: DrawArgs) -> list[dict[str, Any]]:
    """One job per character named; "all" is one job, as `anime-gen --all-characters`."""
    common = {"pose": args.pose, "prompt": args.prompt, "count": args.count, "seed": args.seed}
    if args.characters == "all":
        return [{**common, "all_characters": True, "label": LABEL}]
    names = [args.character] if args.character is not None else list(args.characters or [])
    if not names:
        raise UserError("no character named", 'give character, or characters (a list or "all")')
    return [
        {**common, "character": name, "random_pose": args.pose is None, "label": LABEL}
        for name in names
    ]


def _submit(
    toolset: Toolset, client: StudioClient, bodies: list[dict[str, Any]], call: Call
) -> list[str]:
    """Queue every job, or none: a refused one cancels those already queued."""
    notices: list[str] = []
    for body in bodies:
        call.check()
        try:
            answer = client.call("POST", "/api/jobs", body)
        except UserError as error:
            toolset.cancel_jobs(call.jobs)
            if isinstance(error, ServerError):
                raise with_library_names(client, error) from None
            raise
        call.jobs.append(answer["job"])
        notices.extend(answer.get("notices") or [])
        call.check()
    return notices


def _progress_of(data: dict[str, Any], before: int, total: int) -> tuple[float, str]:
    """A job's progress event as the call's value (whole images saved, plus the fraction of the
    one rendering) and its message. The event just before an image's record names that image
    at its last step with `done` already counting it: its step adds no fraction, or the value
    would run ahead of what is saved (tools/server/job_events.py)."""
    saved = int(data.get("done") or 0)
    value = float(before + saved)
    message = f"{before + saved}/{total} images"
    image, step, steps = data.get("image"), data.get("step"), data.get("steps")
    if isinstance(step, int) and isinstance(steps, int) and steps > 0:
        index = image if isinstance(image, int) else saved
        if index >= saved:
            value += min(step, steps) / (steps + 1)  # never a whole image before it is saved
        message += f", image {before + index + 1} step {step}/{steps}"
    return value, message


def draw(toolset: Toolset, args: DrawArgs, call: Call) -> Reply:
    client = with_my_environment(toolset.client())
    notices = _submit(toolset, client, _bodies(args), call)
    sizes = [client.call("GET", f"/api/jobs/{job}", timeout=30)["images"] for job in call.jobs]
    total = sum(sizes)
    call.report(0, total, f"queued {total} images")
    records: list[dict[str, Any]] = []
    before = 0
    for job, size in zip(call.jobs, sizes, strict=True):

        def on_progress(data: dict[str, Any], before: int = before) -> None:
            value, message = _progress_of(data, before, total)
            call.report(value, total, message)

        try:
            records.extend(follow_job(client, job, on_progress=on_progress))
        except UserError:
            toolset.cancel_jobs(call.jobs)  # one reply per call: the rest stops with it
            raise
        before += size
        call.report(before, total, f"{before}/{total} images")
    accepted = sum(1 for record in records if record.get("accepted"))
    head = (
        f"drew {len(records)} image{'s' * (len(records) != 1)} ({accepted} accepted, "
        f"{len(records) - accepted} rejected) in job{'s' * (len(call.jobs) != 1)} "
        f"{', '.join(call.jobs)}:"
    )
    text = "\n".join([*notices, head, *image_lines(records)])
    data = {"jobs": list(call.jobs), "outputs": records, "notices": notices}
    return Reply(text, preview_paths(records), data)


def create_character(toolset: Toolset, args: CreateCharacterFromArgs, call: Call) -> Reply:
    client = toolset.client()
    if args.image:
        image = expand_user(args.image)
        if not image.is_absolute():
            raise UserError(
                f"'{args.image}' is not an absolute path", "give the reference image's full path"
            )
        body = {"name": args.name, "image": str(image), "description": args.description}
        answer = client.call("POST", "/api/characters", body)
        entry = answer["character"]
        text = "\n".join(
            [
                f"added character {entry['name']} (reference {entry['reference']})",
                *answer["warnings"],
            ]
        )
        return Reply(text, [entry["reference"]], answer)
    client = with_my_environment(client)
    body = {"description": args.description, "name": args.name}
    lines: list[str] = []
    entry: dict[str, Any] = {}
    for kind, data in client.stream("POST", "/api/characters/sheet", body):
        if kind == "notice":
            lines.append(str(data))
            call.report(len(lines), None, str(data))
        elif kind == "end":
            entry = data
        call.check()  # the sheet itself runs to its end in the server
    text = "\n".join(
        [
            *lines,
            f"created character {entry['name']} (reference and turnaround sheet in "
            f"{entry['folder']})",
        ]
    )
    return Reply(text, [entry["reference"]], entry)


def chat(toolset: Toolset, args: ChatArgs, call: Call) -> Reply:
    """The person's words through our planner, executed in the studio server (as `anime-chat
    -c`). Leaving the event stream early is how the server learns to cancel the turn's job."""
    client = with_my_environment(toolset.client())
    session = args.session or (toolset.chat_session if toolset.remember_chat else None)
    body = {"text": args.text, "planner": "auto", "model": None, "session": session}
    notices: list[str] = []
    total, done = 0, 0
    answer: dict[str, Any] = {}
    for kind, data in client.stream("POST", "/api/chat", body):
        if kind == "notice":
            notices.append(str(data))
        elif kind == "plan":
            total = int(data.get("images") or 0)
            if total:
                call.report(0, total, f"planned {total} images")
        elif kind == "image":
            done += 1
            call.report(done, total or None, f"{done}/{total} images")
        elif kind == "end":
            answer = data
        call.check()
    session = answer["session"]
    if toolset.remember_chat:
        toolset.chat_session = session
    result = answer["answer"]
    outputs = result.get("outputs") or []
    text = "\n".join([*notices, result["text"], f"(chat session {session})"])
    data = {"session": session, **result}
    return Reply(text, preview_paths(outputs), data, error=bool(result.get("failed")))
