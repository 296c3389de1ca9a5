"""Judge one video or image with a trained run: face tracks, a score per face, a verdict per person and file.

The pipeline, per input (:meth:`DetectPipeline.detect`):

1. open the file by its content (:mod:`crossfake.inference.media`) and plan the frames to look at
   (``--fps`` frames per second of video, or ``--frames`` evenly spaced ones, at most ``--max-frames``);
2. decode them, find the faces in each with the face detector the run's training crops were made with,
   and link them into tracks (:class:`~crossfake.data.preprocess.faces.FaceCropper`, the code
   ``crossfake prepare`` runs): every person seen in two or more sampled frames is a track (up to
   ``max_faces``, most persistent first), and a one-frame detection in a video of three or more sampled
   frames is dropped as a likely false positive, so a patch of background never decides a verdict;
3. crop every track's faces **exactly as ``crossfake prepare`` did** for training, under the
   :class:`~crossfake.data.preprocess.crop.CropSpec` the run records (detector and options, margin,
   alignment, size, smoothing, and a JPEG round trip if the crops were JPEG);
4. score the crops in batches through the run's own transform and model (``predict_details``, so a VLM
   run also gives its written answer);
5. aggregate (:data:`AGGREGATION_RULE`): a track's score is the **mean** of its faces' scores (the
   ``video_mean`` aggregation of ``crossfake evaluate``, per person), the file's score is the **maximum**
   over its tracks (one fake person makes the video fake), and the verdict is *fake* when that reaches
   the run's threshold, the validation threshold chosen at training. Each track gets its own verdict.

Frames in which no tracked face is found are kept in the result with no score and are listed; a file with
no face in any sampled frame gets the verdict ``no face`` and no score. Nothing here writes files: the
result is a :class:`DetectionResult`, rendered by :mod:`crossfake.inference.render` and
:mod:`crossfake.inference.formats`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from accelerate.utils import send_to_device
from PIL import Image
from tqdm.auto import tqdm

from crossfake.data.preprocess.crop import CropSpec, as_stored
from crossfake.data.preprocess.faces import FaceCrop, FaceCropper, VideoFaces
from crossfake.data.preprocess.run import crop_spec_of_manifest, read_prepare_config
from crossfake.data.preprocess.video import decode_frames
from crossfake.inference.media import (
    DEFAULT_MAX_PIXELS,
    IMAGE,
    FrameSampling,
    InputError,
    Media,
    open_media,
)
from crossfake.methods.base import Detector, PredictionColumns
from crossfake.runs.directory import BEST_DIR, RunInfo, read_run_info
from crossfake.scoring.device import autocast, detector_device, resolve_device, resolve_precision
from crossfake.scoring.predict import sigmoid
from crossfake.scoring.run import load_for_scoring
from crossfake.utils.errors import CrossfakeError
from crossfake.utils.io import json_safe
from crossfake.utils.logging import get_logger

log = get_logger("detect")

FAKE, REAL, NO_FACE = "fake", "real", "no face"
AGGREGATION_RULE = (
    "track score = mean of its faces' scores; video score = max over tracks; verdict = fake if video "
    "score >= threshold (one-frame detections in videos of 3+ sampled frames are dropped)"
)
THUMBNAIL = 128  # side of the face thumbnails kept for the web page


@dataclass
class FaceScore:
    """One face in one frame: its track, box (frame pixels, smoothed), face detector confidence and p(fake).

    ``det_score`` is NaN where the track's box was interpolated across a frame the face detector missed.
    """

    box: tuple[float, float, float, float]
    det_score: float
    track: int | None = None
    score: float = math.nan
    logit: float = math.nan
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class FrameResult:
    """One sampled frame: its tracked faces (by track), and its score (max over them; None without face)."""

    index: int
    time: float
    faces: list[FaceScore] = field(default_factory=list)
    faces_found: int = 0  # faces the face detector found, dropped one-frame detections included

    @property
    def score(self) -> float | None:
        return max(f.score for f in self.faces) if self.faces else None


@dataclass
class TrackResult:
    """One person followed through the video: how long, its score (mean over its faces) and verdict."""

    id: int
    frames: int  # sampled frames with a face of this track (interpolated ones included)
    detected: int  # of those, frames in which the face detector found it
    start: float  # seconds
    end: float
    score: float
    verdict: str


@dataclass
class Timing:
    """Seconds spent per stage of one input."""

    decode: float = 0.0
    faces: float = 0.0  # face detection and cropping
    model: float = 0.0  # transform, model and scores
    total: float = 0.0


@dataclass
class DetectionResult:
    """Everything ``detect`` found in one file (see the module docstring for the rule)."""

    path: str
    kind: str
    width: int
    height: int
    num_frames: int
    fps: float
    sampling: str
    frames: list[FrameResult]
    tracks: list[TrackResult]
    threshold: float
    threshold_origin: str
    score: float | None
    verdict: str  # FAKE, REAL or NO_FACE
    notes: list[str] = field(default_factory=list)
    #: What the method's detail columns are (its explanation, the short details, the raw answer).
    columns: PredictionColumns = field(default_factory=PredictionColumns, repr=False)
    timing: Timing = field(default_factory=Timing)
    #: Face crops (frame index, face position) -> RGB thumbnail; only with ``keep_images``.
    thumbnails: dict[tuple[int, int], np.ndarray] = field(default_factory=dict, repr=False)
    #: The most suspicious frame (the image itself; the first frame when no face): for the annotated figure.
    key_frame: tuple[int, np.ndarray] | None = field(default=None, repr=False)

    @property
    def no_face_frames(self) -> list[FrameResult]:
        return [f for f in self.frames if not f.faces]

    @property
    def top_track(self) -> TrackResult | None:
        """The track that decided the verdict (the highest score), or None without any face."""
        return max(self.tracks, key=lambda t: t.score, default=None)

    @property
    def top_face(self) -> tuple[FrameResult, FaceScore] | None:
        """The most suspicious face of the deciding track, and its frame."""
        track = self.top_track
        faces = [(f, face) for f in self.frames for face in f.faces if track and face.track == track.id]
        return max(faces, key=lambda pair: pair[1].score, default=None)

    @property
    def top_frame(self) -> FrameResult | None:
        """The frame of :attr:`top_face`, or None without any face."""
        top = self.top_face
        return top[0] if top else None

    @property
    def explanation(self) -> dict[str, Any] | None:
        """The method's explanation of the most suspicious face (None for detectors that give none): its
        details and explanation columns, else, for an answer that could not be read, the answer as it came."""
        top = self.top_face
        if top is None or not self.columns.explains:
            return None
        face = top[1]
        explained = (*self.columns.details, self.columns.explanation)
        for keys in (explained, self.columns.raw):
            found = {k: face.details[k] for k in keys if face.details.get(k) not in (None, "", [])}
            if found:
                return found
        return None

    def message(self) -> str:
        """One line a person reads: the verdict and why."""
        if self.verdict == NO_FACE:
            what = "the image" if self.kind == IMAGE else f"any of the {len(self.frames)} sampled frames"
            return f"no face found in {what}: no verdict"
        cmp = ">=" if self.verdict == FAKE else "<"
        return (
            f"{self.verdict.upper()}: score {self.score:.3f} {cmp} threshold {self.threshold:.3f} "
            f"({self.threshold_origin})"
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready record (no images): one per input in ``--format jsonl``."""
        frames = [
            {
                "index": f.index,
                "time": round(f.time, 4),
                "score": f.score,
                "faces_found": f.faces_found,
                "faces": [json_safe(asdict(face)) for face in f.faces],
            }
            for f in self.frames
        ]
        return {
            "path": self.path,
            "kind": self.kind,
            "verdict": self.verdict,
            "score": self.score,
            "threshold": self.threshold,
            "threshold_origin": self.threshold_origin,
            "rule": AGGREGATION_RULE,
            "message": self.message(),
            "width": self.width,
            "height": self.height,
            "num_frames": self.num_frames,
            "fps": self.fps,
            "sampling": self.sampling,
            "frames_sampled": len(self.frames),
            "frames_without_face": [f.index for f in self.no_face_frames],
            "tracks": [json_safe(asdict(t)) for t in self.tracks],
            "explanation": self.explanation,
            "notes": self.notes,
            "timing": {k: round(v, 4) for k, v in asdict(self.timing).items()},
            "frames": frames,
        }


