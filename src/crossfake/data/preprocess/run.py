"""The ``prepare`` pipeline: videos → sampled frames → largest face → square crops → Parquet manifest.

Output layout (``out_dir``)::

    crops/<dataset>/<method>/<name>/<frame_idx:06d>.png   one crop per kept frame
    manifest.parquet                                      one row per crop (see crossfake.data.manifest)
    failures.parquet                                      one row per frame or video that gave no crop
    prepare.json                                          config, its hash, provenance, summary
    .shards/<video>.parquet                               one video's rows + failures, the resume state

**Resuming.** Each video is finished by writing its shard, atomically, after its crops; an interrupted
run (even ``kill -9``) leaves every finished video complete and the rest absent, and a re-run skips
videos that have a shard. A video that failed entirely also gets a shard so it is not retried on every
run; ``retry_failed=True`` retries those. Crop-relevant settings are hashed into ``prepare.json`` and
every shard: resuming with different settings would mix two kinds of crops in one manifest, so it is an
error (use a new folder or ``overwrite=True``). ``manifest.parquet`` and ``failures.parquet`` are
rebuilt from the shards of the records given, in their order, at the end of every run.

**No face.** With ``no_face="skip"`` (default) a frame without a face gives no crop and a failure row
(stage ``detect``, reason ``no face``); a video with no face in any sampled frame also gets a
whole-video failure row. With ``no_face="center"`` such a frame is kept as the largest centred square of
the frame (no margin), with ``num_faces`` 0 and NaN box and score: meant for corpora that are already
face crops.

**Failures never stop the run.** Every sampled frame ends as a manifest row or a failure row with a
stage (``open``, ``decode``, ``detect``, ``write``) and a reason; a video yielding no crop at all has a
failure row with no ``frame_idx``.
"""

from __future__ import annotations

import concurrent.futures as cf
import hashlib
import json
import multiprocessing
import os
import re
import shutil
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from tqdm.auto import tqdm

from crossfake.data.identity import identity_groups
from crossfake.data.manifest import (
    FAILURE_COLUMNS,
    coerce,
    empty_failures,
    empty_manifest,
    write_manifest,
)
from crossfake.data.preprocess.crop import center_box, crop_square, largest_face, save_image, square_box
from crossfake.data.preprocess.detectors import FaceDetector, create_face_detector, list_face_detectors
from crossfake.data.preprocess.video import Sampling, VideoReadError, sample_frames
from crossfake.data.sources.base import VideoRecord
from crossfake.utils.errors import CrossfakeError
from crossfake.utils.io import atomic_path, write_json_atomic, write_table_atomic
from crossfake.utils.logging import get_logger
from crossfake.utils.provenance import provenance

log = get_logger("prepare")

SHARD_DIR = ".shards"
_SHARD_KEY = b"crossfake"  # Parquet schema-metadata key holding a shard's failures and status
NO_FACE = "no face"


def default_workers() -> int:
    """Worker processes used unless configured: one per core, at most 4 (decoding is I/O-light)."""
    return min(os.cpu_count() or 1, 4)


class NoFacePolicy(StrEnum):
    """What to do with a sampled frame in which the detector finds no face."""

    SKIP = "skip"  # no crop; record a failure
    CENTER = "center"  # keep the centred square of the frame


