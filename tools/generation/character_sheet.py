"""A new character from a sentence: `anime-gen --character-sheet "pink hair girl" [--name momo]`.

1. Text-only candidates (no IP-Adapter) in a front-view pose; the best one by face and
   aesthetic scores becomes `reference.png`.
2. A turnaround sheet drawn with that reference: front, side, back and two expressions, saved
   in `<character>/sheet/` (each view, the candidates, and one `sheet.png` strip).
3. The character is registered with its description and prompt tags, and calibrated.

This process only plans: every image is a spec (`ImageSpec.sheet`) in a job that the warm worker
draws, like any other image, so no second pipeline is loaded here. Everything is drawn in a
staging folder first and moved in only once the character is registered, so a failure leaves no
half-made character; an existing name is never overwritten.
"""

from __future__ import annotations

import re
import shutil
import tempfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from PIL import Image

from tools.atomic import write_json_atomic
from tools.characters.library import REFERENCE_FILENAME, normalize_name
from tools.errors import UserError
from tools.generation.specs import SEED_LIMIT, ImageSpec, OutputRecord, PoseRef, SheetImage

if TYPE_CHECKING:
    from posebank import Pose
    from tools.characters.library import Character
    from tools.generation.runtime import Runtime

SHEET_FOLDER = "sheet"
CANDIDATES = 4
# Words that describe the request, not the character ("a new character with pink hair").
_FILLER_WORDS = "new a an the character characters with and of make create draw me please named"
_FILLER = set(f"{_FILLER_WORDS} called who has in".split())
NAME_WORDS = 3
# Without a face or an aesthetic model a candidate still needs a rank; this is "unknown".
NEUTRAL_AESTHETIC = 0.5

EventCallback = Callable[[str], None]


NEUTRAL_TAGS = {"arms down", "idle", "profile", "from behind"}


@dataclass(frozen=True)
class SheetView:
    name: str
    pose_tag: str  # the pose bank tag that gives this view's framing
    prompt: str  # what the prompt adds for this view


VIEWS = (
    SheetView("front", "front view", "full body, front view"),
    SheetView("side", "side view", "full body, from side"),
    SheetView("back", "back view", "full body, from behind"),
    SheetView("smile", "front view", "upper body, smile, happy"),
    SheetView("angry", "front view", "upper body, angry, pout"),
)


def description_tags(description: str) -> str:
    """Prompt tags from the sentence: the request's filler words dropped."""
    words = re.findall(r"[a-z0-9']+", description.lower())
    kept = [word for word in words if word not in _FILLER]
    if not kept:
        raise UserError(
            f"'{description}' does not describe a character",
            'say what they look like, e.g. --character-sheet "pink hair girl, blue eyes"',
        )
    return " ".join(kept)


def derive_name(description: str, taken: set[str]) -> str:
    """A free library name from the description's first words (`pink-hair-girl`, then `-2`...)."""
    words = description_tags(description).replace("'", "").split()[:NAME_WORDS]
    stem = "-".join(words)[:36].strip("-") or "character"
    name, number = stem, 2
    while name in taken:
        name, number = f"{stem}-{number}", number + 1
    return normalize_name(name)


def _taken_names(runtime: Runtime) -> set[str]:
    root = runtime.characters.root
    folders = {p.name for p in root.iterdir()} if root.is_dir() else set()
    return set(runtime.characters.names()) | folders


def _pose_for(runtime: Runtime, tag: str) -> Pose:
    """The most neutral standing pose with the tag (a turnaround wants an idle stance, not arms
    crossed), else any pose with it, else any pose."""
    poses = runtime.poses.list()
    tagged = [pose for pose in poses if tag in pose.tags]
    standing = sorted(
        (pose for pose in tagged if pose.posture == "standing"),
        key=lambda pose: (-len(NEUTRAL_TAGS & set(pose.tags)), len(pose.tags), pose.id),
    )
    return (standing or tagged or poses)[0]


def _candidate_rank(face: float, aesthetic: float | None) -> tuple[bool, float]:
    """A candidate with a face beats one without; then face likelihood plus aesthetic."""
    return face > 0, face + (NEUTRAL_AESTHETIC if aesthetic is None else aesthetic)


@dataclass(frozen=True)
class _SheetPlan:
    """The new character's name and tags, and the seeds of its images (base seed S: candidate
    i uses S+i, view j uses S+candidates+j)."""

    name: str
    tags: str
    base_seed: int
    request_id: str

    def spec(
        self, index: int, pose: Pose, view: SheetView, folder: Path, reference: Path | None
    ) -> ImageSpec:
        """Image `index` of the sheet: a candidate (no reference yet) or a view."""
        file = f"candidate_{index + 1}.png" if reference is None else f"{view.name}.png"
        return ImageSpec(
            key=f"{self.request_id}:{index}",
            request_id=self.request_id,
            index=index,
            character=self.name,
            pose=PoseRef(id=pose.id, tags=list(pose.tags)),
            posture=pose.posture,
            user_prompt=view.prompt,
            seed=(self.base_seed + index) % SEED_LIMIT,
            sheet=SheetImage(
                tags=self.tags,
                reference=None if reference is None else str(reference),
                path=str(folder / file),
            ),
        )


