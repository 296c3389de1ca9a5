"""Face detectors, chosen by name.

A detector is built with :func:`create_face_detector` and called on an RGB ``uint8`` array of shape
``(H, W, 3)``; it returns the faces it found as :class:`Face` boxes in that frame's pixel coordinates,
each with a detector-specific score (higher is more confident). Detectors hold native handles that do
not pickle, so each worker process builds its own.

Add a detector by decorating a class whose ``__init__`` takes keyword options and whose ``__call__``
maps a frame to faces::

    @register_face_detector("retinaface")
    class RetinaFaceDetector:
        def __init__(self, weights: str | None = None, score_threshold: float = 0.8): ...
        def __call__(self, rgb: np.ndarray) -> list[Face]: ...

Built in:

- ``haar``: OpenCV's Haar cascade (``haarcascade_frontalface_default.xml``). Ships with
  ``opencv-python-headless`` 4.x, so it works offline; the score is the cascade's last-stage weight.
- ``yunet``: OpenCV's ``FaceDetectorYN`` (YuNet). Stronger and with calibrated scores in ``[0, 1]``,
  but its ONNX weights are a separate download (``weights=PATH``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np

from crossfake.utils.errors import CrossfakeError
from crossfake.utils.registry import Registry

YUNET_URL = (
    "https://github.com/opencv/opencv_zoo/raw/main/models/face_detection_yunet/"
    "face_detection_yunet_2023mar.onnx"
)


@dataclass(frozen=True)
class Face:
    """A face box in frame pixels (``x1``/``y1`` exclusive) with the detector's confidence."""

    x0: float
    y0: float
    x1: float
    y1: float
    score: float

    @property
    def width(self) -> float:
        return self.x1 - self.x0

    @property
    def height(self) -> float:
        return self.y1 - self.y0

    @property
    def area(self) -> float:
        return max(self.width, 0.0) * max(self.height, 0.0)


class FaceDetector(Protocol):
    """What :func:`create_face_detector` returns."""

    def __call__(self, rgb: np.ndarray) -> list[Face]: ...


FACE_DETECTORS: Registry[Callable[..., FaceDetector]] = Registry("face detector")
register_face_detector = FACE_DETECTORS.register


def list_face_detectors() -> list[str]:
    """Names accepted by :func:`create_face_detector`."""
    return FACE_DETECTORS.names()


def create_face_detector(name: str, **options: Any) -> FaceDetector:
    """Build the detector ``name`` with detector-specific keyword ``options``.

    Raises:
        CrossfakeError: unknown name, unknown option, or missing weights.
    """
    return FACE_DETECTORS.build(name, **options)


def _downscale(image: np.ndarray, max_side: int | None) -> tuple[np.ndarray, float]:
    """Shrink ``image`` so its longest side is at most ``max_side``; return it and the factor applied."""
    h, w = image.shape[:2]
    scale = 1.0 if not max_side else min(1.0, max_side / max(h, w))
    if scale < 1.0:
        image = cv2.resize(image, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
    return image, scale


@register_face_detector("haar")
class HaarDetector:
    """OpenCV Haar cascade face detector.

    Args:
        weights: a cascade XML file; default ``haarcascade_frontalface_default.xml`` from OpenCV.
        scale_factor: image pyramid step of ``detectMultiScale``.
        min_neighbors: overlapping raw detections needed to keep a face; higher means fewer false faces.
        min_face: smallest face side searched for, as a fraction of the frame's shorter side (never below
            the cascade's 24-pixel window). The cascade's cost is dominated by its smallest scales, so
            0.1 rather than the window size halves it, and the face a video is about is larger.
        max_side: frames whose longest side exceeds this are downscaled before detection (boxes are
            mapped back to full resolution). The cascade's cost grows with pixel count while faces in
            a 640-pixel frame are still far above its window.
    """

    def __init__(
        self,
        weights: str | Path | None = None,
        scale_factor: float = 1.1,
        min_neighbors: int = 5,
        min_face: float = 0.1,
        max_side: int | None = 640,
    ) -> None:
        path = (
            Path(weights) if weights else Path(cv2.data.haarcascades) / "haarcascade_frontalface_default.xml"
        )
        if not path.is_file():
            raise CrossfakeError(
                f"Haar cascade {path} not found (opencv-python-headless 5.x ships none; install 4.x)"
            )
        self.cascade = cv2.CascadeClassifier(str(path))
        if self.cascade.empty():
            raise CrossfakeError(f"{path} is not a valid OpenCV cascade file")
        self.scale_factor = scale_factor
        self.min_neighbors = min_neighbors
        self.min_face = min_face
        self.max_side = max_side

    def __call__(self, rgb: np.ndarray) -> list[Face]:
        gray, scale = _downscale(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), self.max_side)
        min_size = max(24, round(self.min_face * min(gray.shape)))
        # outputRejectLevels=True makes the cascade report each box's last-stage weight: a usable score.
        boxes, _, weights = self.cascade.detectMultiScale3(
            gray,
            scaleFactor=self.scale_factor,
            minNeighbors=self.min_neighbors,
            minSize=(min_size, min_size),
            outputRejectLevels=True,
        )
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4) / scale
        return [
            Face(float(x), float(y), float(x + w), float(y + h), float(score))
            for (x, y, w, h), score in zip(boxes, np.ravel(weights), strict=True)
        ]


@register_face_detector("yunet")
class YuNetDetector:
    """OpenCV YuNet face detector (``cv2.FaceDetectorYN``).

    Args:
        weights: the ONNX model, e.g. ``face_detection_yunet_2023mar.onnx`` from the OpenCV model zoo.
        score_threshold: faces scoring below this are dropped.
        nms_threshold: IoU above which overlapping boxes are merged.
        max_side: frames whose longest side exceeds this are downscaled before detection.
    """

    def __init__(
        self,
        weights: str | Path | None = None,
        score_threshold: float = 0.7,
        nms_threshold: float = 0.3,
        max_side: int | None = 640,
    ) -> None:
        if not weights or not Path(weights).is_file():
            where = f"{weights} does not exist" if weights else "no weights file given"
            raise CrossfakeError(
                f"the yunet detector needs its ONNX weights ({where}). Download "
                f"face_detection_yunet_2023mar.onnx from the OpenCV model zoo ({YUNET_URL}) and pass it "
                "with --detector-weights PATH (detector_options: {weights: PATH})"
            )
        try:
            self.net = cv2.FaceDetectorYN.create(str(weights), "", (320, 320), score_threshold, nms_threshold)
        except cv2.error as e:
            raise CrossfakeError(f"cannot load YuNet weights {weights}: {e}") from None
        self.max_side = max_side

    def __call__(self, rgb: np.ndarray) -> list[Face]:
        image, scale = _downscale(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), self.max_side)
        self.net.setInputSize((image.shape[1], image.shape[0]))
        _, faces = self.net.detect(image)
        if faces is None:
            return []
        # Each row: x, y, w, h, five landmarks (x, y), score.
        boxes = faces[:, :4] / scale
        return [
            Face(float(x), float(y), float(x + w), float(y + h), float(score))
            for (x, y, w, h), score in zip(boxes, faces[:, -1], strict=True)
        ]
