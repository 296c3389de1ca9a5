"""Face detectors, chosen by name: ``yunet`` (default for real corpora), ``dlib``, ``haar``.

:mod:`.base` defines the contract (a callable from an RGB frame to :class:`Face` boxes with five
landmarks) and the registry; each other module is one face detector.
"""

from crossfake.data.preprocess.face_detectors import dlib, haar, yunet  # noqa: F401  (registration)
from crossfake.data.preprocess.face_detectors.base import (
    LANDMARK_NAMES,
    Face,
    FaceDetector,
    box_iou,
    create_face_detector,
    list_face_detectors,
    register_face_detector,
)

__all__ = [
    "LANDMARK_NAMES",
    "Face",
    "FaceDetector",
    "box_iou",
    "create_face_detector",
    "list_face_detectors",
    "register_face_detector",
]