class _InOrder:
    """Hands the records of sheet specs on in spec order, whatever order they are drawn in."""

    def __init__(
        self, specs: list[ImageSpec], on_record: Callable[[int, OutputRecord], None]
    ) -> None:
        self.numbers = {spec.sheet.path: n for n, spec in enumerate(specs) if spec.sheet}
        self.on_record = on_record
        self.arrived: dict[int, OutputRecord] = {}
        self.next = 0

    def __call__(self, record: OutputRecord) -> None:
        self.arrived[self.numbers[record.path or ""]] = record
        while self.next in self.arrived:
            self.on_record(self.next, self.arrived[self.next])
            self.next += 1


def _in_worker(
    runtime: Runtime,
    specs: list[ImageSpec],
    label: str,
    on_record: Callable[[int, OutputRecord], None] | None = None,
) -> list[OutputRecord]:
    """Draw the specs as one job in the warm worker; `on_record(i, record)` for each spec i as
    it is drawn, in spec order. Returns the records in spec order."""
    from tools.jobs.client import run_in_worker

    on_image = None if on_record is None else _InOrder(specs, on_record)
    return run_in_worker(runtime.settings, specs, on_image, label=label, cancel_on_interrupt=True)


def _calibration_spec(plan: _SheetPlan, pose: Pose) -> ImageSpec:
    """The registered character's baselines, measured with the worker's image encoder."""
    return ImageSpec(
        key=f"{plan.request_id}:calibration",
        request_id=plan.request_id,
        index=0,
        character=plan.name,
        pose=PoseRef(id=pose.id, tags=list(pose.tags)),
        posture=pose.posture,
        seed=plan.base_seed,
        calibration_only=True,
    )


def create_character_sheet(
    runtime: Runtime,
    description: str,
    name: str | None = None,
    *,
    seed: int | None = None,
    candidates: int = CANDIDATES,
    on_event: EventCallback | None = None,
) -> Character:
    """Make, pick, draw and register a new character; returns it (its sheet is in `sheet/`)."""
    from tools.generation.planner import new_seed
    from tools.generation.producer import save_png

    say = on_event or (lambda _message: None)
    tags = description_tags(description)
    taken = _taken_names(runtime)
    key = normalize_name(name) if name else derive_name(description, taken)
    if key in taken:
        raise UserError(
            f"character '{key}' already exists",
            "pick another --name (an existing character is never overwritten)",
        )
    if candidates < 1:
        raise UserError(f"candidates must be at least 1 (got {candidates})")
    base_seed = seed if seed is not None else new_seed()
    plan = _SheetPlan(key, tags, base_seed, uuid.uuid4().hex[:12])
    runtime.characters.root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{key}.sheet-", dir=runtime.characters.root))
    try:
        sheet = staging / SHEET_FOLDER
        front = _pose_for(runtime, "front view")
        drafts = [
            plan.spec(number, front, VIEWS[0], sheet / "candidates", None)
            for number in range(candidates)
        ]

        def candidate_drawn(number: int, record: OutputRecord) -> None:
            face, aesthetic = record.scores.face or 0.0, record.scores.aesthetic
            say(
                f"candidate {number + 1}/{candidates}: face {face:.2f}, aesthetic "
                f"{'n/a' if aesthetic is None else f'{aesthetic:.2f}'}"
            )

        drawn = _in_worker(runtime, drafts, f"character sheet {key}: candidates", candidate_drawn)
        scored = [
            {
                "file": Path(record.path or "").name,
                "seed": record.seed,
                "face": record.scores.face or 0.0,
                "aesthetic": record.scores.aesthetic,
            }
            for record in drawn
        ]
        best = max(
            range(candidates),
            key=lambda i: _candidate_rank(scored[i]["face"], scored[i]["aesthetic"]),
        )
        reference_image = Image.open(sheet / "candidates" / scored[best]["file"]).convert("RGB")
        reference = staging / REFERENCE_FILENAME
        reference_image.save(reference)
        write_json_atomic(
            sheet / "candidates.json", {"chosen": scored[best]["file"], "candidates": scored}
        )
        say(f"reference: candidate {best + 1}")

        views = [
            plan.spec(
                candidates + number, _pose_for(runtime, view.pose_tag), view, sheet, reference
            )
            for number, view in enumerate(VIEWS)
        ]
        view_records = _in_worker(
            runtime,
            views,
            f"character sheet {key}: views",
            lambda number, _record: say(f"sheet: {VIEWS[number].name}"),
        )
        images = [Image.open(record.path or "").convert("RGB") for record in view_records]
        save_png(sheet / "sheet.png", _strip(images), f"turnaround sheet of {key}: {tags}")

        character = runtime.characters.add(
            key, reference_image, description=description.strip(), prompt_tags=tags
        )
        (staging / SHEET_FOLDER).rename(character.folder / SHEET_FOLDER)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    _in_worker(runtime, [_calibration_spec(plan, front)], f"calibrate {key}")
    return runtime.characters.get(key)


def _strip(images: list[Image.Image]) -> Image.Image:
    width, height = images[0].size
    strip = Image.new("RGB", (width * len(images), height), "white")
    for number, image in enumerate(images):
        strip.paste(image, (number * width, 0))
    return strip