class PrepareConfig(BaseModel):
    """Settings of :func:`prepare`. Invalid values raise :class:`CrossfakeError`; unknown keys too.

    Attributes:
        sampling: ``uniform`` (``frames`` evenly spaced frames), ``every`` (every ``every``-th frame) or
            ``all``.
        frames: frames per video for ``uniform`` sampling (DeepfakeBench: 32; the reports used ~10).
        every: step for ``every`` sampling.
        detector: a name from :func:`~crossfake.data.preprocess.detectors.list_face_detectors`.
        detector_options: keyword options of the detector, e.g. ``{"weights": "yunet.onnx"}``.
        margin: the crop's side as a multiple of the face box's longer side.
        size: side of the saved square crops in pixels.
        format: ``png`` (lossless) or ``jpg``.
        quality: JPEG quality.
        no_face: ``skip`` or ``center``, see the module docstring.
        workers: worker processes; 0 runs everything in this process. Workers are spawned (not forked), so
            a script that calls :func:`prepare` with workers needs the usual ``if __name__ == "__main__":``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    sampling: Sampling = Sampling.UNIFORM
    frames: int = Field(32, gt=0)
    every: int = Field(1, gt=0)
    detector: str = "haar"
    detector_options: dict[str, Any] = Field(default_factory=dict)
    margin: float = Field(1.3, ge=1.0)
    size: int = Field(256, ge=32)
    format: Literal["png", "jpg"] = "png"
    quality: int = Field(95, ge=1, le=100)
    no_face: NoFacePolicy = NoFacePolicy.SKIP
    workers: int = Field(default_factory=default_workers, ge=0)

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as e:
            problems = "; ".join(
                f"{'.'.join(map(str, err['loc'])) or 'config'}: {err['msg']} (got {err['input']!r})"
                for err in e.errors()
            )
            raise CrossfakeError(f"invalid prepare config: {problems}") from None

    @field_validator("detector")
    @classmethod
    def _known_detector(cls, name: str) -> str:
        if name not in list_face_detectors():
            raise ValueError(f"unknown face detector; available: {', '.join(list_face_detectors())}")
        return name

    @classmethod
    def from_yaml(cls, path: str | Path, **overrides: Any) -> PrepareConfig:
        """Load settings from a YAML mapping of field names; ``overrides`` take precedence."""
        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except OSError as e:
            raise CrossfakeError(f"cannot read prepare config {path}: {e.strerror}") from None
        except yaml.YAMLError as e:
            raise CrossfakeError(f"{path} is not valid YAML: {e}") from None
        if not isinstance(data, dict):
            raise CrossfakeError(f"{path}: expected a mapping of prepare settings, got {type(data).__name__}")
        try:
            return cls(**{**data, **overrides})
        except CrossfakeError as e:
            raise CrossfakeError(f"{path}: {e}") from None

    def crop_hash(self) -> str:
        """Hash of the settings that decide what the crops are (everything but ``workers``)."""
        relevant = self.model_dump(mode="json", exclude={"workers"})
        return hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class PrepareSummary:
    """What a :func:`prepare` run did.

    Attributes:
        videos: records given.
        done: videos processed by this run that gave at least one crop.
        skipped: videos finished by an earlier run (their shard was found), failed ones included.
        failed: videos processed by this run that gave no crop.
        frames_sampled: frames decoded for cropping by this run.
        faces_found: of those, frames in which a face was found.
        crops_written: crops saved by this run.
        manifest_rows: rows in ``manifest.parquet`` (all records, this run and earlier ones).
        failures: failure rows in ``failures.parquet`` by ``"<stage>: <reason>"``.
        seconds: wall-clock time of the run.
    """

    videos: int = 0
    done: int = 0
    skipped: int = 0
    failed: int = 0
    frames_sampled: int = 0
    faces_found: int = 0
    crops_written: int = 0
    manifest_rows: int = 0
    failures: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def table(self) -> str:
        """The summary as a small aligned text table."""
        fps = self.frames_sampled / self.seconds if self.seconds > 0 else 0.0
        lines = [
            ("videos", f"{self.videos}"),
            ("  processed, with crops", f"{self.done}"),
            ("  processed, no crop", f"{self.failed}"),
            ("  already done (skipped)", f"{self.skipped}"),
            ("frames sampled", f"{self.frames_sampled}  ({fps:.1f}/s)"),
            ("faces found", f"{self.faces_found}"),
            ("crops written", f"{self.crops_written}"),
            ("manifest rows", f"{self.manifest_rows}"),
            ("time", f"{self.seconds:.1f} s"),
        ]
        if self.failures:
            lines.append(("failures", f"{sum(self.failures.values())}"))
            lines += [(f"  {reason}", f"{n}") for reason, n in self.failures.items()]  # most common first
        width = max(len(k) for k, _ in lines)
        return "\n".join(f"{k:<{width}}  {v}" for k, v in lines)


# -- one video ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Task:
    record: VideoRecord
    group: str
    out_dir: Path
    shard: Path
    config: PrepareConfig


@dataclass
class _Result:
    video_id: str
    frames_sampled: int = 0
    faces_found: int = 0
    crops_written: int = 0
    failed: bool = False
    # Set when the shard itself could not be written: the video is then retried by the next run.
    shard_error: str | None = None


def _record_columns(record: VideoRecord, group: str) -> dict[str, Any]:
    """The manifest columns that describe the video rather than the frame."""
    return {
        "dataset": record.dataset,
        "method": record.method,
        "video_id": record.video_id,
        "video_path": str(Path(record.path).resolve()),
        "label": record.label,
        "target_id": record.target_id,
        "source_id": record.source_id,
        "identity_group": group,
        "official_split": record.official_split,
    }


def _crop_dir(record: VideoRecord) -> Path:
    return Path("crops", record.dataset, record.method, record.name)


def _shard_name(video_id: str) -> str:
    # Readable and filesystem-safe; the hash keeps ids that differ only in unsafe characters apart.
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", video_id).strip("._")[:120]
    return f"{slug}-{hashlib.sha1(video_id.encode()).hexdigest()[:10]}.parquet"


def _process_video(task: _Task, detector: FaceDetector) -> _Result:
    """Crop one video and write its shard. Never raises for a problem with the video itself."""
    rec, cfg = task.record, task.config
    result = _Result(rec.video_id)
    rows: list[dict[str, Any]] = []
    failures: list[dict[str, Any]] = []

    def fail(frame_idx: int | None, stage: str, reason: str) -> None:
        failures.append({"frame_idx": frame_idx, "stage": stage, "reason": reason})

    rel_dir = _crop_dir(rec)
    # Crops of an interrupted earlier attempt (and its temporary files) are redone from scratch.
    shutil.rmtree(task.out_dir / rel_dir, ignore_errors=True)
    base = _record_columns(rec, task.group)
    planned: list[int] = []
    decoded: set[int] = set()
    stage = "open"
    try:
        planned, frames = sample_frames(rec.path, cfg.sampling, cfg.frames, cfg.every)
        stage = "decode"
        for idx, rgb in frames:
            decoded.add(idx)
            row = _crop_frame(rgb, idx, rel_dir, task.out_dir, cfg, detector, fail)
            if row is not None:
                rows.append({**base, **row})
    except VideoReadError as e:
        if e.stage == "open":
            fail(None, "open", e.reason)
        else:
            for idx in planned:
                if idx not in decoded:
                    fail(idx, "decode", e.reason)
    except Exception as e:  # an unexpected library error on this file must not end the whole run
        fail(None, stage, f"{type(e).__name__}: {e}")
    else:
        for idx in planned:
            if idx not in decoded:
                fail(idx, "decode", "frame not decoded (stream shorter than its frame count)")

    result.frames_sampled = len(decoded)
    no_face = sum(1 for f in failures if f["stage"] == "detect" and f["frame_idx"] is not None)
    result.faces_found = len(decoded) - no_face - sum(1 for r in rows if r["num_faces"] == 0)
    result.crops_written = len(rows)
    if not rows:
        result.failed = True
        if not any(f["frame_idx"] is None for f in failures):
            if not decoded:
                fail(None, "decode", "0 decodable frames")
            elif all(f["reason"] == NO_FACE for f in failures):
                fail(None, "detect", "no face in any sampled frame")
            else:
                fail(None, Counter(f["stage"] for f in failures).most_common(1)[0][0], "no crop written")
    try:
        _write_shard(task.shard, rows, failures, rec, cfg, result)
    except Exception as e:
        result.shard_error = f"{type(e).__name__}: {e}"
    return result


def _crop_frame(
    rgb: np.ndarray,
    idx: int,
    rel_dir: Path,
    out_dir: Path,
    cfg: PrepareConfig,
    detector: FaceDetector,
    fail: Callable[[int | None, str, str], None],
) -> dict[str, Any] | None:
    """Detect, crop and save one frame; the frame's manifest columns, or ``None`` after ``fail(...)``."""
    try:
        faces = detector(rgb)
    except Exception as e:
        fail(idx, "detect", f"{type(e).__name__}: {e}")
        return None
    face = largest_face(faces)
    if face is None and cfg.no_face is NoFacePolicy.SKIP:
        fail(idx, "detect", NO_FACE)
        return None
    rel_path = rel_dir / f"{idx:06d}.{cfg.format}"
    try:
        box = square_box(face, cfg.margin) if face else center_box(rgb.shape[1], rgb.shape[0])
        save_image(out_dir / rel_path, crop_square(rgb, box, cfg.size), cfg.format, cfg.quality)
    except Exception as e:
        fail(idx, "write", f"{type(e).__name__}: {e}")
        return None
    nan = float("nan")
    return {
        "path": rel_path.as_posix(),
        "frame_idx": idx,
        "face_x0": face.x0 if face else nan,
        "face_y0": face.y0 if face else nan,
        "face_x1": face.x1 if face else nan,
        "face_y1": face.y1 if face else nan,
        "det_score": face.score if face else nan,
        "num_faces": len(faces),
        "detector": cfg.detector,
    }


