"""The quality gate: scores every generated image and decides whether it is kept.

- consistency: CLIP similarity of the output's character crop to the character's references,
  calibrated per character (`tools/quality/calibration.py`), against `quality.min_consistency`;
- palette: colour-palette similarity of the figure to the character's references
  (`tools/quality/palette.py`, no model weights), calibrated per character like consistency, against
  `quality.min_palette`; it catches what CLIP misses most, the wrong hair or outfit colour;
- face: the best `animeface` likelihood (0 when none); a pose whose framing shows the face
  (front views, upper body) must have one when `quality.require_face`; back views are exempt;
- aesthetic: P(good) from `quality.aesthetic_model` against `quality.min_aesthetic`, skipped
  (score None) when that model is unavailable.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from PIL import Image
from pydantic import BaseModel, Field

from tools.settings import Settings

if TYPE_CHECKING:
    import numpy as np
    import torch

    from tools.characters.library import Character, CharacterLibrary
    from tools.engine.rendering import Engine
    from tools.quality.aesthetic import AestheticScorer
    from tools.quality.consistency import ImageEncoder

log = logging.getLogger(__name__)

# Pose tags whose framing shows the face, and tags that exempt a pose from the face check.
FACE_VISIBLE_TAGS = frozenset({"front view", "upper body", "portrait", "close-up", "face"})
FACE_HIDDEN_TAGS = frozenset({"back view", "from behind"})


class Scores(BaseModel):
    consistency: float | None = None
    face: float | None = None
    aesthetic: float | None = None
    palette: float | None = None


class Verdict(BaseModel):
    scores: Scores
    accepted: bool
    reasons: list[str] = Field(default_factory=list)


def face_expected(pose_tags: list[str]) -> bool:
    tags = {tag.strip().lower().replace("_", " ") for tag in pose_tags}
    return bool(tags & FACE_VISIBLE_TAGS) and not tags & FACE_HIDDEN_TAGS


def face_score(image: Image.Image) -> float:
    from tools.quality.faces import detect_faces

    faces = detect_faces(image)
    return round(faces[0].likelihood, 4) if faces else 0.0


class QualityGate:
    def __init__(
        self,
        settings: Settings,
        engine: Engine | None,
        *,
        encoder: ImageEncoder | None = None,
        library: CharacterLibrary | None = None,
    ) -> None:
        self.settings = settings
        self.quality = settings.quality
        self.engine = engine
        self._encoder = encoder
        self._library = library
        self._aesthetic: AestheticScorer | None = None
        self._reference_cache: dict[tuple, torch.Tensor] = {}
        self._baselines: dict[str, float] = {}
        self._palette_cache: dict[tuple, list[np.ndarray]] = {}
        self._palette_baselines: dict[str, float] = {}

    # -- parts, created on first use -------------------------------------------------------
    @property
    def encoder(self) -> ImageEncoder:
        if self._encoder is None:
            from tools.quality.consistency import make_encoder

            self._encoder = make_encoder(self.settings, self.engine)
        return self._encoder

    @property
    def library(self) -> CharacterLibrary:
        if self._library is None:
            from tools.characters.library import CharacterLibrary

            self._library = CharacterLibrary(self.settings.paths)
        return self._library

    @property
    def aesthetic(self) -> AestheticScorer:
        if self._aesthetic is None:
            from tools.quality.aesthetic import AestheticScorer

            self._aesthetic = AestheticScorer(self.settings)
        return self._aesthetic

    # -- scores ------------------------------------------------------------------------------
    def _references(self, character: Character) -> torch.Tensor:
        key = tuple((str(p), *_stamp(p)) for p in character.reference_paths) + (self.encoder.name,)
        if key not in self._reference_cache:
            from tools.quality.calibration import reference_embeddings

            images = [Image.open(path).convert("RGB") for path in character.reference_paths]
            self._reference_cache[key] = reference_embeddings(self.encoder, images)
        return self._reference_cache[key]

    def raw_consistency(self, image: Image.Image, character: Character) -> float:
        from tools.quality.consistency import similarity_to_references

        return similarity_to_references(self.encoder, [image], self._references(character))[0]

    def baseline(self, character: Character) -> float:
        """The character's stored consistency baseline; computed and stored on first use.

        Calibrates the palette too, so that warming a character up (worker, character sheet)
        stores both baselines.
        """
        self.palette_baseline(character)
        if character.consistency_baseline is not None:
            return character.consistency_baseline
        if character.name not in self._baselines:
            from tools.quality.calibration import calibrate_character

            updated = calibrate_character(self.library, self.encoder, character)
            assert updated.consistency_baseline is not None
            log.info("calibrated %s: baseline %.4f", updated.name, updated.consistency_baseline)
            self._baselines[character.name] = updated.consistency_baseline
        return self._baselines[character.name]

    def consistency(self, image: Image.Image, character: Character) -> float:
        from tools.quality.calibration import calibrated

        return calibrated(self.raw_consistency(image, character), self.baseline(character))

    def _palette_references(self, character: Character) -> list[np.ndarray]:
        key = tuple((str(p), *_stamp(p)) for p in character.reference_paths)
        if key not in self._palette_cache:
            from tools.quality.palette import palette_histogram

            self._palette_cache[key] = [
                palette_histogram(Image.open(path).convert("RGB"))
                for path in character.reference_paths
            ]
        return self._palette_cache[key]

    def raw_palette(self, image: Image.Image, character: Character) -> float:
        from tools.quality.palette import similarity_to_references

        return similarity_to_references([image], self._palette_references(character))[0]

    def palette_baseline(self, character: Character) -> float:
        """The character's stored palette baseline; computed and stored on first use."""
        if character.palette_baseline is not None:
            return character.palette_baseline
        if character.name not in self._palette_baselines:
            from tools.quality.calibration import calibrate_palette

            updated = calibrate_palette(self.library, character)
            assert updated.palette_baseline is not None
            log.info("calibrated %s: palette baseline %.4f", updated.name, updated.palette_baseline)
            self._palette_baselines[character.name] = updated.palette_baseline
        return self._palette_baselines[character.name]

    def palette(self, image: Image.Image, character: Character) -> float:
        from tools.quality.calibration import calibrated

        return calibrated(self.raw_palette(image, character), self.palette_baseline(character))

    # -- the decision ------------------------------------------------------------------------
    def evaluate(self, image: Image.Image, character: Character, pose_tags: list[str]) -> Verdict:
        if not self.quality.enabled:
            return Verdict(scores=Scores(), accepted=True)
        aesthetic = self.aesthetic.score(image)
        scores = Scores(
            consistency=round(self.consistency(image, character), 4),
            face=face_score(image),
            aesthetic=None if aesthetic is None else round(aesthetic, 4),
            palette=round(self.palette(image, character), 4),
        )
        quality = self.quality
        reasons = []
        if scores.consistency is not None and scores.consistency < quality.min_consistency:
            reasons.append(
                f"consistency {scores.consistency:.2f} < {quality.min_consistency:.2f} "
                f"(off-model for {character.name})"
            )
        if scores.palette is not None and scores.palette < quality.min_palette:
            reasons.append(
                f"palette {scores.palette:.2f} < {quality.min_palette:.2f} "
                f"(colours off-model for {character.name}: hair, eyes or outfit)"
            )
        if quality.require_face and not scores.face and face_expected(pose_tags):
            reasons.append("no face found, but the pose shows the face")
        if scores.aesthetic is not None and scores.aesthetic < quality.min_aesthetic:
            reasons.append(f"aesthetic {scores.aesthetic:.2f} < {quality.min_aesthetic:.2f}")
        return Verdict(scores=scores, accepted=not reasons, reasons=reasons)


def _stamp(path: Path) -> tuple[int, int]:
    stat = path.stat()
    return stat.st_mtime_ns, stat.st_size