# -- crop settings ----------------------------------------------------------------------------------------


def crop_spec_for_run(info: RunInfo) -> tuple[CropSpec, str]:
    """The crop specification of the run's training crops, and where it was found.

    A run records it in ``run.json`` (``crop``); runs written before crossfake 0.2 did not, and their spec
    is read from the ``prepare.json`` of their manifest. Without either, ``crossfake prepare``'s defaults.
    """
    if info.record.crop:
        return CropSpec(**info.record.crop), f"the run ({info.run_dir / 'run.json'})"
    found = crop_spec_of_manifest(info.config.data.manifest)
    if found is not None:
        return found[0], str(found[1])
    return CropSpec(), "crossfake prepare's defaults (the run records no crop specification)"


# -- the pipeline -----------------------------------------------------------------------------------------


class DetectPipeline:
    """A trained detector, the crop specification of its training data, and a threshold.

    Build it with :meth:`from_run`; call :meth:`detect` once per file. Not thread-safe: serialise calls.

    Args:
        detector: a trained detector in eval mode (on the device to score with).
        info: its run's :class:`RunInfo` (for the threshold and the descriptions).
        crop: the crop specification of the run's training crops; every track of a file is cropped with
            it (its ``faces`` setting is replaced by ``all``: every person in a video is judged).
        crop_origin: where ``crop`` came from, for the record.
        threshold: decision threshold; None: the run's validation threshold.
        sampling: which frames of a video to score.
        max_faces: tracks (people) scored per file, most persistent first.
        batch_size: crops per model call.
        max_pixels: inputs with more pixels per frame are refused.
    """

    def __init__(
        self,
        detector: Detector,
        info: RunInfo,
        crop: CropSpec,
        crop_origin: str = "",
        *,
        threshold: float | None = None,
        sampling: FrameSampling | None = None,
        max_faces: int = 5,
        batch_size: int = 32,
        max_pixels: int = DEFAULT_MAX_PIXELS,
    ) -> None:
        if max_faces < 1:
            raise CrossfakeError(f"max faces must be >= 1, not {max_faces}")
        if batch_size < 1:
            raise CrossfakeError(f"batch size must be >= 1, not {batch_size}")
        self.detector = detector.eval()
        self.info = info
        self.crop = crop
        self.crop_origin = crop_origin
        self.cropper = FaceCropper.every_track(crop)
        if threshold is not None:
            self.threshold, self.threshold_origin = float(threshold), "--threshold"
        else:
            self.threshold = info.threshold
            self.threshold_origin = info.record.threshold_name or "the run's validation threshold"
        self.sampling = sampling or FrameSampling()
        self.max_faces = max_faces
        self.batch_size = batch_size
        self.max_pixels = max_pixels
        self.device = detector_device(detector)
        self.precision = resolve_precision(info.config.train.precision, self.device)  # the run's setting, for this device

    @classmethod
    def from_run(
        cls,
        run_dir: str | Path,
        *,
        weights: str = BEST_DIR,
        device: str = "auto",
        crop_config: str | Path | None = None,
        batch_size: int | None = None,
        **options: Any,
    ) -> DetectPipeline:
        """Load a run written by ``crossfake train`` (a CrossfakeError for another format or version).

        ``crop_config``: a ``prepare.json`` or prepare YAML whose crop specification replaces the run's.
        """
        resolve_device(device)  # no CUDA for --device cuda: said before anything is read
        info = read_run_info(run_dir)  # checks the format before a backbone is loaded
        if crop_config is not None:
            crop, origin = read_prepare_config(crop_config).crop, str(crop_config)
        else:
            crop, origin = crop_spec_for_run(info)
        loaded = load_for_scoring(info.run_dir, weights=weights, device=device)
        batch_size = batch_size or loaded.info.config.eval_batch_size
        return cls(loaded.detector, loaded.info, crop, origin, batch_size=batch_size, **options)

    def describe(self) -> dict[str, Any]:
        """The model and settings, for the summary and the web page."""
        return {
            "run_dir": str(self.info.run_dir),
            "method": self.info.record.method,
            "backbone": self.detector.config.backbone,
            "val_auc": self.info.record.best_val_auc,
            "threshold": self.threshold,
            "threshold_origin": self.threshold_origin,
            "face_detector": self.crop.face_detector,
            "crop": self.crop.model_dump(mode="json", exclude={"face_detector_options", "faces"}),
            "crop_settings_from": self.crop_origin,
            "sampling": self.sampling.describe(),
            "max_frames": self.sampling.max_frames,
            "max_faces": self.max_faces,
            "rule": AGGREGATION_RULE,
        }

    # -- one file ---------------------------------------------------------------------------------

    def detect(self, path: str | Path, *, keep_images: bool = False, progress: bool = False) -> DetectionResult:
        """Judge one image or video (see the module docstring).

        Args:
            path: the file.
            keep_images: keep face thumbnails and the key frame in the result (for figures and the page).
            progress: a progress bar over the sampled frames of a video.

        Raises:
            InputError: the file cannot be judged (missing, not a video or image, unreadable, too large).
        """
        start = time.perf_counter()
        media = open_media(path, self.sampling, self.max_pixels)
        result = DetectionResult(
            path=str(path),
            kind=media.kind,
            width=media.width,
            height=media.height,
            num_frames=media.num_frames,
            fps=media.fps,
            sampling="the image" if media.kind == IMAGE else self.sampling.describe(),
            frames=[],
            tracks=[],
            threshold=self.threshold,
            threshold_origin=self.threshold_origin,
            score=None,
            verdict=NO_FACE,
            notes=list(media.notes),
            columns=type(self.detector).prediction_columns,
        )
        found = self._find(media, result, progress)
        if not found.indices:
            raise InputError(f"{path}: no frame could be decoded (truncated or corrupt video)")
        if found.decode_error is None and len(found.indices) < len(media.indices):
            result.notes.append(
                f"{len(media.indices) - len(found.indices)} of {len(media.indices)} planned frames did not "
                "decode (the stream is shorter than its header says: truncated?)"
            )
        crops = self._crop(media, found, result)
        self._collect(media, found, crops, self._score(crops, result.timing), result, keep_images)
        if result.tracks:
            result.score = max(t.score for t in result.tracks)
            result.verdict = self._verdict(result.score)
        result.timing.total = time.perf_counter() - start
        return result

    def _verdict(self, score: float) -> str:
        return FAKE if score >= self.threshold else REAL

    def _find(self, media: Media, result: DetectionResult, progress: bool) -> VideoFaces:
        """Decode the planned frames and find and track their faces (the first pass)."""
        timing = result.timing
        bar = tqdm(
            total=len(media.indices), unit="frame", desc=media.path.name, disable=None if progress else True
        )

        def timed() -> Iterator[tuple[int, np.ndarray]]:
            frames = iter(media.frames)
            while True:
                t0 = time.perf_counter()
                item = next(frames, None)
                timing.decode += time.perf_counter() - t0
                if item is None:
                    return
                bar.update()
                yield item

        t0 = time.perf_counter()
        try:
            found = self.cropper.detect(timed())
        finally:
            bar.close()
        timing.faces += time.perf_counter() - t0 - timing.decode
        if found.decode_error is not None:  # decoding failed part-way: judge the frames decoded so far
            if not isinstance(found.decode_error, InputError):
                raise found.decode_error
            result.notes.append(str(found.decode_error))
        found.kept = found.kept[: self.max_faces]
        return found

    def _crop(self, media: Media, found: VideoFaces, result: DetectionResult) -> list[FaceCrop]:
        """Every kept track's crops, in frame order, as they would read back from prepare's files."""
        t0 = time.perf_counter()
        reread = None if media.kind == IMAGE else (lambda indices: decode_frames(media.path, indices))
        crops = [
            replace(crop, image=as_stored(crop.image, self.cropper.spec))
            for _, frame_crops in self.cropper.crops(found, reread)
            for crop in frame_crops
            if crop.track_id is not None  # never a centre crop of a frame without a face
        ]
        result.timing.faces += time.perf_counter() - t0
        return crops

    def _score(self, crops: list[FaceCrop], timing: Timing) -> list[tuple[float, dict[str, Any]]]:
        """The (logit, details) of each crop, scored in batches."""
        t0 = time.perf_counter()
        scores: list[tuple[float, dict[str, Any]]] = []
        for i in range(0, len(crops), self.batch_size):
            batch = crops[i : i + self.batch_size]
            inputs = self.detector.collate([self.detector.transform(Image.fromarray(c.image)) for c in batch])
            with torch.no_grad(), autocast(self.device, self.precision):
                logits, details = self.detector.predict_details(send_to_device(inputs, self.device))
            logits = logits.float().cpu().numpy()
            for k in range(len(batch)):
                scores.append((float(logits[k]), {name: json_safe(v[k]) for name, v in details.items()}))
        timing.model += time.perf_counter() - t0
        return scores

    def _collect(
        self,
        media: Media,
        found: VideoFaces,
        crops: list[FaceCrop],
        scores: list[tuple[float, dict[str, Any]]],
        result: DetectionResult,
        keep_images: bool,
    ) -> None:
        """Frames, tracks, thumbnails and the key frame of ``result`` from the scored crops."""
        frames = {
            index: FrameResult(index, media.time_of(index), faces_found=len(faces))
            for index, faces in zip(found.indices, found.detections, strict=True)
        }
        by_track: dict[int, list[tuple[FaceCrop, FaceScore]]] = {}
        for crop, (logit, details) in zip(crops, scores, strict=True):
            face = crop.face
            scored = FaceScore(face.box, face.score, crop.track_id, float(sigmoid(np.float64(logit))), logit, details)
            frames[crop.index].faces.append(scored)
            by_track.setdefault(crop.track_id, []).append((crop, scored))
            if keep_images:
                position = len(frames[crop.index].faces) - 1
                result.thumbnails[(crop.index, position)] = cv2.resize(
                    crop.image, (THUMBNAIL, THUMBNAIL), interpolation=cv2.INTER_AREA
                )
        result.frames = [frames[i] for i in found.indices]
        for track_id, members in sorted(by_track.items()):
            score = float(np.mean([f.score for _, f in members]))
            times = [media.time_of(c.index) for c, _ in members]
            result.tracks.append(
                TrackResult(
                    id=track_id,
                    frames=len(members),
                    detected=sum(not c.interpolated for c, _ in members),
                    start=min(times),
                    end=max(times),
                    score=score,
                    verdict=self._verdict(score),
                )
            )
        if keep_images:
            top = result.top_frame
            index = top.index if top is not None else found.indices[0]
            rgb = (found.frames or {}).get(index)
            if rgb is None:
                rgb = next(decode_frames(media.path, [index]))[1]
            result.key_frame = (index, rgb)
