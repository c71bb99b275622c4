"""Anime face detection (the `animeface` package ships its model, so this works offline)."""

from __future__ import annotations

from dataclasses import dataclass

from PIL import Image


@dataclass(frozen=True)
class FaceBox:
    x: int
    y: int
    width: int
    height: int
    likelihood: float


def detect_faces(image: Image.Image) -> list[FaceBox]:
    """Faces found in `image`, most likely first."""
    import animeface

    faces = animeface.detect(image.convert("RGB"))
    boxes = [
        FaceBox(f.face.pos.x, f.face.pos.y, f.face.pos.width, f.face.pos.height, f.likelihood)
        for f in faces
    ]
    return sorted(boxes, key=lambda box: box.likelihood, reverse=True)
