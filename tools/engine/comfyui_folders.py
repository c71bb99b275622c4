"""A ComfyUI install's model folders (`comfyui.root`), searched by file name so that the
studio's own pipeline uses the files ComfyUI already has and nothing downloads twice.

The folders are ComfyUI's own (`folder_paths.py`): `<root>/models/<name>` for `checkpoints`,
`loras`, `vae`, `embeddings` and `controlnet` (plus `t2i_adapter`, which ComfyUI lists with the
ControlNets), and each section of `<root>/extra_model_paths.yaml` read as its
`utils/extra_config.py` reads it: a key's value is folders, one per line, joined to the
section's `base_path` (`~` and `$VARS` expanded), else relative to the file's own folder.

That file is the user's ComfyUI configuration: absolute folders and `..` are how it names a
shared A1111 install, so they are followed as ComfyUI follows them. What keeps it harmless here:
only folders that exist count, a model is looked up by name *inside* them (a name that would
leave its folder, `..` or absolute, is not looked up there, as `folder_paths.get_full_path`
keeps names inside), a file that is too big, not YAML, of the wrong shape or with over
`MAX_ENTRIES` entries (aliases multiply them) is one warning line
(once per version of the file, and in `anime-gen doctor`), never a traceback.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from stat import S_ISREG
from typing import Any

from tools.text import one_line
from tools.user_paths import expand_user

log = logging.getLogger(__name__)

# folder_paths.py's `folder_names_and_paths` for the kinds the studio loads.
FOLDERS: dict[str, tuple[str, ...]] = {
    "checkpoints": ("checkpoints",),
    "loras": ("loras",),
    "vae": ("vae",),
    "embeddings": ("embeddings",),
    "controlnet": ("controlnet", "t2i_adapter"),
}
# The `models.*` setting -> ComfyUI's folder name.
KIND_OF_SETTING = {"checkpoint": "checkpoints", "controlnet": "controlnet", "vae": "vae"}
CONFIG_NAME = "extra_model_paths.yaml"
IGNORED_KEYS = ("base_path", "is_default")  # extra_config.py pops these; the rest are folders
MAX_CONFIG_BYTES = 1024 * 1024  # ComfyUI's example is 2 KB
MAX_FOLDER_CHARS = 4096  # PATH_MAX: a longer line is no folder (and would raise ENAMETOOLONG)
# Entries (keys and folder lines) read at most: YAML aliases let a small file repeat one long
# anchored string or section thousands of times (ComfyUI's example has about 20 entries).
MAX_ENTRIES = 1000


@dataclass(frozen=True)
class ExtraPaths:
    """What `extra_model_paths.yaml` adds: kind -> folders, and the one line about a problem."""

    folders: dict[str, tuple[Path, ...]]
    problem: str | None = None


_read: dict[tuple[str, int, int], ExtraPaths] = {}


def comfyui_dirs(root: str | None, kind: str) -> list[Path]:
    """The existing folders of one kind (`checkpoints`, `loras`, `vae`, `embeddings`,
    `controlnet`) of the ComfyUI install at `root`: its `models/` ones, then the file's."""
    if not root:
        return []
    base = expand_user(root)
    found = [base / "models" / name for name in FOLDERS.get(kind, (kind,))]
    found += extra_paths(base).folders.get(kind, ())
    return [folder for folder in dict.fromkeys(found) if is_dir(folder)]


def setting_dirs(root: str | None, key: str) -> list[Path]:
    """The folders searched for `models.<key>` (checkpoint, controlnet, vae; none for others)."""
    return comfyui_dirs(root, KIND_OF_SETTING[key]) if key in KIND_OF_SETTING else []


def inside(folder: Path, name: str | Path) -> Path | None:
    """`folder / name` when `name` stays inside the folder (no `..`, not absolute), else None."""
    relative = Path(name)
    if relative.is_absolute() or ".." in relative.parts or "\x00" in str(name):
        return None
    return folder / relative


def extra_paths(base: Path) -> ExtraPaths:
    """`<base>/extra_model_paths.yaml`, read once per version of the file (size and mtime)."""
    config = base / CONFIG_NAME
    try:
        stat = config.stat()
    except (OSError, ValueError):
        return ExtraPaths({})
    key = (str(config), stat.st_size, stat.st_mtime_ns)
    if key not in _read:
        _read[key] = _parse(config, stat)
        if _read[key].problem:
            log.warning("%s", _read[key].problem)
    return _read[key]


