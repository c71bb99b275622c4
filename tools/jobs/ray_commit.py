"""What the Ray head does with an actor's results: it owns the output store, the index and the
character library, so it saves each image the actor sent back under its key and commits it."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from tools.jobs.job import Job, JobImage
from tools.jobs.journal import JobJournal
from tools.store.png_check import check_png

if TYPE_CHECKING:
    from tools.characters.library import CharacterLibrary
    from tools.generation.runtime import Runtime
    from tools.jobs.ray_slots import InFlight


def commit_task(
    runtime: Runtime, journal: JobJournal, worker: str, task: InFlight, result: dict[str, Any]
) -> None:
    """Check a task's result, store its baselines, then save and commit each image."""
    check_result(task.images, result)
    store_baselines(runtime.characters, result.get("baselines") or {})
    for item in result["images"]:
        commit_result(runtime, journal, worker, task.token, task.job, item)


def commit_result(
    runtime: Runtime, journal: JobJournal, worker: str, token: str, job: Job, item: dict[str, Any]
) -> None:
    """Save the actor's images under their keys (the head owns the store), then commit."""
    from posebank.export import write_pose_files

    paths: dict[str, str] = {}
    for save in item["saves"]:
        meta = dict(save["meta"])
        if isinstance(meta.get("output"), dict):
            output = dict(meta["output"])
            output["rejected"] = [paths.get(p, p) for p in output.get("rejected", [])]
            meta["output"] = output
        # The actor's bytes as they are, only our text chunks added: decoding and re-encoding
        # a 1024² PNG took the head's one loop 0.5-0.75 s per image (evals/commit_bench.py).
        path = runtime.store.save_png(save["png"], meta, key=save["key"])
        paths[save["placeholder"]] = str(path)
    record = dict(item["record"])
    record["path"] = paths.get(record["path"], record["path"])
    record["rejected"] = [paths.get(p, p) for p in record.get("rejected", [])]
    image = next(image for image in job.images if image.key == item["key"])
    if image.spec.get("sheet") or image.spec.get("plain") or image.spec.get("calibration_only"):
        if "sheet_png" in item:  # drawn in the actor's home: written at the head's path
            from tools.atomic import write_atomic

            path = Path(image.spec["sheet"]["path"])
            path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(path, lambda handle: handle.write(item["sheet_png"]))
            record["path"] = str(path)
        journal.lease_done(job.id, image.index, token, worker, record["path"], record)
        return
    character = runtime.characters.get(image.spec["character"])
    pose = runtime.poses.get(image.spec["pose"]["id"])
    if not (character.folder / "poses" / f"{pose.id}.json").exists():
        resolution = runtime.settings.output.resolution
        write_pose_files(pose, character.folder / "poses", resolution.width, resolution.height)
    runtime.index.set_worker(image.key, worker)
    journal.lease_done(job.id, image.index, token, worker, record["path"], record)


def check_result(images: list[JobImage], result: dict[str, Any]) -> None:
    """ValueError unless the actor's result is one item per image of its task, each saving
    only under its own image's key (or that key's `#rejectedN` re-rolls) and naming only files
    it saved: checked before anything is saved, so a wrong result overwrites no other image's
    file and leaves no image of the task leased for ever (each lease is committed or failed)."""
    items = result.get("images")
    by_key = {image.key: image for image in images}
    keys = list(by_key)
    sent = [item.get("key") for item in items] if isinstance(items, list) else None
    if sent is None or sorted(map(str, sent)) != sorted(keys):
        raise ValueError(f"the actor sent images {sent}, not its task's {keys}")
    for item in items:
        placeholders = set()
        for save in item["saves"]:
            own = save["key"] == item["key"] or str(save["key"]).startswith(
                f"{item['key']}#rejected"
            )
            if not own:
                raise ValueError(f"the actor saved {save['key']!r} for image {item['key']!r}")
            placeholders.add(save["placeholder"])
        sheet = bool(by_key[item["key"]].spec.get("sheet"))
        if "sheet_png" in item:  # written at the head's path of a sheet image, as it came
            if not sheet:
                raise ValueError(f"the actor sent a sheet for image {item['key']!r}")
            check_png(item["sheet_png"])
        record = item["record"]
        named = [*record.get("rejected", []), *([] if "sheet_png" in item else [record["path"]])]
        stray = [path for path in named if path is not None and path not in placeholders]
        if stray:
            raise ValueError(f"the actor's record of {item['key']!r} names files it did not send")


def store_baselines(characters: CharacterLibrary, baselines: dict[str, dict[str, float]]) -> None:
    """Baselines an actor measured (its library is thrown away) go into the head's library,
    where none is stored yet (a character sheet's calibration job exists for this)."""
    for name, values in baselines.items():
        character = characters.get(name)
        missing = {f: v for f, v in values.items() if getattr(character, f) is None}
        if missing:
            characters.update(character.model_copy(update=missing))
