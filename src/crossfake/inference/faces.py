"""Where the faces are: boxes, five landmarks and tracks of every sampled frame, for ``crossfake faces``.

The tool a user reaches for when ``crossfake prepare`` misses a face or keeps the wrong one: it runs the
same :class:`~crossfake.data.preprocess.faces.FaceCropper` (face detector, tracking) on images and videos and
reports *every* detection, marking the ones on a track (``track`` 0 is the subject ``prepare`` crops by
default) and the one-frame detections that tracking drops. :func:`contact_sheet` draws them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from crossfake.data.preprocess.face_detectors import LANDMARK_NAMES, Face
from crossfake.data.preprocess.faces import FaceCropper
from crossfake.inference.media import DEFAULT_MAX_PIXELS, FrameSampling, open_media

#: Colours of tracks 0, 1, 2, ... (RGB); dropped detections are drawn grey.
TRACK_COLOURS = ((230, 60, 40), (40, 140, 230), (40, 180, 80), (220, 170, 30), (170, 70, 200), (30, 190, 190))
DROPPED = (150, 150, 150)


@dataclass
class FaceFinding:
    """The faces of one file: every detection of every sampled frame, with its track (None: dropped)."""

    path: str
    kind: str
    width: int
    height: int
    fps: float
    frames: list[tuple[int, float, list[tuple[Face, int | None]]]]  # (index, seconds, [(face, track)])
    tracks: int  # tracks kept
    notes: list[str]
    images: dict[int, np.ndarray]  # the sampled frames, for drawing (only with keep_images)

    def rows(self) -> list[dict[str, Any]]:
        """One record per detection, and one per frame without any (``face`` empty)."""
        out = []
        for index, seconds, faces in self.frames:
            base = {"path": self.path, "kind": self.kind, "frame": index, "time_s": round(seconds, 4),
                    "faces_found": len(faces)}
            if not faces:
                out.append(base)
            for i, (face, track) in enumerate(faces):
                row = {**base, "face": i, "track": track, "x0": face.x0, "y0": face.y0, "x1": face.x1,
                       "y1": face.y1, "score": face.score}
                points = face.landmarks or [(math.nan, math.nan)] * len(LANDMARK_NAMES)
                for name, (x, y) in zip(LANDMARK_NAMES, points, strict=True):
                    row[f"{name}_x"], row[f"{name}_y"] = x, y
                out.append(row)
        return out


def find_faces(
    path: str | Path,
    cropper: FaceCropper,
    sampling: FrameSampling | None = None,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    keep_images: bool = False,
) -> FaceFinding:
    """Detect and track the faces of one image or video (every track kept: see the module docstring).

    Raises:
        InputError: the file cannot be read (missing, not a video or image, too large).
    """
    media = open_media(path, sampling, max_pixels)
    found = cropper.detect(media.frames)
    notes = list(media.notes)
    if found.decode_error is not None:
        notes.append(str(found.decode_error))
    frames = []
    for position, (index, faces) in enumerate(zip(found.indices, found.detections, strict=True)):
        tracked = [(face, found.track_of(position, face)) for face in faces]
        if index in found.errors:
            notes.append(f"frame {index}: the face detector failed: {found.errors[index]}")
        frames.append((index, media.time_of(index), tracked))
    kept = {t.id for t in found.kept}
    for _, _, faces in frames:  # tracks that tracking dropped (one-frame detections) are reported as None
        faces[:] = [(face, track if track in kept else None) for face, track in faces]
    return FaceFinding(str(path), media.kind, media.width, media.height, media.fps, frames, len(kept), notes,
                       dict(found.frames or {}) if keep_images else {})


def contact_sheet(finding: FaceFinding, max_frames: int = 12, width: int = 1280) -> np.ndarray | None:
    """Up to ``max_frames`` sampled frames in a grid, every face boxed with its landmarks and track."""
    indices = [i for i, _, _ in finding.frames if i in finding.images]
    if not indices:
        return None
    if len(indices) > max_frames:
        indices = [indices[round(k * (len(indices) - 1) / (max_frames - 1))] for k in range(max_frames)]
    faces = {i: f for i, _, f in finding.frames}
    cols = min(len(indices), 4 if len(indices) > 1 else 1)
    rows = math.ceil(len(indices) / cols)
    cell_w = width // cols
    h, w = finding.images[indices[0]].shape[:2]
    scale = cell_w / w
    cell_h = round(h * scale)
    sheet = np.full((rows * cell_h, cols * cell_w, 3), 255, np.uint8)
    for k, index in enumerate(indices):
        image = cv2.resize(finding.images[index], (cell_w, cell_h), interpolation=cv2.INTER_AREA)
        thick = max(1, round(cell_w / 400))
        for face, track in faces[index]:
            colour = DROPPED if track is None else TRACK_COLOURS[track % len(TRACK_COLOURS)]
            x0, y0, x1, y1 = (round(v * scale) for v in face.box)
            cv2.rectangle(image, (x0, y0), (x1, y1), colour, thick)
            for x, y in face.landmarks or ():
                cv2.circle(image, (round(x * scale), round(y * scale)), thick + 1, colour, -1)
            label = "dropped" if track is None else f"track {track}"
            cv2.putText(image, label, (x0, max(12, y0 - 4)), cv2.FONT_HERSHEY_SIMPLEX, 0.4 * thick, colour, thick,
                        cv2.LINE_AA)
        if finding.kind == "video":
            cv2.putText(image, f"frame {index}", (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 2,
                        cv2.LINE_AA)
        r, c = divmod(k, cols)
        sheet[r * cell_h : (r + 1) * cell_h, c * cell_w : (c + 1) * cell_w] = image
    return sheet
