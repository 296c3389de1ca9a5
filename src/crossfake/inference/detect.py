"""Judge one video or image with a trained run: faces per frame, a score per face, a verdict per file.

The pipeline, per input (:meth:`DetectPipeline.detect`):

1. open the file by its content (:mod:`crossfake.inference.media`) and plan the frames to look at
   (``--fps`` frames per second of video, or ``--frames`` evenly spaced ones, at most ``--max-frames``);
2. decode them in one streaming pass; in each, find the faces with the face detector the run's training
   crops were made with, and crop every face (up to ``max_faces``, largest first) **exactly as
   ``crossfake prepare`` did** for training: the same detector and options, margin, square box with
   black outside the frame, size, and a JPEG round trip if the crops were JPEG
   (:func:`crop_settings_for_run` reads them from the ``prepare.json`` beside the run's manifest);
3. score the crops in batches through the run's own transform and model (``predict_details``, so a VLM
   run also gives its written answer), while decoding goes on;
4. aggregate (:data:`AGGREGATION_RULE`): a frame's score is the **maximum** over its faces (a fake face
   anywhere makes the frame suspicious), the video's score is the **mean** of its frames' scores (the
   ``video_mean`` aggregation of ``crossfake evaluate``), and the verdict is *fake* when the video score
   reaches the run's threshold, the validation-EER threshold chosen at training.

Frames in which no face is found are kept in the result with no score and are listed; a file with no
face in any sampled frame gets the verdict ``no face`` and no score. Nothing here writes files: the
result is a :class:`DetectionResult`, rendered by :mod:`crossfake.inference.render` and
:mod:`crossfake.inference.formats`.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from accelerate.utils import send_to_device
from PIL import Image
from tqdm.auto import tqdm

from crossfake.data.preprocess.crop import crop_square, square_box
from crossfake.data.preprocess.detectors import Face, create_face_detector
from crossfake.data.preprocess.run import PrepareConfig
from crossfake.evaluation.predict import sigmoid
from crossfake.inference.media import (
    DEFAULT_MAX_PIXELS,
    IMAGE,
    FrameSampling,
    InputError,
    Media,
    open_media,
)
from crossfake.methods.base import Detector
from crossfake.training.checkpoint import BEST_DIR, RunInfo, load_run, read_run_info
from crossfake.training.config import autocast, resolve_precision
from crossfake.utils.errors import CrossfakeError
from crossfake.utils.logging import get_logger

log = get_logger("detect")

FAKE, REAL, NO_FACE = "fake", "real", "no face"
AGGREGATION_RULE = (
    "frame score = max over the frame's faces; video score = mean of the scores of the frames with a "
    "face; verdict = fake if video score >= threshold"
)
#: Detail columns of a VLM's answer that make up the explanation shown to a person.
EXPLANATION_KEYS = ("verdict", "confidence", "artifacts", "reasoning")
UNPARSED_KEYS = ("raw_answer", "parse_error")
THUMBNAIL = 128  # side of the face thumbnails kept for the web page


@dataclass
class FaceScore:
    """One face in one frame: its box (frame pixels), detector confidence and p(fake)."""

    box: tuple[float, float, float, float]
    det_score: float
    score: float = math.nan
    logit: float = math.nan
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class FrameResult:
    """One sampled frame: its faces (largest first), and its score (max over faces; None without face)."""

    index: int
    time: float
    faces: list[FaceScore] = field(default_factory=list)
    faces_found: int = 0  # faces the detector found, before the ``max_faces`` cut

    @property
    def score(self) -> float | None:
        return max(f.score for f in self.faces) if self.faces else None


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
    threshold: float
    threshold_source: str
    score: float | None
    verdict: str  # FAKE, REAL or NO_FACE
    notes: list[str] = field(default_factory=list)
    timing: Timing = field(default_factory=Timing)
    #: Face crops (frame index, face position) -> RGB thumbnail; only with ``keep_images``.
    thumbnails: dict[tuple[int, int], np.ndarray] = field(default_factory=dict, repr=False)
    #: The most suspicious frame (the image itself; the first frame when no face): for the annotated figure.
    key_frame: tuple[int, np.ndarray] | None = field(default=None, repr=False)

    @property
    def no_face_frames(self) -> list[FrameResult]:
        return [f for f in self.frames if not f.faces]

    @property
    def top_frame(self) -> FrameResult | None:
        """The frame with the highest score (the first of equals), or None without any face."""
        scored = [f for f in self.frames if f.faces]
        return max(scored, key=lambda f: f.score, default=None)

    @property
    def explanation(self) -> dict[str, Any] | None:
        """A VLM's answer for the most suspicious face (None for detectors that give none)."""
        frame = self.top_frame
        if frame is None:
            return None
        face = max(frame.faces, key=lambda f: f.score)
        for keys in (EXPLANATION_KEYS, UNPARSED_KEYS):  # an answer that did not parse: show it as it came
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
            f"({self.threshold_source})"
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready record (no images): one per input in ``--format jsonl``."""
        frames = [
            {
                "index": f.index,
                "time": round(f.time, 4),
                "score": f.score,
                "faces_found": f.faces_found,
                "faces": [_clean(asdict(face)) for face in f.faces],
            }
            for f in self.frames
        ]
        return {
            "path": self.path,
            "kind": self.kind,
            "verdict": self.verdict,
            "score": self.score,
            "threshold": self.threshold,
            "threshold_source": self.threshold_source,
            "rule": AGGREGATION_RULE,
            "message": self.message(),
            "width": self.width,
            "height": self.height,
            "num_frames": self.num_frames,
            "fps": self.fps,
            "sampling": self.sampling,
            "frames_sampled": len(self.frames),
            "frames_without_face": [f.index for f in self.no_face_frames],
            "explanation": self.explanation,
            "notes": self.notes,
            "timing": {k: round(v, 4) for k, v in asdict(self.timing).items()},
            "frames": frames,
        }


def _clean(value: Any) -> Any:
    """JSON-safe: NaN -> None, tuples -> lists, numpy scalars -> Python."""
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


# -- crop settings ----------------------------------------------------------------------------------------


def read_crop_settings(path: str | Path) -> PrepareConfig:
    """Crop settings from a ``prepare.json`` written by ``crossfake prepare`` or a prepare YAML config."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return PrepareConfig.from_yaml(path, workers=0)
    if not isinstance(data, dict):
        raise CrossfakeError(f"{path}: expected prepare.json or a mapping of prepare settings")
    settings = data.get("config", data)
    try:
        return PrepareConfig(**{**settings, "workers": 0})
    except CrossfakeError as e:
        raise CrossfakeError(f"{path}: {e}") from None


