"""The MCP tools that look things up or change a job: `find_pose`, `list_characters`,
`search_images` (the gallery's query), `job_status` and `cancel_job`."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlencode

from tools.mcp.args import FindPoseArgs, JobArgs, ListCharactersArgs, SearchImagesArgs
from tools.mcp.calls import Call, Reply, Toolset, image_lines, preview_paths
from tools.server.client import ServerError, StudioClient


def find_pose(toolset: Toolset, args: FindPoseArgs, call: Call) -> Reply:
    matches = toolset.client().call("POST", "/api/poses/search", {"text": args.query, "k": args.k})
    lines = [f"- {m['id']}  {', '.join(m['tags'])}  (score {m['score']:.2f})" for m in matches]
    return Reply(f"poses for '{args.query}':\n" + "\n".join(lines), data={"poses": matches})


def characters(client: StudioClient) -> list[dict[str, str]]:
    return client.call("GET", "/api/characters", timeout=30)


def list_characters(toolset: Toolset, args: ListCharactersArgs, call: Call) -> Reply:
    entries = characters(toolset.client())
    if not entries:
        return Reply(
            "no characters yet: create one with create_character (a description, or an image)",
            data={"characters": []},
        )
    lines = [
        f"- {c['name']}" + (f": {c['description']}" if c["description"] else "") for c in entries
    ]
    text = f"{len(entries)} character{'s' * (len(entries) != 1)}:\n" + "\n".join(lines)
    return Reply(text, data={"characters": entries})


def images_query(args: SearchImagesArgs) -> str:
    query: dict[str, Any] = {"q": args.q, "limit": args.limit}
    if args.character:
        query["character"] = args.character
    if args.starred is not None:
        query["starred"] = "1" if args.starred else "0"
    return "/api/images?" + urlencode(query)


def search_images(toolset: Toolset, args: SearchImagesArgs, call: Call) -> Reply:
    images = toolset.client().call("GET", images_query(args), timeout=60)["images"]
    if not images:
        return Reply("no images match", data={"images": []})
    lines = [
        f"{line}  id {image['id']}{'  starred' if image['starred'] else ''}"
        for line, image in zip(image_lines(images), images, strict=True)
    ]
    text = f"{len(images)} image{'s' * (len(images) != 1)}, newest first:\n" + "\n".join(lines)
    return Reply(text, preview_paths(images), {"images": images})


def _job(client: StudioClient, method: str, path: str) -> dict[str, Any]:
    try:
        return client.call(method, path, {} if method == "POST" else None, timeout=30)
    except ServerError as error:
        if error.status == 404:
            error.hint = "list jobs with `anime-gen jobs`; ids come from draw's reply"
        raise


def job_status(toolset: Toolset, args: JobArgs, call: Call) -> Reply:
    job = _job(toolset.client(), "GET", f"/api/jobs/{quote(args.job, safe='')}")
    line = f"job {job['id']}: {job['state']}, {job['done']}/{job['images']} images"
    progress = job.get("progress") or {}
    if job["state"] == "running" and progress.get("step"):
        line += f" (image {progress.get('image')} step {progress['step']}/{progress.get('steps')})"
    lines = [line, *([f"error: {job['error']}"] if job.get("error") else [])]
    records = job.get("records") or []
    lines.extend(image_lines(records))
    data = {key: job[key] for key in ("id", "state", "images", "done", "attempts", "error")}
    return Reply("\n".join(lines), preview_paths(records), {**data, "outputs": records})


def cancel_job(toolset: Toolset, args: JobArgs, call: Call) -> Reply:
    answer = _job(toolset.client(), "POST", f"/api/jobs/{quote(args.job, safe='')}/cancel")
    said = "cancelled" if answer["cancelled"] else "not cancelled (it had already finished)"
    return Reply(f"job {answer['job']}: {said}", data=answer)
