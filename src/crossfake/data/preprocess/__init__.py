"""Face preprocessing: sample frames, detect and track faces, save square crops, write the manifest.

``prepare(records, out_dir, PrepareConfig(...))`` runs the whole pipeline (parallel and resumable); the
pieces are usable on their own: :mod:`.video` (frame sampling and decoding), :mod:`.face_detectors` (face
detectors by name), :mod:`.tracks` (linking faces across frames), :mod:`.crop` (the crop specification
and the one crop function) and :mod:`.faces` (detect, track and crop one video, shared with ``detect``).
"""

from crossfake.data.preprocess.crop import (
    CropSpec,
    FacesPolicy,
    NoFacePolicy,
    crop_face,
    largest_face,
    save_image,
    square_box,
)
from crossfake.data.preprocess.face_detectors import (
    Face,
    FaceDetector,
    create_face_detector,
    list_face_detectors,
    register_face_detector,
)
from crossfake.data.preprocess.faces import FaceCropper
from crossfake.data.preprocess.run import PrepareConfig, PrepareSummary, prepare
from crossfake.data.preprocess.video import Sampling, VideoReadError, sample_frames, sample_indices

__all__ = [
    "CropSpec",
    "Face",
    "FaceCropper",
    "FacesPolicy",
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