def crop_settings_for_run(info: RunInfo) -> tuple[PrepareConfig, str]:
    """The crop settings the run's training crops were made with, and where they were found.

    Looked up in ``prepare.json`` beside the run's manifest, or beside the manifest a split manifest was
    made from (``split_*.json`` records it). Without one, ``crossfake prepare``'s defaults.
    """
    manifest = Path(info.config.data.manifest)
    candidates = [manifest.parent / "prepare.json"]
    try:
        origin = json.loads(manifest.with_suffix(".json").read_text(encoding="utf-8")).get("manifest")
        if origin:
            candidates.append(Path(origin).parent / "prepare.json")
    except (OSError, ValueError, AttributeError):
        pass
    for candidate in candidates:
        if candidate.is_file():
            return read_crop_settings(candidate), str(candidate)
    return PrepareConfig(workers=0), "crossfake prepare's defaults (no prepare.json beside the run's manifest)"


# -- the pipeline -----------------------------------------------------------------------------------------


class DetectPipeline:
    """A trained detector, the face detector and crop settings of its training data, and a threshold.

    Build it with :meth:`from_run`; call :meth:`detect` once per file. Not thread-safe: serialise calls.

    Args:
        detector: a trained detector in eval mode (on the device to score with).
        info: its run's :class:`RunInfo` (for the threshold and the descriptions).
        crop: crop settings (face detector, margin, size, format) as ``crossfake prepare`` used them.
        crop_source: where ``crop`` came from, for the record.
        threshold: decision threshold; None: the run's validation threshold (0.5 if it records none).
        sampling: which frames of a video to score.
        max_faces: faces scored per frame, largest first.
        batch_size: crops per model call.
        max_pixels: inputs with more pixels per frame are refused.
    """

    def __init__(
        self,
        detector: Detector,
        info: RunInfo,
        crop: PrepareConfig,
        crop_source: str = "",
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
        self.crop_source = crop_source
        self.face_detector = create_face_detector(crop.detector, **crop.detector_options)
        if threshold is not None:
            self.threshold, self.threshold_source = float(threshold), "--threshold"
        elif info.record.get("threshold") is not None:
            rule = str(info.record.get("threshold_rule") or "")
            source = "validation EER threshold" if "EER" in rule else "the run's validation threshold"
            self.threshold, self.threshold_source = info.threshold, source
        else:
            self.threshold, self.threshold_source = 0.5, "0.5: the run records no validation threshold"
        self.sampling = sampling or FrameSampling()
        self.max_faces = max_faces
        self.batch_size = batch_size
        self.max_pixels = max_pixels
        param = next(detector.parameters(), None)  # a VLM behind an HTTP server has none: the CPU
        self.device = param.device if param is not None else torch.device("cpu")
        self.precision = resolve_precision("auto", self.device)

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
        """Load a run written by ``crossfake train`` (a CrossfakeError for another format or version)."""
        if device == "cuda" and not torch.cuda.is_available():
            raise CrossfakeError("--device cuda but no CUDA device is visible")
        info = read_run_info(run_dir)  # checks the format before a backbone is loaded
        if crop_config is not None:
            crop, source = read_crop_settings(crop_config), str(crop_config)
        else:
            crop, source = crop_settings_for_run(info)
        detector, info = load_run(info.run_dir, weights=weights)
        auto = "cuda" if torch.cuda.is_available() else "cpu"
        detector.to(torch.device(auto if device == "auto" else device))
        return cls(detector, info, crop, source, batch_size=batch_size or info.config.eval_batch_size, **options)

    def describe(self) -> dict[str, Any]:
        """The model and settings, for the summary and the web page."""
        return {
            "run_dir": str(self.info.run_dir),
            "method": self.info.record.get("method", self.detector.config.method),
            "backbone": self.detector.config.backbone,
            "val_auc": self.info.record.get("best_val_auc"),
            "threshold": self.threshold,
            "threshold_source": self.threshold_source,
            "face_detector": self.crop.detector,
            "crop": {"margin": self.crop.margin, "size": self.crop.size, "format": self.crop.format},
            "crop_settings_from": self.crop_source,
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
            threshold=self.threshold,
            threshold_source=self.threshold_source,
            score=None,
            verdict=NO_FACE,
            notes=list(media.notes),
        )
        complete = self._run(media, result, keep_images, progress)
        if complete and len(result.frames) < len(media.indices):
            result.notes.append(
                f"{len(media.indices) - len(result.frames)} of {len(media.indices)} planned frames did not "
                "decode (the stream is shorter than its header says: truncated?)"
            )
        if not result.frames:
            raise InputError(f"{path}: no frame could be decoded (truncated or corrupt video)")
        scores = [f.score for f in result.frames if f.faces]
        if scores:
            result.score = float(np.mean(scores))
            result.verdict = FAKE if result.score >= self.threshold else REAL
        result.timing.total = time.perf_counter() - start
        return result

    def _run(self, media: Media, result: DetectionResult, keep_images: bool, progress: bool) -> bool:
        """Decode, crop and score the planned frames into ``result``; False if decoding failed part-way."""
        timing = result.timing
        complete = True
        pending: list[tuple[FaceScore, np.ndarray]] = []  # crops waiting for a full batch
        # With keep_images: frames whose faces wait in `pending` (at most one batch of frames), and the
        # most suspicious frame so far. Every face is scored once `pending` is flushed.
        waiting: dict[int, tuple[FrameResult, np.ndarray]] = {}
        best: tuple[float, tuple[int, np.ndarray] | None] = (-math.inf, None)

        def settle() -> None:
            nonlocal best
            for frame, rgb in waiting.values():
                if frame.score > best[0]:
                    best = (frame.score, (frame.index, rgb))
            waiting.clear()

        bar = tqdm(
            total=len(media.indices), unit="frame", desc=media.path.name, disable=None if progress else True
        )
        frames = iter(media.frames)
        try:
            while True:
                t0 = time.perf_counter()
                try:
                    item = next(frames, None)
                except InputError as e:  # decoding failed part-way: judge the frames decoded so far
                    result.notes.append(str(e))
                    item, complete = None, False
                timing.decode += time.perf_counter() - t0
                if item is None:
                    break
                index, rgb = item
                t0 = time.perf_counter()
                frame = self._faces(index, media.time_of(index), rgb, pending, result, keep_images)
                timing.faces += time.perf_counter() - t0
                result.frames.append(frame)
                if keep_images and frame.faces:
                    waiting[index] = (frame, rgb)
                elif keep_images and best[1] is None:  # a stand-in key frame until a face is found
                    best = (-math.inf, (index, rgb))
                if len(pending) >= self.batch_size:
                    self._score(pending, timing)
                    settle()
                bar.update()
            self._score(pending, timing)
            settle()
        finally:
            bar.close()
        result.key_frame = best[1]
        return complete

    def _faces(
        self,
        index: int,
        time_s: float,
        rgb: np.ndarray,
        pending: list[tuple[FaceScore, np.ndarray]],
        result: DetectionResult,
        keep_images: bool,
    ) -> FrameResult:
        """Detect and crop the faces of one frame; their crops join ``pending``."""
        faces: list[Face] = sorted(self.face_detector(rgb), key=lambda f: f.area, reverse=True)
        frame = FrameResult(index, time_s, faces_found=len(faces))
        for position, face in enumerate(faces[: self.max_faces]):
            crop = crop_square(rgb, square_box(face, self.crop.margin), self.crop.size)
            if self.crop.format == "jpg":  # the training crops went through JPEG: so do these
                ok, data = cv2.imencode(
                    ".jpg", cv2.cvtColor(crop, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, self.crop.quality]
                )
                crop = cv2.cvtColor(cv2.imdecode(data, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
            scored = FaceScore((face.x0, face.y0, face.x1, face.y1), face.score)
            frame.faces.append(scored)
            pending.append((scored, crop))
            if keep_images:
                result.thumbnails[(index, position)] = cv2.resize(
                    crop, (THUMBNAIL, THUMBNAIL), interpolation=cv2.INTER_AREA
                )
        return frame

    def _score(self, pending: list[tuple[FaceScore, np.ndarray]], timing: Timing) -> None:
        """Score the pending crops in one model call and empty ``pending``."""
        if not pending:
            return
        t0 = time.perf_counter()
        inputs = self.detector.collate([self.detector.transform(Image.fromarray(crop)) for _, crop in pending])
        with torch.no_grad(), autocast(self.device, self.precision):
            logits, details = self.detector.predict_details(send_to_device(inputs, self.device))
        logits = logits.float().cpu().numpy()
        scores = sigmoid(logits)
        for i, (face, _) in enumerate(pending):
            face.logit, face.score = float(logits[i]), float(scores[i])
            face.details = {name: _clean(values[i]) for name, values in details.items()}
        pending.clear()
        timing.model += time.perf_counter() - t0
