"""Frame sampling and decoding.

Videos are decoded with PyAV in one sequential pass. Converting a decoded frame to an RGB array costs
more than decoding it (640×480 H.264 on the reference machine: decoding alone runs 2-5× faster than
decoding plus conversion), so only the frames that are kept are converted, and decoding stops after the
last one. Seeking to each sampled frame is not used: a seek must decode from the previous keyframe, and
with FaceForensics++-like long GOPs (250 frames) fetching 32 frames by seeking was 14× slower than one
sequential pass, and still 1.5× slower with a keyframe every 12 frames (``benchmarks/bench_prepare.py``).

Frames are numbered in presentation order from 0, as the decoder emits them. A still image is a video of
one frame, frame 0. A folder of frame images is one clip (WildDeepfake ships its clips so): frame ``i`` is
its ``i``-th image in the numeric order of the names.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import av
import cv2
import numpy as np

from crossfake.data.corpora.base import IMAGE_SUFFIXES, frame_files
from crossfake.utils.errors import CrossfakeError


class Sampling(enum.StrEnum):
    """How frames are chosen from a video."""

    UNIFORM = "uniform"  # ``frames`` evenly spaced frames, first and last included (DeepfakeBench)
    EVERY = "every"  # every ``every``-th frame, starting at frame 0
    ALL = "all"  # every frame


class VideoReadError(CrossfakeError):
    """A video (or image) that cannot be opened or decoded.

    Attributes:
        stage: ``"open"`` (the file cannot be opened, has no video stream or no frames) or ``"decode"``
            (decoding failed part-way).
        reason: a short, path-free description meant for a person and for grouping failures, e.g.
            ``"no video stream"`` or ``"Invalid data found when processing input"``.
    """

    def __init__(self, path: str | Path, stage: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.stage = stage
        self.reason = reason


def sample_indices(
    num_frames: int, strategy: Sampling | str = Sampling.UNIFORM, frames: int = 32, every: int = 1
) -> list[int]:
    """Indices of the frames to keep from a video of ``num_frames`` frames.

    Args:
        num_frames: frames in the video.
        strategy: a :class:`Sampling` value.
        frames: how many frames ``uniform`` keeps; a shorter video gives all of its frames.
        every: the step of ``every``.

    Returns:
        Sorted, distinct frame indices in ``[0, num_frames)``.
    """
    strategy = Sampling(strategy)
    if num_frames <= 0:
        return []
    if strategy is Sampling.ALL:
        return list(range(num_frames))
    if strategy is Sampling.EVERY:
        if every < 1:
            raise ValueError(f"every must be >= 1, got {every}")
        return list(range(0, num_frames, every))
    if frames < 1:
        raise ValueError(f"frames must be >= 1, got {frames}")
    if num_frames <= frames:
        return list(range(num_frames))
    # Floor, as DeepfakeBench does; with num_frames > frames the step exceeds 1, so indices are distinct.
    return np.linspace(0, num_frames - 1, frames, dtype=np.int64).tolist()


def _open(path: Path) -> tuple[av.container.InputContainer, av.video.stream.VideoStream]:
    try:
        container = av.open(str(path))
    except av.error.FFmpegError as e:
        raise VideoReadError(path, "open", e.strerror or type(e).__name__) from e
    except OSError as e:
        raise VideoReadError(path, "open", e.strerror or str(e)) from e
    if not container.streams.video:
        container.close()
        raise VideoReadError(path, "open", "no video stream")
    stream = container.streams.video[0]
    # Let FFmpeg use frame and slice threads (frames still come out in order). On the 2-core reference
    # machine this measured the same as the default; it costs nothing and uses more cores where there are.
    stream.thread_type = "AUTO"
    return container, stream


def count_frames(path: str | Path) -> int:
    """Frames in a video: the container's count when it has one, else a count of packets.

    Counting packets demuxes the file without decoding it, which costs a few milliseconds.
    """
    path = Path(path)
    if path.is_dir():
        return len(frame_files(path))
    container, stream = _open(path)
    try:
        return _count(path, container, stream)
    finally:
        container.close()


@dataclass(frozen=True)
class VideoInfo:
    """What a video's container says about it (no frame is decoded to learn it)."""

    frames: int
    fps: float  # average frame rate; 0.0 when the container does not say
    width: int
    height: int

    @property
    def duration(self) -> float:
        """Seconds of video (``frames / fps``; 0.0 without a frame rate)."""
        return self.frames / self.fps if self.fps > 0 else 0.0


