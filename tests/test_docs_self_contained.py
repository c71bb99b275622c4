"""What a user who clones the repository reads is in the repository: no tracked file outside
`tests/` points at the design notes beside the checkout (`../shared`, `shared/DESIGN.md`), which
a clone does not have; `docs/CONTRACT.md` holds the contract instead."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Spelled in two halves, so this file's own text is no match either.
OUTSIDE = ("../" + "shared", "shared/" + "DESIGN.md")


def tracked_files() -> list[Path]:
    """The repository's files (git's list; every file but caches and the venv without git)."""
    try:
        listed = subprocess.run(
            ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True, timeout=60
        ).stdout.decode()
        return [ROOT / name for name in listed.split("\0") if name]
    except (OSError, subprocess.SubprocessError):
        skip = {".git", ".venv", "__pycache__", ".ruff_cache", ".pytest_cache"}
        return [p for p in ROOT.rglob("*") if p.is_file() and not skip & set(p.parts)]


def references_outside(paths: list[Path], root: Path = ROOT) -> list[str]:
    found = []
    for path in paths:
        if path.relative_to(root).parts[0] == "tests" or not path.is_file():
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue  # images and other binaries
        found += [f"{path.relative_to(root)}: {needle}" for needle in OUTSIDE if needle in text]
    return found


def test_no_tracked_file_points_outside_the_repository():
    assert references_outside(tracked_files()) == []


def test_the_check_finds_a_planted_reference(tmp_path):
    """So that the test above can fail: a planted file that names the design notes is found,
    and the same text under `tests/` is not."""
    for folder in ("docs", "tests"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "notes.md").write_text("see ../" + "shared/" + "DESIGN.md\n")
    paths = [tmp_path / "docs" / "notes.md", tmp_path / "tests" / "notes.md"]
    assert references_outside(paths, tmp_path) == [
        "docs/notes.md: ../" + "shared",
        "docs/notes.md: shared/" + "DESIGN.md",
    ]


def test_the_contract_is_in_the_repository():
    contract = (ROOT / "docs" / "CONTRACT.md").read_text(encoding="utf-8")
    for part in (
        "## Paths and settings",
        "## Commands",
        "## JSON shapes",
        "anime-gen poses search",
    ):
        assert part in contract
