"""The quality gate: scores every generated image and decides whether it is kept.

- consistency: CLIP similarity of the output's character crop to the character's references,
  calibrated per character (`tools/quality/calibration.py`), against `quality.min_consistency`;
- palette: colour-palette similarity of the figure to the character's references
  (`tools/quality/palette.py`, no model weights), calibrated per character like consistency, against
  `quality.min_palette`; it catches what CLIP misses most, the wrong hair or outfit colour
  (both are `tools.quality.signals.Signal`s, scored by one code path);
- face: the best `animeface` likelihood (0 when none); a pose whose framing shows the face
  (front views, upper body) must have one when `quality.require_face`; back views are exempt;
- aesthetic: P(good) from `quality.aesthetic_model` against `quality.min_aesthetic`, skipped
  (score None) when that model is unavailable.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PIL import Image
from pydantic import BaseModel, Field

from tools.settings import Settings

if TYPE_CHECKING:
    from tools.characters.library import Character, CharacterLibrary
    from tools.engine.rendering import Engine
    from tools.quality.aesthetic import AestheticScorer
    from tools.quality.consistency import ImageEncoder
    from tools.quality.signals import Signal

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
        self._consistency_signal: Signal | None = None
        self._summaries: dict[tuple, Any] = {}
        self._baselines: dict[tuple[str, str], float] = {}

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

    @property
    def consistency_signal(self) -> Signal:
        if self._consistency_signal is None:
            from tools.quality.signals import consistency_signal

            self._consistency_signal = consistency_signal(self.encoder)
        return self._consistency_signal

    # -- scores ------------------------------------------------------------------------------
    def _summary(self, signal: Signal, character: Character) -> Any:
        """The signal's summary of the character's references, cached per reference file."""
        files = tuple((str(p), *_stamp(p)) for p in character.reference_paths)
        key = (signal.name, signal.cache_tag, files)
        if key not in self._summaries:
            images = [Image.open(path).convert("RGB") for path in character.reference_paths]
            self._summaries[key] = signal.summarise(images)
        return self._summaries[key]

    def raw(self, signal: Signal, image: Image.Image, character: Character) -> float:
        return signal.similarity([image], self._summary(signal, character))[0]

    def raw_consistency(self, image: Image.Image, character: Character) -> float:
        return self.raw(self.consistency_signal, image, character)

    def signal_baseline(self, signal: Signal, character: Character) -> float:
        """The character's stored baseline of `signal`; computed and stored on first use."""
        stored = getattr(character, signal.baseline_field)
        if stored is not None:
            return stored
        key = (signal.name, character.name)
        if key not in self._baselines:
            from tools.quality.calibration import calibrate

            updated = calibrate(self.library, signal, character)
            value = getattr(updated, signal.baseline_field)
            assert value is not None
            log.info("calibrated %s: %s baseline %.4f", updated.name, signal.name, value)
            self._baselines[key] = value
        return self._baselines[key]

    def baseline(self, character: Character) -> float:
        """The character's consistency baseline. Calibrates the palette too, so that warming
        a character up (worker, character sheet) stores both baselines."""
        from tools.quality.signals import PALETTE

        self.signal_baseline(PALETTE, character)
        return self.signal_baseline(self.consistency_signal, character)

    def score(self, signal: Signal, image: Image.Image, character: Character) -> float:
        """The calibrated score: raw similarity over the character's baseline, in 0..1."""
        from tools.quality.calibration import calibrated

        raw = self.raw(signal, image, character)
        return calibrated(raw, self.signal_baseline(signal, character))

    # -- the decision ------------------------------------------------------------------------
    def evaluate(self, image: Image.Image, character: Character, pose_tags: list[str]) -> Verdict:
        from tools.quality.signals import PALETTE

        if not self.quality.enabled:
            return Verdict(scores=Scores(), accepted=True)
        aesthetic = self.aesthetic.score(image)
        scores = Scores(
            consistency=round(self.score(self.consistency_signal, image, character), 4),
            face=face_score(image),
            aesthetic=None if aesthetic is None else round(aesthetic, 4),
            palette=round(self.score(PALETTE, image, character), 4),
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
