"""The character library: `<home>/.anime-characters/<name>/{reference.png, poses/, variations/}`
plus the `characters.json` index.

Every write goes through a lock and an atomic rename, so concurrent commands and crashes never
leave a half-written index. A corrupt index is reported, never silently overwritten.
"""

from __future__ import annotations

import difflib
import fcntl
import io
import json
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from PIL import Image, UnidentifiedImageError
from pydantic import BaseModel, Field, ValidationError

from tools.atomic import write_atomic, write_json_atomic
from tools.errors import UnknownCharacterError, UserError
from tools.settings import LoraSetting, Paths

INDEX_FILENAME = "characters.json"
REFERENCE_FILENAME = "reference.png"
NAME_PATTERN = re.compile(r"[a-z0-9_-]{1,40}")
MIN_REFERENCE_SIDE = 64
MAX_REFERENCE_SIDE = 8192
MAX_REFERENCE_BYTES = 50 * 1024 * 1024


class Character(BaseModel):
    name: str
    description: str = ""
    prompt_tags: str = ""
    created: str
    references: list[str] = Field(default_factory=lambda: [REFERENCE_FILENAME])
    consistency_baseline: float | None = None
    palette_baseline: float | None = None
    # The character's own LoRAs (applied to its images only) and the words that trigger them.
    loras: list[LoraSetting] = Field(default_factory=list)
    trigger: str = ""
    folder: Path = Field(exclude=True)

    @property
    def reference_path(self) -> Path:
        return self.folder / self.references[0]

    @property
    def reference_paths(self) -> list[Path]:
        return [self.folder / ref for ref in self.references]


def normalize_name(name: str) -> str:
    """Fold to lowercase and check against the contract's pattern."""
    folded = name.strip().lower()
    if not NAME_PATTERN.fullmatch(folded):
        raise UserError(
            f"invalid character name '{name}'",
            "use 1-40 letters, digits, '-' or '_' (no spaces, slashes or dots)",
        )
    return folded


def parse_lora_option(text: str) -> LoraSetting:
    """`NAME` or `NAME:WEIGHT` (as `--lora` takes it) → a LoRA setting."""
    name, colon, weight = text.strip().rpartition(":")
    if not colon:
        name, weight = weight, ""
    try:
        return LoraSetting(name=name.strip(), weight=float(weight) if weight else 1.0)
    except (ValueError, ValidationError):
        raise UserError(
            f"--lora '{text}' is not NAME or NAME:WEIGHT", "e.g. --lora sakura_v2:0.8"
        ) from None


def load_reference_image(path: Path) -> Image.Image:
    """Open and validate a reference image; returns it as RGB."""
    if not path.is_file():
        raise UserError(f"reference image not found: {path}", "check the path")
    if path.stat().st_size > MAX_REFERENCE_BYTES:
        raise UserError(f"reference image is too large: {path}", "use an image under 50 MB")
    try:
        with Image.open(path) as probe:
            probe.verify()
        image = Image.open(path)
        image.load()
    except Image.DecompressionBombError:
        raise UserError(
            f"reference image has too many pixels to open safely: {path}",
            f"use an image between {MIN_REFERENCE_SIDE} and {MAX_REFERENCE_SIDE} pixels a side",
        ) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise UserError(
            f"not a readable image: {path} ({exc.__class__.__name__})",
            "use a PNG, JPEG or WebP file",
        ) from None
    width, height = image.size
    if min(width, height) < MIN_REFERENCE_SIDE or max(width, height) > MAX_REFERENCE_SIDE:
        raise UserError(
            f"reference image is {width}x{height}: {path}",
            f"use an image between {MIN_REFERENCE_SIDE} and {MAX_REFERENCE_SIDE} pixels a side",
        )
    if image.mode in ("RGBA", "LA", "P"):
        rgba = image.convert("RGBA")
        flattened = Image.new("RGB", rgba.size, "white")
        flattened.paste(rgba, mask=rgba.getchannel("A"))
        return flattened
    return image.convert("RGB")


def _png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


