"""The runtime owns the warm resources of one process, built lazily from one `Settings`.

It is the one place that wires the parts together: the planner gets the library and the pose
bank, the producer gets the engine, gate, store and index. Nothing else pulls parts out of it.
Each part is built once even when threads (the server's requests) ask for it at once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tools.characters.library import CharacterLibrary
from tools.once import once_property
from tools.settings import Settings
from tools.store.gen_index import GenerationIndex
from tools.store.output_store import OutputStore

if TYPE_CHECKING:
    from posebank import PoseBank
    from tools.engine.rendering import Engine
    from tools.generation.planner import GenerationPlanner
    from tools.generation.producer import Producer
    from tools.quality.gate import QualityGate


class Runtime:
    def __init__(self, settings: Settings, engine: Engine | None = None) -> None:
        """`engine`: a warm engine to share (the worker hands the one it owns to each job's
        runtime whose settings render alike); by default one is made on first use."""
        self.settings = settings
        self.paths = settings.paths
        self._engine = engine

    @once_property
    def characters(self) -> CharacterLibrary:
        return CharacterLibrary(self.paths)

    @once_property
    def index(self) -> GenerationIndex:
        return GenerationIndex(self.paths.state / "generations.sqlite")

    @once_property
    def store(self) -> OutputStore:
        return OutputStore(self.settings, self.index)

    @once_property
    def poses(self) -> PoseBank:
        from posebank import PoseBank

        return PoseBank(self.paths.state, self.paths.user_poses)

    @once_property
    def engine(self) -> Engine:
        if self._engine is not None:
            return self._engine
        if self.settings.worker.backend == "comfyui":
            from tools.comfyui.engine import ComfyUIEngine

            return ComfyUIEngine(self.settings)
        from tools.engine.rendering import Engine

        return Engine(self.settings)

    @once_property
    def gate(self) -> QualityGate:
        from tools.quality.gate import QualityGate

        return QualityGate(self.settings, self.engine)

    @once_property
    def planner(self) -> GenerationPlanner:
        from tools.generation.planner import GenerationPlanner

        return GenerationPlanner(self.settings, self.characters, self.poses)

    @once_property
    def producer(self) -> Producer:
        from tools.generation.producer import Producer

        return Producer(
            self.settings,
            engine=self.engine,
            gate=self.gate,
            store=self.store,
            index=self.index,
            characters=self.characters,
            poses=self.poses,
        )
