import json
from pathlib import Path

import pytest
from PIL import Image

from tools.characters.library import CharacterLibrary, normalize_name
from tools.errors import UnknownCharacterError, UserError
from tools.settings import Paths


@pytest.fixture
def library(tmp_path: Path) -> CharacterLibrary:
    return CharacterLibrary(Paths(tmp_path))


def test_add_creates_folder_png_and_index(library, reference_image):
    jpeg = reference_image.with_suffix(".jpg")
    Image.open(reference_image).save(jpeg)
    character = library.add("Sakura", jpeg, description="pink hair girl", prompt_tags="pink hair")
    assert character.name == "sakura"
    folder = library.root / "sakura"
    assert (folder / "poses").is_dir() and (folder / "variations").is_dir()
    with Image.open(folder / "reference.png") as stored:
        assert stored.format == "PNG"
    index = json.loads(library.index_path.read_text())
    assert [c["name"] for c in index["characters"]] == ["sakura"]
    assert index["characters"][0]["description"] == "pink hair girl"


@pytest.mark.parametrize("name", ["../evil", "a/b", "sp ace", "", "x" * 41, "dot.name", "é"])
def test_bad_names_are_refused_and_nothing_is_written(library, reference_image, name):
    with pytest.raises(UserError, match="invalid character name"):
        library.add(name, reference_image)
    assert not library.root.exists()


def test_names_fold_to_lowercase():
    assert normalize_name("  Yuki_2 ") == "yuki_2"


def test_unreadable_reference(library, tmp_path):
    bad = tmp_path / "not-an-image.png"
    bad.write_bytes(b"this is text")
    with pytest.raises(UserError, match="not a readable image"):
        library.add("yuki", bad)
    with pytest.raises(UserError, match="not found"):
        library.add("yuki", tmp_path / "missing.png")
    assert library.list() == []


def test_tiny_reference_refused(library, tmp_path):
    small = tmp_path / "small.png"
    Image.new("RGB", (10, 10)).save(small)
    with pytest.raises(UserError, match="10x10"):
        library.add("yuki", small)


def test_duplicate_name_refused(library, reference_image):
    library.add("yuki", reference_image)
    with pytest.raises(UserError, match="already exists"):
        library.add("YUKI", reference_image)


def test_corrupt_index_is_reported_not_overwritten(library, reference_image):
    library.add("yuki", reference_image)
    library.index_path.write_text("{ not json")
    with pytest.raises(UserError) as err:
        library.add("sakura", reference_image)
    assert str(library.index_path) in err.value.message
    assert "move it away" in err.value.hint
    assert library.index_path.read_text() == "{ not json"
    assert not (library.root / "sakura").exists()


def test_resolve_fuzzy_and_unknown(library, reference_image):
    library.add("sakura", reference_image)
    library.add("yuki", reference_image)
    assert library.resolve("Sakura") == (library.get("sakura"), False)
    character, corrected = library.resolve("sakrua")
    assert character.name == "sakura" and corrected
    with pytest.raises(UnknownCharacterError) as err:
        library.resolve("zzzz")
    assert err.value.suggestions == []
    with pytest.raises(UnknownCharacterError) as err:
        library.get("yuka")
    assert err.value.suggestions == ["yuki"]


def test_remove_keeps_folder_in_trash(library, reference_image):
    library.add("yuki", reference_image)
    library.remove("yuki")
    assert library.list() == []
    trashed = list((library.root / ".trash").iterdir())
    assert len(trashed) == 1 and (trashed[0] / "reference.png").exists()
    with pytest.raises(UnknownCharacterError):
        library.remove("yuki")


def test_removing_a_name_twice_in_one_second_keeps_both_folders(
    library, reference_image, monkeypatch
):
    import tools.characters.library as library_module

    class FrozenClock(library_module.datetime):
        @classmethod
        def now(cls, tz=None):
            return library_module.datetime(2026, 1, 2, 3, 4, 5, tzinfo=tz)

    monkeypatch.setattr(library_module, "datetime", FrozenClock)
    for _ in range(2):
        library.add("yuki", reference_image)
        library.remove("yuki")
    trashed = sorted(path.name for path in (library.root / ".trash").iterdir())
    assert len(trashed) == 2 and trashed[0].startswith("yuki-20260102T030405")
    library.add("yuki", reference_image)
    assert library.names() == ["yuki"]


def test_a_remove_whose_folder_cannot_move_leaves_the_index_as_it_was(
    library, reference_image, monkeypatch
):
    library.add("yuki", reference_image)
    monkeypatch.setattr(Path, "rename", lambda self, target: (_ for _ in ()).throw(OSError(5)))
    with pytest.raises(OSError):
        library.remove("yuki")
    monkeypatch.undo()
    assert library.names() == ["yuki"]
    assert (library.get("yuki").folder / "reference.png").exists()