def _parse(config: Path, stat: os.stat_result) -> ExtraPaths:
    import yaml

    def problem(text: str, folders: dict[str, tuple[Path, ...]] | None = None) -> ExtraPaths:
        return ExtraPaths(folders or {}, f"comfyui.root: {config} {text}")

    # A FIFO would block the read, /dev/zero (size 0) never end it: regular files only, and
    # no more read than the limit even if the file grows after its stat.
    if not S_ISREG(stat.st_mode):
        return problem("is no regular file; not read")
    try:
        with config.open("rb") as file:
            data = file.read(MAX_CONFIG_BYTES + 1)
        if stat.st_size > MAX_CONFIG_BYTES or len(data) > MAX_CONFIG_BYTES:
            return problem(f"is over {MAX_CONFIG_BYTES >> 20} MB; not read")
        sections = yaml.safe_load(data.decode("utf-8"))
    except OSError as error:
        return problem(f"cannot be read ({error.strerror}); not used")
    except UnicodeDecodeError:
        return problem("is not UTF-8 text; not used")
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        return problem(f"is not valid YAML{where}; not used")
    except RecursionError:
        return problem("is nested too deep; not used")
    except ValueError as error:  # PyYAML lets int()'s 4300-digit limit through
        return problem(f"has a value that cannot be read ({one_line(str(error), 80)}); not used")
    if sections is None:
        return ExtraPaths({})
    if not isinstance(sections, dict):
        return problem("is not a mapping of sections (see ComfyUI's example file); not used")
    folders: dict[str, list[Path]] = {}
    skipped: list[str] = []
    entries = 0
    for name, kind, value in _entries(sections, skipped):
        section_base = _base(sections[name].get("base_path"), config.parent)
        where = f"{str(name)[:40]}.{str(kind)[:40]}"
        lines = value.split("\n", MAX_ENTRIES) if isinstance(value, str) else []
        entries += 1 + len(lines)
        if entries > MAX_ENTRIES:
            return problem(
                f"has over {MAX_ENTRIES} entries; the rest are skipped", _unique(folders)
            )
        if not isinstance(value, str) or section_base is None:
            skipped.append(where)
            continue
        for line in lines:
            folder = _folder(line.strip(), section_base)
            if folder is None and line.strip():
                skipped.append(where)
            elif folder is not None:
                folders.setdefault(str(kind), []).append(folder)
    found = _unique(folders)
    if skipped:
        shown = ", ".join(dict.fromkeys(skipped[:5]))
        return problem(f"has entries that are no folder names ({shown}); those are skipped", found)
    return ExtraPaths(found)


def _unique(folders: dict[str, list[Path]]) -> dict[str, tuple[Path, ...]]:
    return {kind: tuple(dict.fromkeys(paths)) for kind, paths in folders.items()}


def _entries(sections: dict, skipped: list[str]) -> Iterator[tuple[Any, Any, Any]]:
    """(section, key, value) for each key of each section but `base_path` and `is_default`; a
    section that is no mapping goes to `skipped` (extra_config.py skips an empty one too)."""
    for name, section in sections.items():
        if isinstance(section, dict):
            yield from ((name, k, v) for k, v in section.items() if k not in IGNORED_KEYS)
        elif section is not None:
            skipped.append(str(name)[:40])


def _base(value: object, config_dir: Path) -> Path | None:
    """A section's `base_path` (`~`, `$VARS` expanded; relative: to the file's folder), or the
    file's folder without one; None when it is no usable path."""
    if value is None:
        return config_dir
    if not isinstance(value, str) or "\x00" in value or len(value) > MAX_FOLDER_CHARS:
        return None
    base = expand_user(os.path.expandvars(value))
    return base if base.is_absolute() else config_dir / base


def _folder(line: str, base: Path) -> Path | None:
    if not line or "\x00" in line or len(line) > MAX_FOLDER_CHARS:
        return None
    return base / expand_user(os.path.expandvars(line))  # an absolute line wins, as os.path.join


def is_dir(folder: Path) -> bool:
    """Whether `folder` is a directory; an unreadable or odd path is not (pathlib raises for
    EACCES and ENAMETOOLONG)."""
    try:
        return folder.is_dir()
    except (OSError, ValueError):
        return False


def is_file(path: Path) -> bool:
    """`path.is_file()`, False instead of raising for unreadable or odd paths."""
    try:
        return path.is_file()
    except (OSError, ValueError):
        return False
