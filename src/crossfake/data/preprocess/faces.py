"""From the sampled frames of one video (or one image) to its face crops: detect, track, crop.

:class:`FaceCropper` is what ``crossfake prepare``, ``crossfake detect``, the web page and ``crossfake
faces`` share. It works in two passes over a video's sampled frames:

1. :meth:`FaceCropper.detect` finds the faces of every frame and links them into tracks
   (:mod:`crossfake.data.preprocess.tracks`), keeping the frames themselves while they fit in
   ``keep_bytes``;
2. :meth:`FaceCropper.crops` cuts the kept tracks' smoothed faces (:func:`~crossfake.data.preprocess.crop.
   crop_face`) out of those frames, or out of a second decoding pass where they did not fit.

A frame in which the face detector raises is recorded in :attr:`VideoFaces.errors` and counts as a frame without
a face; it never ends the video.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from crossfake.data.preprocess.crop import CropSpec, FacesPolicy, NoFacePolicy, crop_face
from crossfake.data.preprocess.face_detectors import Face, FaceDetector, create_face_detector
from crossfake.data.preprocess.tracks import Track, keep_tracks, link_tracks, track_faces
from crossfake.utils.errors import CrossfakeError

#: Frames kept in memory between the two passes, at most (beyond it the video is decoded twice).
KEEP_BYTES = 768 * 2**20

Frames = Iterable[tuple[int, np.ndarray]]


@dataclass(frozen=True)
class FaceCrop:
    """One crop: the frame, the track, the (smoothed) face it was cut around, and the crop itself.

    ``face`` is ``None`` for a centre crop of a frame without a face (``no_face: center``); ``face.score``
    is NaN where the track's box was interpolated across a frame the face detector missed.
    """

    index: int
    track_id: int | None
    face: Face | None
    image: np.ndarray
    box: tuple[int, int, int, int]  # the square cut, frame pixels (before rotation)
    angle: float  # rotation applied, degrees

    @property
    def interpolated(self) -> bool:
        return self.face is not None and math.isnan(self.face.score)


@dataclass
class VideoFaces:
    """What the first pass found: detections per frame, tracks, and which of them are cropped."""

    indices: list[int] = field(default_factory=list)  # decoded frames, in order
    detections: list[list[Face]] = field(default_factory=list)  # per decoded frame
    errors: dict[int, str] = field(default_factory=dict)  # frame index -> face detector error
    tracks: list[Track] = field(default_factory=list)  # all tracks, subject first (positions index `indices`)
    kept: list[Track] = field(default_factory=list)  # the tracks that are cropped
    frames: dict[int, np.ndarray] | None = None  # the decoded frames, if they fit in memory
    decode_error: Exception | None = None  # what stopped decoding part-way, if anything

    def faces_at(self, index: int) -> list[Face]:
        return self.detections[self.indices.index(index)]

    def track_of(self, position: int, face: Face) -> int | None:
        """The id of the track holding ``face`` at ``position`` (None: an isolated, dropped detection)."""
        for track in self.tracks:
            if track.faces.get(position) is face:
                return track.id
        return None


class FaceCropper:
    """Detects, tracks and crops faces under one :class:`CropSpec`.

    Args:
        spec: the crop specification.
        face_detector: a face detector; default: built from the spec (each worker process builds its own).
        keep_bytes: frames kept in memory between the passes, at most.
    """

    def __init__(
        self, spec: CropSpec, face_detector: FaceDetector | None = None, keep_bytes: int = KEEP_BYTES
    ) -> None:
        self.spec = spec
        self.face_detector = face_detector or create_face_detector(spec.face_detector, **spec.face_detector_options)
        self.keep_bytes = keep_bytes
        if spec.align and not getattr(self.face_detector, "gives_landmarks", False):
            raise CrossfakeError(
                f"align needs landmarks, and the {spec.face_detector} face detector gives none: "
                "use --face-detector yunet or dlib, or turn alignment off"
            )

    @classmethod
    def every_track(cls, spec: CropSpec) -> FaceCropper:
        """A cropper under ``spec`` that keeps every track, whatever ``spec.faces`` says: judging or
        inspecting a file looks at every person in it."""
        return cls(spec.model_copy(update={"faces": FacesPolicy.ALL}))

    def detect(self, frames: Frames) -> VideoFaces:
        """First pass: the faces of every frame, linked into tracks.

        A decoding error part-way ends the pass: it is kept in :attr:`VideoFaces.decode_error` and the
        frames decoded before it are tracked and cropped as usual.
        """
        found = VideoFaces(frames={})
        kept_bytes = 0
        iterator = iter(frames)
        while True:
            try:
                item = next(iterator, None)
            except Exception as e:
                found.decode_error = e
                break
            if item is None:
                break
            index, rgb = item
            try:
                faces = list(self.face_detector(rgb))
            except Exception as e:  # a face detector failing on one frame must not end the video
                found.errors[index] = f"{type(e).__name__}: {e}"
                faces = []
            found.indices.append(index)
            found.detections.append(faces)
            if found.frames is not None:
                kept_bytes += rgb.nbytes
                if kept_bytes <= self.keep_bytes:
                    found.frames[index] = rgb
                else:
                    found.frames = None  # decode again in the second pass
        self.track(found)
        return found

    def track(self, found: VideoFaces) -> None:
        """Link ``found``'s detections into tracks and choose the kept ones (sets ``tracks``, ``kept``)."""
        found.tracks = link_tracks(found.detections)
        found.kept = keep_tracks(found.tracks, len(found.indices), self.spec.faces is FacesPolicy.SUBJECT)

    def plan(self, found: VideoFaces) -> dict[int, list[tuple[int, Face]]]:
        """Frame index -> the (track id, smoothed face) pairs to crop in it."""
        plan: dict[int, list[tuple[int, Face]]] = {index: [] for index in found.indices}
        for track in found.kept:
            for position, face in track_faces(track, self.spec.smooth).items():
                plan[found.indices[position]].append((track.id, face))
        return plan

    def crops(
        self, found: VideoFaces, reread: Callable[[Sequence[int]], Frames] | None = None
    ) -> Iterator[tuple[int, list[FaceCrop]]]:
        """Second pass: every decoded frame with its crops (empty: no face to crop in it, see ``no_face``).

        Args:
            found: the first pass's result.
            reread: decodes the given frame indices again; needed only if the frames were not kept.
        """
        plan = self.plan(found)
        if found.frames is not None:
            frames: Frames = ((i, found.frames[i]) for i in found.indices)
        elif reread is not None:
            frames = reread(found.indices)
        else:
            raise ValueError("the frames were not kept in memory and no way to decode them again was given")
        for index, rgb in frames:
            if index not in plan:
                continue
            yield index, [self._crop(index, rgb, track_id, face) for track_id, face in plan[index]] or (
                [self._crop(index, rgb, None, None)] if self.spec.no_face is NoFacePolicy.CENTER else []
            )

    def _crop(self, index: int, rgb: np.ndarray, track_id: int | None, face: Face | None) -> FaceCrop:
        image, box, angle = crop_face(rgb, face, self.spec)
        return FaceCrop(index, track_id, face, image, box, angle)

    def image(self, rgb: np.ndarray) -> tuple[VideoFaces, list[FaceCrop]]:
        """Both passes on a single image (every face is its own one-frame track)."""
        found = self.detect([(0, rgb)])
        crops = [c for _, frame_crops in self.crops(found) for c in frame_crops]
        return found, crops
