"""YuNet (OpenCV's ``FaceDetectorYN``): the default face detector for real corpora.

Measured on 43 hand-annotated real faces (``benchmarks/bench_faces.py``) it finds every face, with the
fewest false positives of the fast detectors, several times faster than the Haar cascade, and it gives
five landmarks. Its 0.2 MB ONNX weights come from the OpenCV model zoo, pinned by sha256 and cached
(:mod:`crossfake.utils.model_files`), or from a local path.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from crossfake.data.preprocess.face_detectors.base import Face, downscale, register_face_detector
from crossfake.utils.errors import CrossfakeError
from crossfake.utils.model_files import ModelFile, fetch_model_file

YUNET_WEIGHTS = ModelFile(
    name="face_detection_yunet_2023mar.onnx",
    url=(
        "https://github.com/opencv/opencv_zoo/raw/main/models/face_detection_yunet/"
        "face_detection_yunet_2023mar.onnx"
    ),
    sha256="8f2383e4dd3cfbb4553ea8718107fc0423210dc964f9f4280604804ed2552fa4",
    what="the YuNet face detector's weights",
    flag="--face-detector-weights",
)


@register_face_detector("yunet")
class YuNetDetector:
    """OpenCV YuNet face detector with five landmarks.

    Args:
        weights: the ONNX model; default: the cached ``face_detection_yunet_2023mar.onnx``, downloaded
            once from the OpenCV model zoo and checked against its sha256.
        score_threshold: faces scoring below this are dropped (YuNet's scores are calibrated in [0, 1]).
        nms_threshold: IoU above which overlapping boxes are merged.
        max_side: frames whose longest side exceeds this are downscaled before detection, so a 1080p
            frame costs what a 640-pixel one does; boxes and landmarks are mapped back.
    """

    gives_landmarks = True

    def __init__(
        self,
        weights: str | Path | None = None,
        score_threshold: float = 0.7,
        nms_threshold: float = 0.3,
        max_side: int | None = 640,
    ) -> None:
        path = fetch_model_file(YUNET_WEIGHTS, weights)
        try:
            self.net = cv2.FaceDetectorYN.create(str(path), "", (320, 320), score_threshold, nms_threshold)
        except cv2.error as e:
            raise CrossfakeError(f"cannot load YuNet weights {path}: {str(e).strip().splitlines()[-1]}") from None
        self.max_side = max_side
        self._size: tuple[int, int] | None = None

    def __call__(self, rgb: np.ndarray) -> list[Face]:
        image, scale = downscale(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), self.max_side)
        size = (image.shape[1], image.shape[0])
        if size != self._size:  # re-planning the network per call costs as much as a detection
            self.net.setInputSize(size)
            self._size = size
        _, rows = self.net.detect(image)
        if rows is None:
            return []
        # Each row: x, y, w, h, then (x, y) of the right eye, left eye, nose tip, right and left mouth
        # corners *of the person*, which are the image's left eye first, etc., then the score.
        faces = []
        for row in np.asarray(rows, dtype=np.float64):
            x, y, w, h = row[:4]
            points = tuple((float(px), float(py)) for px, py in row[4:14].reshape(5, 2))
            faces.append(Face(float(x), float(y), float(x + w), float(y + h), float(row[14]), points))
        return [f.scaled(1 / scale) for f in faces] if scale != 1.0 else faces
