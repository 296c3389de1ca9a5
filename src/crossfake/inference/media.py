"""What a file handed to ``crossfake detect`` is, and which of its frames are looked at.

The kind of a file is decided by its *content*, not its name: an upload called ``clip.mp4`` that holds a
PNG is an image, and a text file called ``face.jpg`` is rejected. Still images are recognised by their
magic bytes (the formats OpenCV decodes, as ``crossfake prepare`` reads them); anything else must open in
PyAV with a video stream.

Every problem with an input is an :class:`InputError`, a :class:`CrossfakeError` that carries the HTTP
status the web page answers with (404 missing, 413 too large, 415 not a video or image, 422 unreadable or
no face), so the command line and the page report the same message.

Videos are *streamed*: the frames to keep are planned from the container's frame count and frame rate,
then decoded in one sequential pass that converts only the kept frames to RGB and stops after the last
one (:func:`crossfake.data.preprocess.video.decode_frames`, the decoder ``crossfake prepare`` uses).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from crossfake.data.corpora.base import IMAGE_SUFFIXES, VIDEO_SUFFIXES
from crossfake.data.preprocess.video import (
    Sampling,
    VideoReadError,
    decode_frames,
    probe_video,
    read_image,
    sample_indices,
)
from crossfake.utils.errors import CrossfakeError

IMAGE = "image"
VIDEO = "video"
MEDIA_SUFFIXES = IMAGE_SUFFIXES | VIDEO_SUFFIXES
#: Pixels per image or video frame above which an input is refused (about 8K video, or a 40 MP photo).
DEFAULT_MAX_PIXELS = 40_000_000
#: Frame rate assumed for a video whose container gives none.
FALLBACK_FPS = 25.0

# Magic bytes of the still-image formats OpenCV reads (the decoder of `crossfake prepare`).
_IMAGE_MAGIC: tuple[tuple[bytes, int], ...] = (
    (b"\x89PNG\r\n\x1a\n", 0),
    (b"\xff\xd8\xff", 0),  # JPEG
    (b"BM", 0),
    (b"II*\x00", 0),  # TIFF, little-endian
    (b"MM\x00*", 0),  # TIFF, big-endian
    (b"WEBP", 8),  # RIFF....WEBP
)


class InputError(CrossfakeError):
    """A file that cannot be judged, with the HTTP status the web page answers with."""

    def __init__(self, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class FrameSampling:
    """Which frames of a video are scored.

    Attributes:
        fps: frames per second of video (``frames`` unset); 2 means one frame every half second.
        frames: instead, this many evenly spaced frames, first and last included (as ``crossfake prepare``).
        max_frames: at most this many frames per video: a longer plan becomes ``max_frames`` evenly spaced
            frames (the summary says so), which bounds the time spent on one long video.
    """

    fps: float = 2.0
    frames: int | None = None
    max_frames: int = 120

    def __post_init__(self) -> None:
        if self.frames is None and not self.fps > 0:
            raise CrossfakeError(f"frames per second must be > 0, not {self.fps}")
        if self.frames is not None and self.frames < 1:
            raise CrossfakeError(f"frames must be >= 1, not {self.frames}")
        if self.max_frames < 1:
            raise CrossfakeError(f"max frames must be >= 1, not {self.max_frames}")

    def describe(self) -> str:
        return f"{self.frames} evenly spaced frames" if self.frames else f"{self.fps:g} frames per second"

    def plan(self, num_frames: int, video_fps: float) -> tuple[list[int], str | None]:
        """The frame indices to decode, and a note when ``max_frames`` cut the plan down."""
        if self.frames is not None:
            indices = sample_indices(num_frames, Sampling.UNIFORM, self.frames)
        else:
            step = max(video_fps, 1e-9) / self.fps
            indices = sorted({int(round(x)) for x in np.arange(0, num_frames, max(step, 1.0))} - {num_frames})
        if len(indices) > self.max_frames:
            note = f"{len(indices)} frames planned, capped at {self.max_frames} evenly spaced frames"
            return sample_indices(num_frames, Sampling.UNIFORM, self.max_frames), note
        return indices, None


@dataclass
class Media:
    """An opened input: its kind and size, the frames planned, and a lazy iterator over them."""

    path: Path
    kind: str  # IMAGE or VIDEO
    width: int
    height: int
    num_frames: int  # frames in the file (1 for an image)
    fps: float  # frame rate (0.0 for an image)
    indices: list[int]  # frames that will be decoded
    frames: Iterator[tuple[int, np.ndarray]]  # (index, RGB uint8 array), lazily decoded
    notes: list[str]

    def time_of(self, index: int) -> float:
        """Seconds from the start of the video to frame ``index`` (0.0 for an image)."""
        return index / self.fps if self.fps > 0 else 0.0


def expand_inputs(paths: Iterable[str | Path]) -> list[Path]:
    """Files to judge: each file as given, and the videos and images (by suffix) under each folder.

    Folders are searched recursively and their files sorted; a folder without any media is kept as is, so
    that judging it reports the problem. Missing paths are kept too (judging them says they are missing).
    """
    out: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in MEDIA_SUFFIXES)
            out.extend(found or [path])
        else:
            out.append(path)
    return out


def sniff_kind(path: Path) -> str:
    """``image`` or ``video`` from the file's content; an :class:`InputError` for anything else."""
    if path.is_dir():
        suffixes = ", ".join(sorted(MEDIA_SUFFIXES))
        raise InputError(f"{path}: folder holds no video or image (looked for {suffixes})", 422)
    if not path.exists():
        raise InputError(f"{path}: no such file", 404)
    try:
        with path.open("rb") as f:
            head = f.read(16)
    except OSError as e:
        raise InputError(f"{path}: cannot read it ({e.strerror or e})", 422) from None
    if not head:
        raise InputError(f"{path}: the file is empty", 422)
    if any(head[offset : offset + len(magic)] == magic for magic, offset in _IMAGE_MAGIC):
        return IMAGE
    return VIDEO  # confirmed (or refused) by opening it with PyAV


