"""The quality gate: scores every generated image and decides whether it is kept.

Consistency is the cosine similarity of CLIP image embeddings (the IP-Adapter's own encoder)
between the output and the character's reference images.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from PIL import Image
from pydantic import BaseModel, Field

from tools.settings import Settings

if TYPE_CHECKING:
    from tools.characters import Character
    from tools.engine import Engine


class Scores(BaseModel):
    consistency: float | None = None
    face: float | None = None
    aesthetic: float | None = None


class Verdict(BaseModel):
    scores: Scores
    accepted: bool
    reasons: list[str] = Field(default_factory=list)


class QualityGate:
    def __init__(self, settings: Settings, engine: Engine) -> None:
        self.quality = settings.quality
        self.engine = engine

    def consistency(self, image: Image.Image, character: Character) -> float:
        references = [Image.open(path).convert("RGB") for path in character.reference_paths]
        embeddings = self.engine.image_embeddings([image, *references])
        return float((embeddings[1:] @ embeddings[0]).max())

    def evaluate(self, image: Image.Image, character: Character, pose_tags: list[str]) -> Verdict:
        if not self.quality.enabled:
            return Verdict(scores=Scores(), accepted=True)
        scores = Scores(consistency=round(self.consistency(image, character), 4))
        reasons = []
        if scores.consistency is not None and scores.consistency < self.quality.min_consistency:
            reasons.append(
                f"consistency {scores.consistency:.2f} < {self.quality.min_consistency:.2f}"
            )
        return Verdict(scores=scores, accepted=not reasons, reasons=reasons)