class CharacterLibrary:
    def __init__(self, paths: Paths) -> None:
        self.root = paths.characters
        self.index_path = self.root / INDEX_FILENAME

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / f".{INDEX_FILENAME}.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _read_index(self) -> dict[str, Character]:
        if not self.index_path.exists():
            return {}
        try:
            raw = json.loads(self.index_path.read_text(encoding="utf-8"))
            entries = raw["characters"] if isinstance(raw, dict) else None
            if not isinstance(entries, list):
                raise ValueError("no 'characters' list")
            characters = [
                Character.model_validate({**entry, "folder": self.root / entry["name"]})
                for entry in entries
            ]
        except (ValueError, KeyError, TypeError, ValidationError) as exc:
            reason = str(exc).splitlines()[0]
            raise UserError(
                f"character index is corrupt: {self.index_path} ({reason})",
                f"restore it from a backup, or move it away (mv {self.index_path} "
                f"{self.index_path}.bad) and re-add characters; folders are untouched",
            ) from None
        return {character.name: character for character in characters}

    def _write_index(self, characters: dict[str, Character]) -> None:
        entries = [c.model_dump(mode="json") for c in sorted(characters.values(), key=_by_name)]
        write_json_atomic(self.index_path, {"version": 1, "characters": entries})

    def list(self) -> list[Character]:
        return sorted(self._read_index().values(), key=_by_name)

    def names(self) -> list[str]:
        return [character.name for character in self.list()]

    def get(self, name: str) -> Character:
        """Exact (case-insensitive) lookup."""
        characters = self._read_index()
        key = name.strip().lower()
        if key not in characters:
            raise UnknownCharacterError(name, self.closest(name, list(characters)))
        return characters[key]

    def resolve(self, name: str) -> tuple[Character, bool]:
        """Exact, then fuzzy. Returns the character and whether the name was corrected."""
        characters = self._read_index()
        key = name.strip().lower()
        if key in characters:
            return characters[key], False
        close = self.closest(name, list(characters), cutoff=0.75)
        if len(close) == 1 or (
            close and _similarity(key, close[0]) - _similarity(key, close[1]) > 0.1
        ):
            return characters[close[0]], True
        raise UnknownCharacterError(name, self.closest(name, list(characters)))

    @staticmethod
    def closest(name: str, names: list[str], cutoff: float = 0.5) -> list[str]:
        return difflib.get_close_matches(name.strip().lower(), names, n=3, cutoff=cutoff)

    def add(
        self,
        name: str,
        image: Path | Image.Image,
        description: str = "",
        prompt_tags: str = "",
        loras: list[LoraSetting] | None = None,
        trigger: str = "",
    ) -> Character:
        key = normalize_name(name)
        picture = image if isinstance(image, Image.Image) else load_reference_image(Path(image))
        png = _png_bytes(picture.convert("RGB"))
        with self._locked():
            characters = self._read_index()
            folder = self.root / key
            if key in characters:
                raise UserError(
                    f"character '{key}' already exists",
                    f"remove it first (anime-gen characters remove {key}) or pick another name",
                )
            if folder.exists():
                raise UserError(
                    f"folder {folder} exists but is not in the index",
                    "move that folder away or pick another name",
                )
            staging = self.root / f".{key}.adding"
            shutil.rmtree(staging, ignore_errors=True)
            for sub in ("poses", "variations"):
                (staging / sub).mkdir(parents=True)
            write_atomic(staging / REFERENCE_FILENAME, lambda handle: handle.write(png))
            staging.rename(folder)
            character = Character(
                name=key,
                description=description.strip(),
                prompt_tags=prompt_tags.strip(),
                created=datetime.now(UTC).isoformat(timespec="seconds"),
                loras=list(loras or []),
                trigger=trigger.strip(),
                folder=folder,
            )
            characters[key] = character
            self._write_index(characters)
        return character

    def update(self, character: Character) -> None:
        with self._locked():
            characters = self._read_index()
            if character.name not in characters:
                raise UnknownCharacterError(character.name, [])
            characters[character.name] = character
            self._write_index(characters)

    def edit(self, name: str, **changes: object) -> Character:
        """Change some fields of a character (those given, e.g. `loras=`, `trigger=`)."""
        with self._locked():
            characters = self._read_index()
            key = name.strip().lower()
            if key not in characters:
                raise UnknownCharacterError(name, self.closest(name, list(characters)))
            edited = characters[key].model_copy(update=changes)
            characters[key] = Character.model_validate(
                {**edited.model_dump(mode="json"), "folder": edited.folder}
            )
            self._write_index(characters)
        return characters[key]

    def remove(self, name: str) -> Character:
        with self._locked():
            characters = self._read_index()
            key = name.strip().lower()
            if key not in characters:
                raise UnknownCharacterError(name, self.closest(name, list(characters)))
            character = characters.pop(key)
            # The folder goes to a trash dir, not away: images made for it must never be lost.
            # It moves first, so a failed move leaves the index naming it still.
            trashed = self._to_trash(character.folder, key) if character.folder.exists() else None
            try:
                self._write_index(characters)
            except BaseException:
                if trashed is not None:
                    trashed.rename(character.folder)
                raise
        return character

    def _to_trash(self, folder: Path, key: str) -> Path:
        """Move `folder` to a new name in the trash (a name removed twice in one second too)."""
        trash = self.root / ".trash"
        trash.mkdir(exist_ok=True)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
        number = 1
        target = trash / f"{key}-{stamp}"
        while target.exists():  # bounded: each name taken is a folder in the trash
            number += 1
            target = trash / f"{key}-{stamp}-{number}"
        folder.rename(target)
        return target


def _by_name(character: Character) -> str:
    return character.name


def _similarity(a: str, b: str) -> float:
    return difflib.SequenceMatcher(None, a, b).ratio()
