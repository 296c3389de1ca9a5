"""What a face detector is: a callable from an RGB frame to :class:`Face` boxes with five landmarks.

A face detector is built by name with :func:`create_face_detector` and called on an RGB ``uint8`` array of
shape ``(H, W, 3)``; it returns the faces it found in that frame's pixel coordinates, each with a score of
its own scale (higher is more confident) and, where the face detector gives them, five landmarks.
Face detectors hold native handles that do not pickle, so each worker process builds its own.

Landmarks follow the 5-point convention of RetinaFace and InsightFace, in *image* terms: the eye on the
image's left, the eye on the image's right, the nose tip, the mouth corner on the image's left, the one
on the image's right (:data:`LANDMARK_NAMES`). Alignment (eyes level) and the pseudo-fake masks of
self-blended training need them; a face detector without landmarks (Haar) returns ``None``.

Add a face detector by decorating a class whose ``__init__`` takes keyword options and whose ``__call__``
maps a frame to faces::

    @register_face_detector("retinaface")
    class RetinaFaceDetector:
        def __init__(self, weights: str | None = None, score_threshold: float = 0.8): ...
        def __call__(self, rgb: np.ndarray) -> list[Face]: ...
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Protocol

import cv2
import numpy as np

from crossfake.utils.registry import Registry

#: The five landmarks, in order, as image-side names (``eye_l`` is the eye on the image's left).
LANDMARK_NAMES = ("eye_l", "eye_r", "nose", "mouth_l", "mouth_r")

Point = tuple[float, float]


@dataclass(frozen=True)
class Face:
    """A face box in frame pixels (``x1``/``y1`` exclusive), the face detector's confidence, five landmarks."""

    x0: float
    y0: float
    x1: float
    y1: float
    score: float
    landmarks: tuple[Point, ...] | None = None  # LANDMARK_NAMES order, frame pixels

    @property
    def width(self) -> float:
        return self.x1 - self.x0

    @property
    def height(self) -> float:
        return self.y1 - self.y0

    @property
    def area(self) -> float:
        return max(self.width, 0.0) * max(self.height, 0.0)

    @property
    def box(self) -> tuple[float, float, float, float]:
        return (self.x0, self.y0, self.x1, self.y1)

    def scaled(self, factor: float) -> Face:
        """The same face with every coordinate multiplied by ``factor`` (e.g. 1/downscale)."""
        landmarks = None
        if self.landmarks is not None:
            landmarks = tuple((x * factor, y * factor) for x, y in self.landmarks)
        return replace(
            self,
            x0=self.x0 * factor,
            y0=self.y0 * factor,
            x1=self.x1 * factor,
            y1=self.y1 * factor,
            landmarks=landmarks,
        )


class FaceDetector(Protocol):
    """What :func:`create_face_detector` returns."""

    gives_landmarks: bool  # whether its faces carry the five landmarks

    def __call__(self, rgb: np.ndarray) -> list[Face]: ...


FACE_DETECTORS: Registry[Callable[..., FaceDetector]] = Registry("face detector")
register_face_detector = FACE_DETECTORS.register


def list_face_detectors() -> list[str]:
    """Names accepted by :func:`create_face_detector`."""
    return FACE_DETECTORS.names()


def create_face_detector(name: str, **options: Any) -> FaceDetector:
    """Build the face detector ``name`` with its own keyword ``options``.

    Raises:
        CrossfakeError: unknown name, unknown option, missing weights or a missing optional package.
    """
    return FACE_DETECTORS.build(name, **options)


def downscale(image: np.ndarray, max_side: int | None) -> tuple[np.ndarray, float]:
    """Shrink ``image`` so its longest side is at most ``max_side``; return it and the factor applied.

    Face detectors run on the shrunk frame and map their boxes back with ``1 / factor``, so a 1080p frame
    costs what a 640-pixel one does while the faces a video is about stay far above any face detector's
    smallest size.
    """
    h, w = image.shape[:2]
    scale = 1.0 if not max_side else min(1.0, max_side / max(h, w))
    if scale < 1.0:
        image = cv2.resize(image, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
    return image, scale


def box_iou(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    """Intersection over union of two ``(x0, y0, x1, y1)`` boxes (0 when either is empty)."""
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0
