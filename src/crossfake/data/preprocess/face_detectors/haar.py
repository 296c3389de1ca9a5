"""OpenCV's Haar cascade: the face detector that needs no download.

It ships inside ``opencv-python-headless`` 4.x, so it works offline on any machine, which is why the
synthetic demo uses it. On real faces it is the weakest choice measured (``benchmarks/bench_faces.py``):
it misses more faces, reports patches of background as faces, is the slowest, and gives no landmarks.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from crossfake.data.preprocess.face_detectors.base import Face, downscale, register_face_detector
from crossfake.utils.errors import CrossfakeError


@register_face_detector("haar")
class HaarDetector:
    """OpenCV Haar cascade face detector (no landmarks).

    Args:
        weights: a cascade XML file; default ``haarcascade_frontalface_default.xml`` from OpenCV.
        scale_factor: image pyramid step of ``detectMultiScale``.
        min_neighbors: overlapping raw detections needed to keep a face; higher means fewer false faces.
        min_face: smallest face side searched for, as a fraction of the frame's shorter side (never below
            the cascade's 24-pixel window). The cascade's cost is dominated by its smallest scales, so
            0.1 rather than the window size halves it, and the face a video is about is larger.
        max_side: frames whose longest side exceeds this are downscaled before detection (boxes are
            mapped back to full resolution).
    """

    gives_landmarks = False

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
        gray, scale = downscale(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), self.max_side)
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