# -- shards -----------------------------------------------------------------------------------------


def _write_shard(
    path: Path, rows: list[dict], failures: list[dict], rec: VideoRecord, cfg: PrepareConfig, result: _Result
) -> None:
    df = empty_manifest() if not rows else pd.DataFrame(rows)
    if rows:
        df["sample_id"] = [f"{rec.video_id}/{i:06d}" for i in df["frame_idx"]]
    table = pa.Table.from_pandas(coerce(df), preserve_index=False)
    meta = {
        "video_id": rec.video_id,
        "config_hash": cfg.crop_hash(),
        "failed": result.failed,
        "failures": failures,
    }
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), _SHARD_KEY: json.dumps(meta)})
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def _shard_meta(path: Path) -> dict[str, Any] | None:
    """A shard's metadata, or ``None`` if the file is missing or unreadable (it is then redone)."""
    try:
        return json.loads(pq.read_schema(path).metadata[_SHARD_KEY])
    except FileNotFoundError:
        return None
    except Exception as e:  # atomic writes make this rare: a disk error or a foreign file
        log.warning("ignoring unreadable shard %s (%s); its video is redone", path, e)
        return None


def _config_changed(where: str) -> CrossfakeError:
    return CrossfakeError(
        f"{where} was prepared with different crop settings; resuming would mix two kinds of crops in one "
        "manifest. Use a new output folder, or --overwrite (overwrite=True) to start this one afresh"
    )