def open_media(
    path: str | Path, sampling: FrameSampling | None = None, max_pixels: int = DEFAULT_MAX_PIXELS
) -> Media:
    """Open ``path`` as an image or a video and plan its frames (nothing is decoded for a video yet).

    Raises:
        InputError: missing, empty, not a video or image, unreadable (truncated, corrupt), too many
            pixels, or a video without frames.
    """
    path = Path(path)
    kind = sniff_kind(path)
    if kind == IMAGE:
        width, height = _image_size(path, max_pixels)
        try:
            rgb = read_image(path)
        except VideoReadError:
            raise InputError(f"{path}: not a readable image (truncated or corrupt)") from None
        return Media(path, IMAGE, width, height, 1, 0.0, [0], iter([(0, rgb)]), [])
    try:
        info = probe_video(path)
    except VideoReadError as e:
        if e.reason == "no video stream":
            raise InputError(f"{path}: has no video stream (audio or another format?)", 415) from None
        raise InputError(
            f"{path}: not a video or image that can be read ({e.reason}); it may be truncated, corrupt "
            f"or of another type. Supported: videos ({', '.join(sorted(VIDEO_SUFFIXES))}) and images "
            f"({', '.join(sorted(IMAGE_SUFFIXES))})",
            415 if path.suffix.lower() not in MEDIA_SUFFIXES else 422,
        ) from None
    _check_pixels(path, info.width, info.height, max_pixels, "frames")
    if info.frames == 0:
        raise InputError(f"{path}: the video has no frames (truncated?)")
    notes = []
    fps = info.fps
    if fps <= 0:
        fps = FALLBACK_FPS
        notes.append(f"the container gives no frame rate; {FALLBACK_FPS:g} fps assumed")
    indices, note = (sampling or FrameSampling()).plan(info.frames, fps)
    if note:
        notes.append(note)
    frames = _guarded(path, decode_frames(path, indices))
    return Media(path, VIDEO, info.width, info.height, info.frames, fps, indices, frames, notes)


def _guarded(path: Path, frames: Iterator[tuple[int, np.ndarray]]) -> Iterator[tuple[int, np.ndarray]]:
    """Decode errors part-way as InputError (the frames already yielded stay valid)."""
    try:
        yield from frames
    except VideoReadError as e:
        raise InputError(f"{path}: decoding failed part-way ({e.reason}); the file may be truncated") from None


def _image_size(path: Path, max_pixels: int) -> tuple[int, int]:
    """An image's size read from its header, refused above ``max_pixels`` before it is decoded."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                width, height = image.size
    except Image.DecompressionBombError as e:
        raise InputError(f"{path}: image too large ({e})", 413) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        raise InputError(f"{path}: not a readable image (truncated or corrupt)") from None
    _check_pixels(path, width, height, max_pixels, "image")
    return width, height


def _check_pixels(path: Path, width: int, height: int, max_pixels: int, what: str) -> None:
    if width * height > max_pixels:
        raise InputError(
            f"{path}: {what} of {width}×{height} = {width * height / 1e6:.1f} megapixels exceed the limit of "
            f"{max_pixels / 1e6:g} (--max-pixels)",
            413,
        )
