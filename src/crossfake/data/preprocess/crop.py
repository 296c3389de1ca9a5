"""From detected faces to a square, fixed-size face crop on disk.

The crop follows DeepfakeBench: keep the largest face, grow its box by a margin around the box centre,
make it square and resize it (area interpolation) to a fixed size. Where the square reaches past the
frame's border the missing pixels are **black**: replicating edge pixels would paint streaks that look
like texture to a forensic model, whereas black is plainly "outside the frame", and the crop keeps the
face centred and undistorted (clamping the box instead would shift or squash it).

Crops are saved as PNG by default. JPEG would lay its own compression artefacts over exactly the signal
a deepfake detector looks at; it is offered for space, at quality 95.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from crossfake.data.preprocess.detectors import Face
from crossfake.utils.io import write_bytes_atomic

IMAGE_FORMATS = ("png", "jpg")


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


def crop_face(image: np.ndarray, face: Face, margin: float = 1.3, size: int = 256) -> np.ndarray:
    """The ``size`` × ``size`` crop of ``face`` with ``margin`` (see :func:`square_box`)."""
    return crop_square(image, square_box(face, margin), size)


def save_image(path: str | Path, rgb: np.ndarray, fmt: str = "png", quality: int = 95) -> None:
    """Write an RGB image atomically as PNG (lossless) or JPEG (``quality`` 1-100)."""
    if fmt not in IMAGE_FORMATS:
        raise ValueError(f"image format must be one of {IMAGE_FORMATS}, got {fmt!r}")
    params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)] if fmt == "jpg" else []
    ok, data = cv2.imencode(f".{fmt}", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), params)
    if not ok:
        raise OSError(f"OpenCV could not encode a {rgb.shape} image as {fmt}")
    write_bytes_atomic(path, data.tobytes())
