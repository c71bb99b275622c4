"""The runtime owns the warm resources of one process, built lazily from one `Settings`."""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING

from tools.characters.library import CharacterLibrary
from tools.settings import Settings
from tools.store.gen_index import GenerationIndex
from tools.store.output_store import OutputStore

if TYPE_CHECKING:
    from posebank import PoseBank
    from tools.engine.rendering import Engine
    from tools.generation.generate import Generator
    from tools.quality.gate import QualityGate


class Runtime:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.paths = settings.paths

    @cached_property
    def characters(self) -> CharacterLibrary:
        return CharacterLibrary(self.paths)

    @cached_property
    def index(self) -> GenerationIndex:
        return GenerationIndex(self.paths.state / "generations.sqlite")

    @cached_property
    def store(self) -> OutputStore:
        return OutputStore(self.settings, self.index)

    @cached_property
    def poses(self) -> PoseBank:
        from posebank import PoseBank

        return PoseBank(self.paths.state, self.paths.user_poses)

    @cached_property
    def engine(self) -> Engine:
        from tools.engine.rendering import Engine

        return Engine(self.settings)

    @cached_property
    def gate(self) -> QualityGate:
        from tools.quality.gate import QualityGate

        return QualityGate(self.settings, self.engine)

    @cached_property
    def generator(self) -> Generator:
        from tools.generation.generate import Generator

        return Generator(self)