# -- workers ----------------------------------------------------------------------------------------

_WORKER_DETECTOR: FaceDetector | None = None


def _init_worker(detector: str, options: dict[str, Any]) -> None:
    global _WORKER_DETECTOR
    # Parallelism comes from the processes; OpenCV's own threads would only oversubscribe the cores.
    cv2.setNumThreads(1)
    _WORKER_DETECTOR = create_face_detector(detector, **options)


def _worker_run(task: _Task) -> _Result:
    assert _WORKER_DETECTOR is not None, "worker not initialised"
    return _process_video(task, _WORKER_DETECTOR)


# -- the run ----------------------------------------------------------------------------------------


def _clear_outputs(out_dir: Path) -> None:
    """Remove what ``prepare`` writes in ``out_dir`` (only that: the folder may hold other files)."""
    for name in ("crops", SHARD_DIR):
        shutil.rmtree(out_dir / name, ignore_errors=True)
    for name in ("manifest.parquet", "failures.parquet", "prepare.json"):
        (out_dir / name).unlink(missing_ok=True)


def _remove_temporaries(folder: Path) -> None:
    """Delete temporary files a killed run left behind (``atomic_path`` names them ``.<name>.*.tmp*``)."""
    for tmp in folder.glob(".*.tmp*"):
        tmp.unlink(missing_ok=True)


