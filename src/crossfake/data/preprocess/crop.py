"""The crop: one specification and one function that turn a detected face into the image a model sees.

``crossfake prepare`` (training and test crops), ``crossfake detect`` and the web page (a suspect's faces)
all cut faces with :func:`crop_face` under a :class:`CropSpec`, and a trained run records the spec of its
training crops, so a face is judged in exactly the form the detector learned from.

The crop follows DeepfakeBench: grow the face box by a margin around its centre, make it square and resize
it (area interpolation) to a fixed size. With ``align`` the frame is first rotated about the box centre so
the eyes are level (DeepfakeBench aligns with its landmarks too); it needs a face detector with landmarks.
Where the square reaches past the frame's border the missing pixels are **black**: replicating edge pixels
would paint streaks that look like texture to a forensic model, whereas black is plainly "outside the
frame", and the crop keeps the face centred and undistorted (clamping the box would shift or squash it).

Crops are PNG by default. JPEG would lay its own compression artefacts over exactly the signal a deepfake
detector looks at; it is offered for space, at quality 95, and :func:`encode_crop` is the one place that
encodes, so crops judged at inference go through the same round trip as the stored training crops.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from crossfake.data.preprocess.face_detectors import Face, list_face_detectors
from crossfake.utils.io import write_bytes_atomic

IMAGE_FORMATS = ("png", "jpg")
#: The face detector of real corpora: on 43 annotated real faces it found every one with one false
#: positive, ~6x faster than Haar (``benchmarks/bench_faces.py``), and it gives landmarks.
DEFAULT_FACE_DETECTOR = "yunet"


class NoFacePolicy(StrEnum):
    """What to do with a sampled frame in which the face detector finds no face."""

    SKIP = "skip"  # no crop; record a failure
    CENTER = "center"  # keep the centred square of the frame


class FacesPolicy(StrEnum):
    """Which faces of a video are cropped (see :mod:`crossfake.data.preprocess.tracks`)."""

    SUBJECT = "subject"  # the most persistent track (then the largest): the person the video is about
    ALL = "all"  # every track (DFDC-style videos with two people, where the fake may be the smaller face)


class CropSpec(BaseModel):
    """Everything that decides what a face crop looks like. Recorded by ``prepare`` and by every run.

    Attributes:
        face_detector: a name from :func:`~crossfake.data.preprocess.face_detectors.list_face_detectors`.
        face_detector_options: its keyword options, e.g. ``{"weights": "yunet.onnx"}``.
        margin: the crop's side as a multiple of the face box's longer side.
        size: side of the square crop in pixels.
        align: rotate so the eyes are level before cropping (needs a face detector with landmarks).
        format: ``png`` (lossless) or ``jpg``.
        quality: JPEG quality.
        no_face: frames without a face: ``skip`` (record a failure) or ``center`` (the frame's centred
            square, for corpora that are already face crops).
        faces: ``subject`` (one track per video) or ``all`` (every track).
        smooth: boxes are averaged over this many consecutive detections of a track (odd; 1 = off), so
            crops of one person do not jitter from frame to frame.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    face_detector: str = DEFAULT_FACE_DETECTOR
    face_detector_options: dict[str, Any] = Field(default_factory=dict)
    margin: float = Field(1.3, ge=1.0)
    size: int = Field(256, ge=32)
    align: bool = False
    format: Literal["png", "jpg"] = "png"
    quality: int = Field(95, ge=1, le=100)
    no_face: NoFacePolicy = NoFacePolicy.SKIP
    faces: FacesPolicy = FacesPolicy.SUBJECT
    smooth: int = Field(3, ge=1)

    @field_validator("face_detector")
    @classmethod
    def _known_detector(cls, name: str) -> str:
        if name not in list_face_detectors():
            raise ValueError(f"unknown face detector; available: {', '.join(list_face_detectors())}")
        return name

    @field_validator("smooth")
    @classmethod
    def _odd(cls, n: int) -> int:
        if n % 2 == 0:
            raise ValueError("must be odd (a window centred on each frame)")
        return n

    def digest(self) -> str:
        """A short hash of the spec: two crops with the same digest were cut the same way."""
        return hashlib.sha256(json.dumps(self.model_dump(mode="json"), sort_keys=True).encode()).hexdigest()[:16]


# -- geometry ---------------------------------------------------------------------------------------


def largest_face(faces: Sequence[Face]) -> Face | None:
    """The face with the largest box area (the first one on ties), or ``None`` if there is none."""
    return max(faces, key=lambda f: f.area, default=None)


def square_box(face: Face, margin: float = 1.3) -> tuple[int, int, int, int]:
    """The square crop box around ``face``: side ``margin`` × the box's longer side, same centre.

    Returns:
        ``(x0, y0, x1, y1)`` in integer frame pixels, ``x1``/``y1`` exclusive; it may extend past the
        frame, see :func:`crop_square`.
    """
    side = max(1, round(max(face.width, face.height) * margin))
    cx, cy = (face.x0 + face.x1) / 2, (face.y0 + face.y1) / 2
    x0, y0 = math.floor(cx - side / 2 + 0.5), math.floor(cy - side / 2 + 0.5)
    return x0, y0, x0 + side, y0 + side


