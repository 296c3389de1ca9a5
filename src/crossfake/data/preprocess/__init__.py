"""Face preprocessing: sample frames, detect the largest face, save square crops, write the manifest.

``prepare(records, out_dir, PrepareConfig(...))`` runs the whole pipeline (parallel and resumable); the
pieces are usable on their own: :mod:`.video` (frame sampling and decoding), :mod:`.detectors` (face
detectors by name) and :mod:`.crop` (crop geometry and saving).
"""

from crossfake.data.preprocess.crop import crop_face, largest_face, save_image, square_box
from crossfake.data.preprocess.detectors import (
    Face,
    FaceDetector,
    create_face_detector,
    list_face_detectors,
    register_face_detector,
)
from crossfake.data.preprocess.run import NoFacePolicy, PrepareConfig, PrepareSummary, prepare
from crossfake.data.preprocess.video import Sampling, VideoReadError, sample_frames, sample_indices

__all__ = [
    "Face",
    "FaceDetector",
    "NoFacePolicy",
    "PrepareConfig",
    "PrepareSummary",
    "Sampling",
    "VideoReadError",
    "create_face_detector",
    "crop_face",
    "largest_face",
    "list_face_detectors",
    "prepare",
    "register_face_detector",
    "sample_frames",
    "sample_indices",
    "save_image",
    "square_box",
]