def _check_previous(out_dir: Path, config_hash: str) -> None:
    info = out_dir / "prepare.json"
    if not info.is_file():
        return
    try:
        previous = json.loads(info.read_text(encoding="utf-8")).get("config_hash")
    except (OSError, ValueError, AttributeError):
        raise CrossfakeError(f"{info} is unreadable; use --overwrite to prepare {out_dir} afresh") from None
    if previous != config_hash:
        raise _config_changed(str(out_dir))


def prepare(
    records: list[VideoRecord],
    out_dir: str | Path,
    config: PrepareConfig | None = None,
    progress: bool = True,
    *,
    overwrite: bool = False,
    retry_failed: bool = False,
) -> PrepareSummary:
    """Crop the faces of ``records`` into ``out_dir`` and write its manifest; resumes an earlier run.

    Args:
        records: videos or images to prepare, e.g. ``get_source("ffpp", root).records()``.
        out_dir: output folder (layout in the module docstring); created if needed.
        config: settings; default :class:`PrepareConfig()`.
        progress: show a progress bar over videos.
        overwrite: delete this folder's earlier ``prepare`` output first.
        retry_failed: redo videos that an earlier run found no crop in.

    Returns:
        The run's :class:`PrepareSummary`, also written to ``out_dir/prepare.json``.

    Raises:
        CrossfakeError: no records, duplicate video ids, unusable detector settings, or an ``out_dir``
            prepared with different crop settings.
    """
    config = config or PrepareConfig()
    out_dir = Path(out_dir)
    if not records:
        raise CrossfakeError("no videos to prepare")
    dupes = [v for v, n in Counter(r.video_id for r in records).items() if n > 1]
    if dupes:
        raise CrossfakeError(f"duplicate video ids {dupes[:5]}: every (dataset, method, name) must be unique")
    start = time.perf_counter()
    config_hash = config.crop_hash()
    if overwrite:
        _clear_outputs(out_dir)
    _check_previous(out_dir, config_hash)
    # Built here first so a bad detector setting (e.g. missing weights) fails before any work starts.
    detector = create_face_detector(config.detector, **config.detector_options)

    shard_dir = out_dir / SHARD_DIR
    shard_dir.mkdir(parents=True, exist_ok=True)
    _remove_temporaries(shard_dir)
    _remove_temporaries(out_dir)
    groups = identity_groups(records)
    shards = {r.video_id: shard_dir / _shard_name(r.video_id) for r in records}
    tasks: list[_Task] = []
    for rec in records:
        meta = _shard_meta(shards[rec.video_id])
        if meta is not None and meta.get("config_hash") != config_hash:
            raise _config_changed(str(shards[rec.video_id]))
        if meta is None or (retry_failed and meta.get("failed")):
            tasks.append(_Task(rec, groups[rec.video_id], out_dir, shards[rec.video_id], config))
    info = {"config": config.model_dump(mode="json"), "config_hash": config_hash, "status": "running"}
    write_json_atomic(out_dir / "prepare.json", {**info, "provenance": provenance()})
    summary = PrepareSummary(videos=len(records), skipped=len(records) - len(tasks))
    log.info("preparing %d videos into %s (%d already done)", len(tasks), out_dir, summary.skipped)

    shard_errors: dict[str, str] = {}
    for result in _run_tasks(tasks, config, detector, progress, start):
        summary.frames_sampled += result.frames_sampled
        summary.faces_found += result.faces_found
        summary.crops_written += result.crops_written
        summary.failed += result.failed
        summary.done += not result.failed
        if result.shard_error:
            log.warning(
                "%s: could not write its shard (%s); it will be redone", result.video_id, result.shard_error
            )
            shard_errors[result.video_id] = result.shard_error

    manifest, failures = _collect(records, groups, shards, shard_errors)
    write_manifest(manifest, out_dir / "manifest.parquet")
    write_table_atomic(out_dir / "failures.parquet", failures)
    summary.manifest_rows = len(manifest)
    summary.failures = dict(Counter(failures["stage"] + ": " + failures["reason"]).most_common())
    summary.seconds = round(time.perf_counter() - start, 3)
    info.update(status="complete", summary=summary.to_dict())
    write_json_atomic(out_dir / "prepare.json", {**info, "provenance": provenance()})
    log.info(
        "prepared %d videos in %.1f s: %d crops in the manifest, %d failure rows; %s",
        summary.videos,
        summary.seconds,
        summary.manifest_rows,
        sum(summary.failures.values()),
        out_dir,
    )
    return summary


