"""A new character from a sentence: `anime-gen --character-sheet "pink hair girl" [--name momo]`.

1. Text-only candidates (no IP-Adapter) in a front-view pose; the best one by face and
   aesthetic scores becomes `reference.png`.
2. A turnaround sheet drawn with that reference: front, side, back and two expressions, saved
   in `<character>/sheet/` (each view, the candidates, and one `sheet.png` strip).
3. The character is registered with its description and prompt tags, and calibrated.

Everything is drawn in a staging folder first and moved in only once the character is
registered, so a failure leaves no half-made character; an existing name is never overwritten.
"""

from __future__ import annotations

import re
import secrets
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from PIL import Image
from PIL.PngImagePlugin import PngInfo

from tools.atomic import write_atomic, write_json_atomic
from tools.characters.library import REFERENCE_FILENAME, normalize_name
from tools.errors import UserError

if TYPE_CHECKING:
    from posebank import Pose
    from tools.characters.library import Character
    from tools.generation.runtime import Runtime

SHEET_FOLDER = "sheet"
CANDIDATES = 4
SEED_LIMIT = 2**32
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


def _save_png(path: Path, image: Image.Image, parameters: str) -> None:
    info = PngInfo()
    info.add_text("parameters", parameters)
    write_atomic(path, lambda handle: image.save(handle, format="PNG", pnginfo=info))


def _candidate_rank(face: float, aesthetic: float | None) -> tuple[bool, float]:
    """A candidate with a face beats one without; then face likelihood plus aesthetic."""
    return face > 0, face + (NEUTRAL_AESTHETIC if aesthetic is None else aesthetic)


class _Drawer:
    """Renders one image of the new character with the configured size and weights."""

    def __init__(self, runtime: Runtime, tags: str, name: str) -> None:
        self.runtime = runtime
        self.tags = tags
        self.name = name
        self.resolution = runtime.settings.output.resolution

    def draw(
        self, pose: Pose, extra: str, seed: int, reference: Path | None
    ) -> tuple[Image.Image, str]:
        from posebank.render import render_pose
        from prompts import load_prompt
        from tools.engine.rendering import RenderJob
        from tools.generation.generate import compose_prompt

        models = self.runtime.settings.models
        width, height = self.resolution.width, self.resolution.height
        prompt = compose_prompt(self.tags, self.name, pose, extra)
        negative = load_prompt("negative_tags")
        job = RenderJob(prompt, negative, render_pose(pose, width, height), reference, seed)
        image = self.runtime.engine.render(
            [job],
            width=width,
            height=height,
            ipadapter_weight=models.ipadapter_weight if reference else 0.0,
            controlnet_strength=models.controlnet_strength,
        )[0]
        parameters = (
            f"{prompt}\nNegative prompt: {negative}\nSeed: {seed}, Size: {width}x{height}, "
            f"Pose: {pose.id}, IP-Adapter weight: {models.ipadapter_weight if reference else 0}"
        )
        return image, parameters


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
    from tools.quality.gate import face_score

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
    base_seed = seed if seed is not None else secrets.randbelow(SEED_LIMIT)
    drawer = _Drawer(runtime, tags, key)
    runtime.characters.root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{key}.sheet-", dir=runtime.characters.root))
    try:
        sheet = staging / SHEET_FOLDER
        front = _pose_for(runtime, "front view")
        scored = []
        for number in range(candidates):
            candidate_seed = (base_seed + number) % SEED_LIMIT
            image, parameters = drawer.draw(front, VIEWS[0].prompt, candidate_seed, None)
            face, aesthetic = face_score(image), runtime.gate.aesthetic.score(image)
            path = sheet / "candidates" / f"candidate_{number + 1}.png"
            _save_png(path, image, parameters)
            scored.append(
                {"file": path.name, "seed": candidate_seed, "face": face, "aesthetic": aesthetic}
            )
            say(
                f"candidate {number + 1}/{candidates}: face {face:.2f}, aesthetic "
                f"{'n/a' if aesthetic is None else f'{aesthetic:.2f}'}"
            )
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

        views = []
        for number, view in enumerate(VIEWS):
            view_seed = (base_seed + candidates + number) % SEED_LIMIT
            pose = _pose_for(runtime, view.pose_tag)
            image, parameters = drawer.draw(pose, view.prompt, view_seed, reference)
            _save_png(sheet / f"{view.name}.png", image, parameters)
            views.append(image)
            say(f"sheet: {view.name}")
        _save_png(sheet / "sheet.png", _strip(views), f"turnaround sheet of {key}: {tags}")

        character = runtime.characters.add(
            key, reference_image, description=description.strip(), prompt_tags=tags
        )
        (staging / SHEET_FOLDER).rename(character.folder / SHEET_FOLDER)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    runtime.gate.baseline(character)
    return runtime.characters.get(key)


def _strip(images: list[Image.Image]) -> Image.Image:
    width, height = images[0].size
    strip = Image.new("RGB", (width * len(images), height), "white")
    for number, image in enumerate(images):
        strip.paste(image, (number * width, 0))
    return strip