def center_box(width: int, height: int) -> tuple[int, int, int, int]:
    """The largest square centred in a ``width`` × ``height`` frame (for frames without a face)."""
    side = min(width, height)
    x0, y0 = (width - side) // 2, (height - side) // 2
    return x0, y0, x0 + side, y0 + side


def crop_square(image: np.ndarray, box: tuple[int, int, int, int], size: int) -> np.ndarray:
    """Cut ``box`` out of ``image``, black where it leaves the frame, and resize it to ``size`` × ``size``."""
    x0, y0, x1, y1 = box
    h, w = image.shape[:2]
    out = np.zeros((y1 - y0, x1 - x0, *image.shape[2:]), dtype=image.dtype)
    # Intersection of the box with the frame, in frame and in box coordinates.
    fx0, fy0, fx1, fy1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    if fx1 > fx0 and fy1 > fy0:
        out[fy0 - y0 : fy1 - y0, fx0 - x0 : fx1 - x0] = image[fy0:fy1, fx0:fx1]
    if out.shape[:2] != (size, size):
        out = cv2.resize(out, (size, size), interpolation=cv2.INTER_AREA)
    return out


def eye_angle(face: Face) -> float:
    """Degrees the eye line is tilted (positive: the image-right eye is lower); 0 without landmarks."""
    if face.landmarks is None:
        return 0.0
    (lx, ly), (rx, ry) = face.landmarks[0], face.landmarks[1]
    return math.degrees(math.atan2(ry - ly, rx - lx))


def crop_face(image: np.ndarray, face: Face | None, spec: CropSpec) -> tuple[np.ndarray, tuple[int, int, int, int], float]:
    """The crop of ``face`` under ``spec`` (``None``: the frame's centred square, without margin).

    Returns:
        The ``size`` × ``size`` RGB crop, the square box it covers in frame pixels (before rotation) and
        the rotation applied in degrees (0 unless ``spec.align``).
    """
    if face is None:
        box = center_box(image.shape[1], image.shape[0])
        return crop_square(image, box, spec.size), box, 0.0
    box = square_box(face, spec.margin)
    angle = eye_angle(face) if spec.align else 0.0
    if abs(angle) < 1e-3:
        return crop_square(image, box, spec.size), box, 0.0
    # Cut a square √2 larger around the same centre (black outside the frame), rotate it about its centre
    # so the eyes are level, keep the middle `side` pixels, then resize like the unrotated crop.
    side = box[2] - box[0]
    pad = math.ceil(side * (math.sqrt(2) - 1) / 2)
    big = crop_square(image, (box[0] - pad, box[1] - pad, box[2] + pad, box[3] + pad), side + 2 * pad)
    centre = ((side + 2 * pad) / 2, (side + 2 * pad) / 2)
    matrix = cv2.getRotationMatrix2D(centre, angle, 1.0)
    rotated = cv2.warpAffine(big, matrix, big.shape[1::-1], flags=cv2.INTER_LINEAR, borderValue=(0, 0, 0))
    crop = crop_square(rotated, (pad, pad, pad + side, pad + side), spec.size)
    return crop, box, angle


def landmarks_in_crop(
    landmarks: np.ndarray, box: tuple[float, float, float, float], angle: float, size: int
) -> np.ndarray:
    """Map frame-pixel landmarks (``(n, 2)``) into the pixels of the crop cut from ``box`` at ``angle``."""
    x0, y0, x1, _ = box
    side = x1 - x0
    centre = np.array([x0 + side / 2, y0 + side / 2])
    theta = math.radians(angle)  # cv2's positive angle turns the content counter-clockwise on screen
    rot = np.array([[math.cos(theta), math.sin(theta)], [-math.sin(theta), math.cos(theta)]])
    return ((np.asarray(landmarks, dtype=np.float64) - centre) @ rot.T + side / 2) * (size / side)


# -- encoding ---------------------------------------------------------------------------------------


def encode_image(rgb: np.ndarray, fmt: str = "png", quality: int = 95) -> bytes:
    """An RGB image as the bytes of a PNG (lossless) or JPEG (``quality`` 1-100) file."""
    if fmt not in IMAGE_FORMATS:
        raise ValueError(f"image format must be one of {IMAGE_FORMATS}, got {fmt!r}")
    params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)] if fmt == "jpg" else []
    ok, data = cv2.imencode(f".{fmt}", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), params)
    if not ok:
        raise OSError(f"OpenCV could not encode a {rgb.shape} image as {fmt}")
    return data.tobytes()


def encode_crop(rgb: np.ndarray, spec: CropSpec) -> bytes:
    """The crop as the bytes of its file under ``spec`` (format and quality)."""
    return encode_image(rgb, spec.format, spec.quality)


def as_stored(rgb: np.ndarray, spec: CropSpec) -> np.ndarray:
    """The crop as it reads back from its file: itself for PNG, after a JPEG round trip for JPEG."""
    if spec.format == "png":
        return rgb
    data = np.frombuffer(encode_crop(rgb, spec), dtype=np.uint8)
    return cv2.cvtColor(cv2.imdecode(data, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def save_image(path: str | Path, rgb: np.ndarray, fmt: str = "png", quality: int = 95) -> None:
    """Write an RGB image atomically as PNG (lossless) or JPEG (``quality`` 1-100)."""
    write_bytes_atomic(path, encode_image(rgb, fmt, quality))
