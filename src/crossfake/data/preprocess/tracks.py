"""Face tracks: the detections of one person linked across the sampled frames of a video.

Per-frame detection alone is brittle on real video: a face detector reports a patch of background as a face
in some frames (Haar, on a news studio's map, in 25 of 61 frames of FF++ 519), misses the face in others,
and its box wobbles from frame to frame. Linking detections into tracks fixes all three:

- **linking** (:func:`link_tracks`): greedily, nearest first, a face continues the track whose last box
  is within ``max_shift`` face sizes (per sampled-frame step, up to two steps' worth across a gap) and
  of a similar size, seen at most ``max_gap`` sampled frames ago;
- **choosing** (:func:`rank_tracks`, :func:`keep_tracks`): tracks are numbered by persistence (frames
  with a detection), then mean box area, so track 0 is the video's subject; a one-frame detection in a
  video of three or more sampled frames is dropped as a likely false positive. (A face detector that keeps
  taking one patch of background for a face still makes a track of it: Haar on FF++ 519 makes tracks
  of 13, 8 and 3 of 61 sampled frames on the studio's map, one reason YuNet, which makes none, is the
  default.)
- **smoothing** (:func:`track_faces`): box corners and landmarks are averaged over ``smooth`` consecutive
  positions of the track, and a single frame inside the track where its face was missed gets a box
  interpolated from its neighbours (``score`` NaN), so crops of one person neither jitter nor drop out
  for one missed detection. Longer gaps are left empty: the person may really have left the frame.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from crossfake.data.preprocess.face_detectors import Face

#: Videos with at least this many sampled frames drop tracks seen in one frame only.
MIN_FRAMES_FOR_TRACKING = 3


@dataclass
class Track:
    """One face followed across sampled frames: ``faces[position]`` is its detection at that position."""

    id: int
    faces: dict[int, Face] = field(default_factory=dict)

    @property
    def positions(self) -> list[int]:
        return sorted(self.faces)

    @property
    def length(self) -> int:
        return len(self.faces)

    @property
    def mean_area(self) -> float:
        return float(np.mean([f.area for f in self.faces.values()]))

    @property
    def last(self) -> tuple[int, Face]:
        pos = max(self.faces)
        return pos, self.faces[pos]


def _centre(face: Face) -> tuple[float, float]:
    return (face.x0 + face.x1) / 2, (face.y0 + face.y1) / 2


def _side(face: Face) -> float:
    return max(math.sqrt(max(face.area, 1e-9)), 1e-6)


def link_tracks(
    detections: Sequence[Sequence[Face]], *, max_gap: int = 4, max_shift: float = 0.75, max_scale: float = 1.6
) -> list[Track]:
    """Link the faces of consecutive sampled frames (``detections[position]``) into tracks.

    Args:
        detections: the faces found in each sampled frame, in frame order.
        max_gap: a track may skip this many sampled frames without a matching face.
        max_shift: largest centre move per sampled-frame step, in face sizes (√area).
        max_scale: largest ratio of face sizes between linked detections.

    Returns:
        Tracks numbered by :func:`rank_tracks`.
    """
    tracks: list[Track] = []
    for pos, faces in enumerate(detections):
        candidates = []
        for t, track in enumerate(tracks):
            last_pos, last = track.last
            gap = pos - last_pos
            if gap > max_gap + 1:
                continue
            for f, face in enumerate(faces):
                (ax, ay), (bx, by) = _centre(last), _centre(face)
                size = (_side(last) + _side(face)) / 2
                shift = math.hypot(ax - bx, ay - by) / size
                scale = max(_side(last), _side(face)) / min(_side(last), _side(face))
                if shift <= max_shift * min(gap, 2) and scale <= max_scale:
                    candidates.append((shift, t, f))
        used_tracks: set[int] = set()
        used_faces: set[int] = set()
        for _, t, f in sorted(candidates):
            if t in used_tracks or f in used_faces:
                continue
            tracks[t].faces[pos] = faces[f]
            used_tracks.add(t)
            used_faces.add(f)
        for f, face in enumerate(faces):
            if f not in used_faces:
                tracks.append(Track(len(tracks), {pos: face}))
    return rank_tracks(tracks)


def rank_tracks(tracks: list[Track]) -> list[Track]:
    """The tracks renumbered 0, 1, ...: most frames first, then the larger mean box."""
    ranked = sorted(tracks, key=lambda t: (-t.length, -t.mean_area, t.positions[0]))
    for i, track in enumerate(ranked):
        track.id = i
    return ranked


def keep_tracks(tracks: list[Track], frames: int, subject_only: bool) -> list[Track]:
    """The tracks to crop: without one-frame tracks (in videos of three or more sampled frames), then
    only track 0 with ``subject_only``."""
    if frames >= MIN_FRAMES_FOR_TRACKING:
        tracks = [t for t in tracks if t.length > 1]
    return tracks[:1] if subject_only else tracks


def _coords(face: Face) -> np.ndarray:
    points = face.landmarks or ()
    return np.array([face.x0, face.y0, face.x1, face.y1, *(c for p in points for c in p)], dtype=np.float64)


def _face(coords: np.ndarray, score: float, has_landmarks: bool) -> Face:
    landmarks = tuple((float(x), float(y)) for x, y in coords[4:].reshape(-1, 2)) if has_landmarks else None
    return Face(*(float(c) for c in coords[:4]), score, landmarks)


def track_faces(track: Track, smooth: int = 3, max_fill: int = 1) -> dict[int, Face]:
    """The track's face at its detections and across short gaps: smoothed, gaps interpolated.

    Args:
        track: a track from :func:`link_tracks`.
        smooth: odd window of positions averaged (1: the raw detections).
        max_fill: gaps of at most this many positions are filled by interpolation; longer ones stay empty.

    Returns:
        Position -> face; interpolated faces have ``score`` NaN. Landmarks are kept only if every
        detection of the track has them.
    """
    positions = track.positions
    has_landmarks = all(f.landmarks is not None for f in track.faces.values())
    raw = {p: _coords(track.faces[p]) if has_landmarks else _coords(track.faces[p])[:4] for p in positions}
    span = range(positions[0], positions[-1] + 1)
    known = np.array(positions, dtype=np.float64)
    values = np.stack([raw[p] for p in positions])
    # Interpolate every coordinate over the whole span, then average over the window of positions.
    filled = np.stack([np.interp(np.array(span, dtype=np.float64), known, values[:, k]) for k in range(values.shape[1])], axis=1)
    half = smooth // 2
    out: dict[int, Face] = {}
    for i, pos in enumerate(span):
        if pos not in track.faces:
            before = max(p for p in positions if p < pos)
            after = min(p for p in positions if p > pos)
            if after - before - 1 > max_fill:
                continue
        window = filled[max(0, i - half) : i + half + 1]
        score = track.faces[pos].score if pos in track.faces else math.nan
        out[pos] = _face(window.mean(axis=0), score, has_landmarks)
    return out