def _run_tasks(
    tasks: list[_Task], config: PrepareConfig, detector: FaceDetector, progress: bool, start: float
) -> Iterator[_Result]:
    """Yield the result of every task, from this process or a pool, with a progress bar over videos."""
    # disable=None: no bar when stderr is not a terminal (log files, CI).
    bar = tqdm(
        total=len(tasks), unit="video", disable=None if progress and tasks else True, dynamic_ncols=True
    )
    frames = 0

    def advance(result: _Result) -> _Result:
        nonlocal frames
        frames += result.frames_sampled
        bar.update()
        bar.set_postfix(frames_per_s=f"{frames / max(time.perf_counter() - start, 1e-9):.1f}")
        return result

    try:
        workers = min(config.workers, len(tasks))
        if workers == 0:
            for task in tasks:
                yield advance(_process_video(task, detector))
            return
        # spawn: the same behaviour on every OS, and no fork of a process holding decoder/tqdm threads.
        ctx = multiprocessing.get_context("spawn")
        with cf.ProcessPoolExecutor(
            workers,
            mp_context=ctx,
            initializer=_init_worker,
            initargs=(config.detector, config.detector_options),
        ) as pool:
            futures = [pool.submit(_worker_run, t) for t in tasks]
            try:
                for future in cf.as_completed(futures):
                    yield advance(future.result())
            except cf.process.BrokenProcessPool:
                raise CrossfakeError(
                    "a worker process died (a crash inside a native decoder or detector?). Finished videos "
                    "are kept; re-run to resume, or run with --workers 0 to see which video crashes"
                ) from None
            finally:
                for f in futures:
                    f.cancel()
    finally:
        bar.close()


def _collect(
    records: list[VideoRecord], groups: dict[str, str], shards: dict[str, Path], shard_errors: dict[str, str]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The manifest and failure tables of ``records``, in record order, from their shards."""
    manifests: list[pd.DataFrame] = []
    failures: list[dict[str, Any]] = []
    for rec in records:
        path = str(Path(rec.path).resolve())
        if rec.video_id in shard_errors:
            failures.append(
                {
                    "video_id": rec.video_id,
                    "video_path": path,
                    "frame_idx": None,
                    "stage": "write",
                    "reason": f"shard not written: {shard_errors[rec.video_id]}",
                }
            )
            continue
        table = pq.read_table(shards[rec.video_id])
        meta = json.loads(table.schema.metadata[_SHARD_KEY])
        df = table.to_pandas()
        if len(df):
            # Video-level columns come from this run's records: identity groups depend on the whole record
            # list, which may differ from the run that wrote the shard.
            for col, value in _record_columns(rec, groups[rec.video_id]).items():
                df[col] = value
            manifests.append(df)
        failures += [{"video_id": rec.video_id, "video_path": path, **f} for f in meta["failures"]]
    manifest = pd.concat(manifests, ignore_index=True) if manifests else empty_manifest()
    fail_df = pd.DataFrame(failures, columns=list(FAILURE_COLUMNS)) if failures else empty_failures()
    return coerce(manifest), coerce(fail_df, FAILURE_COLUMNS)