def probe_video(path: str | Path) -> VideoInfo:
    """Frame count, frame rate and frame size of a video (see :func:`count_frames` for the count).

    Raises:
        VideoReadError: the file cannot be opened or has no video stream.
    """
    path = Path(path)
    container, stream = _open(path)
    try:
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        fps = float(rate) if rate else 0.0
        return VideoInfo(_count(path, container, stream), fps, int(stream.width), int(stream.height))
    finally:
        container.close()


def _count(path: Path, container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> int:
    if stream.frames > 0:
        return int(stream.frames)
    try:
        return sum(1 for packet in container.demux(stream) if packet.size)
    except av.error.FFmpegError as e:
        raise VideoReadError(path, "open", e.strerror or type(e).__name__) from e


def decode_frames(path: str | Path, indices: Sequence[int]) -> Iterator[tuple[int, np.ndarray]]:
    """Decode the frames at ``indices`` as RGB ``uint8`` arrays of shape ``(H, W, 3)``.

    Frames are decoded sequentially, only the wanted ones are converted to RGB, and decoding stops after
    the last wanted frame. Indices past the end of the stream are silently absent from the output; the
    caller can compare what it asked for with what it got.

    Raises:
        VideoReadError: the file cannot be opened (``stage="open"``), or decoding fails part-way
            (``stage="decode"``; frames yielded before the error are valid).
    """
    path = Path(path)
    wanted = set(indices)
    if not wanted:
        return
    if path.is_dir():
        yield from _read_frame_files(frame_files(path), sorted(wanted))
        return
    last = max(wanted)
    container, stream = _open(path)
    try:
        for idx, frame in enumerate(container.decode(stream)):
            if idx in wanted:
                yield idx, frame.to_ndarray(format="rgb24")
            if idx >= last:
                break
    except av.error.FFmpegError as e:
        raise VideoReadError(path, "decode", e.strerror or type(e).__name__) from e
    finally:
        container.close()


def read_image(path: str | Path) -> np.ndarray:
    """Read a still image as an RGB ``uint8`` array of shape ``(H, W, 3)``.

    Raises:
        VideoReadError: the file is missing or not a readable image (``stage="open"``).
    """
    path = Path(path)
    if not path.is_file():
        raise VideoReadError(path, "open", "No such file or directory")
    # cv2.imread cannot open non-ASCII paths on some platforms; decoding from bytes always works.
    data = np.fromfile(path, dtype=np.uint8)
    img = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if img is None:
        raise VideoReadError(path, "open", "not a readable image")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def _read_frame_files(files: Sequence[Path], indices: Sequence[int]) -> Iterator[tuple[int, np.ndarray]]:
    """Frames ``indices`` of a clip stored as image files (frame ``i`` is ``files[i]``); indices past the end
    are absent, as for a video. An unreadable image fails the clip at the ``decode`` stage."""
    for idx in indices:
        if idx >= len(files):
            return
        try:
            yield idx, read_image(files[idx])
        except VideoReadError as e:
            raise VideoReadError(files[idx], "decode", e.reason) from e


def sample_frames(
    path: str | Path, strategy: Sampling | str = Sampling.UNIFORM, frames: int = 32, every: int = 1
) -> tuple[list[int], Iterator[tuple[int, np.ndarray]]]:
    """Plan and decode the sampled frames of a video or image.

    Args:
        path: a video, or an image (by suffix, see ``IMAGE_SUFFIXES``), which is one frame, frame 0, or a
            folder of frame images (one clip; frame ``i`` is its ``i``-th image in frame order, see
            :func:`crossfake.data.corpora.base.frame_files`).
        strategy, frames, every: see :func:`sample_indices`.

    Returns:
        ``(indices, frames)``: the indices chosen, and a lazy iterator of ``(index, rgb)`` pairs in
        index order. A frame listed in ``indices`` may be missing from the iterator when the container's
        frame count overstates what decodes.

    Raises:
        VideoReadError: the file cannot be opened or holds no frames (raised here), or decoding fails
            part-way (raised by the iterator).
    """
    path = Path(path)
    if path.suffix.lower() in IMAGE_SUFFIXES:
        image = read_image(path)
        return [0], iter([(0, image)])
    if path.is_dir():  # a clip stored as a folder of frame images (WildDeepfake)
        files = frame_files(path)
        if not files:
            raise VideoReadError(path, "open", "no frame images in the clip folder")
        indices = sample_indices(len(files), strategy, frames, every)
        return indices, _read_frame_files(files, indices)
    num_frames = count_frames(path)
    if num_frames == 0:
        raise VideoReadError(path, "open", "0 frames in video stream")
    indices = sample_indices(num_frames, strategy, frames, every)
    return indices, decode_frames(path, indices)
