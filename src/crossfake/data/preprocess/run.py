"""The ``prepare`` pipeline: videos → sampled frames → face tracks → square crops → Parquet manifest.

Output layout (``out_dir``)::

    crops/<corpus>/<manipulation>/<name>/<frame_idx:06d>.png   one crop per kept frame
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

**Faces.** Each video's faces are detected in every sampled frame and linked into tracks
(:mod:`crossfake.data.preprocess.faces`): by default only the subject's track is cropped (``faces:
all`` crops every track), one-frame detections are dropped as likely false positives, and boxes are
smoothed along the track. Every crop records its track, its face box and five landmarks, and the square
it was cut from.

**No face.** With ``no_face="skip"`` (default) a frame without a face of a kept track gives no crop and a
failure row (stage ``detect``, reason ``no face``, or ``no tracked face`` where only dropped detections
were found); a video with no face in any sampled frame also gets a whole-video failure row. With ``no_face="center"`` such a frame is kept as the largest centred square of
the frame (no margin), with ``num_faces`` 0 and NaN box and score: meant for corpora that are already
face crops.

**Failures never stop the run.** Every sampled frame ends as a manifest row or a failure row with a
stage (``open``, ``decode``, ``detect``, ``write``) and a reason; a video yielding no crop at all has a
failure row with no ``frame_idx``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import shutil
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict, Field, model_validator
from tqdm.auto import tqdm

from crossfake.data.corpora.base import VideoRecord
from crossfake.data.identity import identity_groups
from crossfake.data.manifest import (
    FAILURE_COLUMNS,
    coerce,
    empty_failures,
    empty_manifest,
    upgrade,
    write_manifest,
)
from crossfake.data.preprocess.crop import CropSpec, encode_crop
from crossfake.data.preprocess.face_detectors import LANDMARK_NAMES
from crossfake.data.preprocess.faces import FaceCrop, FaceCropper
from crossfake.data.preprocess.video import Sampling, VideoReadError, decode_frames, sample_frames
from crossfake.executors import Executor, LocalExecutor, WorkerDied
from crossfake.utils.config import read_yaml, validate_config
from crossfake.utils.errors import CrossfakeError
from crossfake.utils.io import atomic_path, write_bytes_atomic, write_json_atomic, write_table_atomic
from crossfake.utils.logging import get_logger
from crossfake.utils.provenance import provenance
from crossfake.utils.workers import default_workers

log = get_logger("prepare")

SHARD_DIR = ".shards"
_SHARD_KEY = b"crossfake"  # Parquet schema-metadata key holding a shard's failures and status
NO_FACE = "no face"
NO_TRACKED_FACE = "no tracked face"  # faces were found, but only one-frame detections (dropped)


#: Keys of a flat (crossfake 0.1) prepare config that now live in its ``crop`` section.
_LEGACY_CROP_KEYS = {"detector": "face_detector", "detector_options": "face_detector_options"}


class PrepareConfig(BaseModel):
    """Settings of :func:`prepare`. Built from user input with :meth:`parse` or :meth:`from_yaml`, whose invalid
    values and unknown keys are a :class:`CrossfakeError` naming every bad key.

    Crop settings may be given flat beside the sampling ones (``PrepareConfig(frames=8, margin=1.5)``,
    ``prepare: {frames: 8, face_detector: haar}`` in YAML) or as a ``crop`` mapping; the names
    ``detector``/``detector_options`` of crossfake 0.1 are read as ``face_detector``/``face_detector_options``.

    Attributes:
        sampling: ``uniform`` (``frames`` evenly spaced frames), ``every`` (every ``every``-th frame) or
            ``all``.
        frames: frames per video for ``uniform`` sampling (DeepfakeBench: 32; the reports used ~10).
        every: step for ``every`` sampling.
        crop: the :class:`~crossfake.data.preprocess.crop.CropSpec`: face detector, margin, size,
            alignment, format, no-face policy, faces kept.
        workers: worker processes; 0 runs everything in this process. Workers are spawned (not forked), so
            a script that calls :func:`prepare` with workers needs the usual ``if __name__ == "__main__":``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    sampling: Sampling = Sampling.UNIFORM
    frames: int = Field(32, gt=0)
    every: int = Field(1, gt=0)
    crop: CropSpec = CropSpec()
    workers: int = Field(default_factory=default_workers, ge=0)

    @model_validator(mode="before")
    @classmethod
    def _flat_crop_keys(cls, data: Any) -> Any:
        """Move crop settings given beside the sampling ones into ``crop``."""
        if not isinstance(data, dict):
            return data
        data = {_LEGACY_CROP_KEYS.get(k, k): v for k, v in data.items()}
        flat = {k: data.pop(k) for k in list(data) if k in CropSpec.model_fields}
        if flat:
            crop = data.get("crop", {})
            crop = crop.model_dump() if isinstance(crop, CropSpec) else dict(crop or {})
            data["crop"] = {**crop, **flat}
        return data

    @classmethod
    def parse(cls, data: object, where: str = "prepare config") -> PrepareConfig:
        """Settings from a mapping of field names (flat crop settings allowed), errors naming ``where``."""
        return validate_config(cls, data, where, expected="prepare settings")

    @classmethod
    def from_yaml(cls, path: str | Path, **overrides: Any) -> PrepareConfig:
        """Load settings from a YAML mapping of field names; ``overrides`` take precedence."""
        data = read_yaml(Path(path))
        data = {} if data is None else data
        if isinstance(data, Mapping):
            data = {**data, **overrides}
        return cls.parse(data, where=str(path))

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
        "corpus": record.corpus,
        "manipulation": record.manipulation,
        "video_id": record.video_id,
        "video_path": str(Path(record.path).resolve()),
        "label": record.label,
        "target_id": record.target_id,
        "source_id": record.source_id,
        "identity_group": group,
        "official_split": record.official_split,
    }


def _crop_dir(record: VideoRecord) -> Path:
    return Path("crops", record.corpus, record.manipulation, record.name)


def _shard_name(video_id: str) -> str:
    # Readable and filesystem-safe; the hash keeps ids that differ only in unsafe characters apart.
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", video_id).strip("._")[:120]
    return f"{slug}-{hashlib.sha1(video_id.encode()).hexdigest()[:10]}.parquet"


def _process_video(task: _Task, cropper: FaceCropper) -> _Result:
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
    decoded: list[int] = []
    stage = "open"
    try:
        planned, frames = sample_frames(rec.path, cfg.sampling, cfg.frames, cfg.every)
        stage = "decode"
        found = cropper.detect(frames)
        decoded = found.indices
        stage = "write"
        for idx, crops in cropper.crops(found, lambda indices: decode_frames(rec.path, indices)):
            if idx in found.errors:
                fail(idx, "detect", found.errors[idx])
            elif not crops:
                fail(idx, "detect", NO_FACE if not found.faces_at(idx) else NO_TRACKED_FACE)
            num_faces = len(found.faces_at(idx))
            for crop in crops:
                row = _save_crop(crop, num_faces, rel_dir, task.out_dir, cfg.crop, fail)
                if row is not None:
                    rows.append({**base, **row})
        if found.decode_error is not None:  # the frames decoded before it are cropped; the rest fail
            raise found.decode_error
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
        for idx in sorted(set(planned) - set(decoded)):
            fail(idx, "decode", "frame not decoded (stream shorter than its frame count)")

    result.frames_sampled = len(decoded)
    result.faces_found = len({r["frame_idx"] for r in rows if r["num_faces"] > 0})
    result.crops_written = len(rows)
    if not rows:
        result.failed = True
        if not any(f["frame_idx"] is None for f in failures):
            if not decoded:
                fail(None, "decode", "0 decodable frames")
            elif all(f["reason"] in (NO_FACE, NO_TRACKED_FACE) for f in failures):
                fail(None, "detect", "no face in any sampled frame")
            else:
                fail(None, Counter(f["stage"] for f in failures).most_common(1)[0][0], "no crop written")
    try:
        _write_shard(task.shard, rows, failures, rec, cfg, result)
    except Exception as e:
        result.shard_error = f"{type(e).__name__}: {e}"
    return result


def crop_columns(crop: FaceCrop, num_faces: int, spec: CropSpec) -> dict[str, Any]:
    """The manifest columns that describe one crop: its face, landmarks, track and the square cut."""
    nan = float("nan")
    face = crop.face
    points = face.landmarks if face is not None and face.landmarks is not None else [(nan, nan)] * 5
    columns: dict[str, Any] = {
        "frame_idx": crop.index,
        "face_x0": face.x0 if face else nan,
        "face_y0": face.y0 if face else nan,
        "face_x1": face.x1 if face else nan,
        "face_y1": face.y1 if face else nan,
    }
    for name, (x, y) in zip(LANDMARK_NAMES, points, strict=True):
        columns[f"{name}_x"], columns[f"{name}_y"] = x, y
    columns.update(
        {
            "crop_x0": crop.box[0],
            "crop_y0": crop.box[1],
            "crop_x1": crop.box[2],
            "crop_y1": crop.box[3],
            "crop_angle": crop.angle,
            "det_score": face.score if face else nan,
            "interpolated": crop.interpolated,
            "track_id": crop.track_id,
            "num_faces": num_faces,
            "face_detector": spec.face_detector,
        }
    )
    return columns


def _save_crop(
    crop: FaceCrop, num_faces: int, rel_dir: Path, out_dir: Path, spec: CropSpec, fail: Any
) -> dict[str, Any] | None:
    """Save one crop; its manifest columns, or ``None`` after ``fail(...)``."""
    # The subject's crop (track 0) keeps the plain name; other tracks' crops of the frame are suffixed.
    name = f"{crop.index:06d}" + ("" if crop.track_id in (None, 0) else f"_t{crop.track_id}")
    rel_path = rel_dir / f"{name}.{spec.format}"
    try:
        write_bytes_atomic(out_dir / rel_path, encode_crop(crop.image, spec))
    except Exception as e:
        fail(crop.index, "write", f"{type(e).__name__}: {e}")
        return None
    return {"name": name, "path": rel_path.as_posix(), **crop_columns(crop, num_faces, spec)}


# -- shards -----------------------------------------------------------------------------------------


def _write_shard(
    path: Path, rows: list[dict], failures: list[dict], rec: VideoRecord, cfg: PrepareConfig, result: _Result
) -> None:
    df = empty_manifest() if not rows else pd.DataFrame(rows)
    if rows:
        df["sample_id"] = [f"{rec.video_id}/{name}" for name in df.pop("name")]
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

#: Croppers of a worker process (pool process or Ray worker) by crop specification (JSON): built on its
#: first video and kept for the rest. An in-process run uses the cropper ``prepare`` built instead.
_CROPPERS: dict[str, FaceCropper] = {}


def _init_worker() -> None:
    """Run once in each worker process (pool or Ray) before its first video."""
    # Parallelism comes from the processes; OpenCV's own threads would only oversubscribe the cores.
    cv2.setNumThreads(1)


def _worker_run(task: _Task) -> _Result:
    """Prepare one video: the unit of work every executor runs (picklable, idempotent)."""
    key = task.config.crop.model_dump_json()
    cropper = _CROPPERS.get(key)
    if cropper is None:
        cropper = _CROPPERS[key] = FaceCropper(task.config.crop)
    return _process_video(task, cropper)


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
    executor: Executor | None = None,
) -> PrepareSummary:
    """Crop the faces of ``records`` into ``out_dir`` and write its manifest; resumes an earlier run.

    Args:
        records: videos or images to prepare, e.g. ``get_corpus("ffpp", root).records()``.
        out_dir: output folder (layout in the module docstring); created if needed.
        config: settings; default :class:`PrepareConfig()`.
        progress: show a progress bar over videos.
        overwrite: delete this folder's earlier ``prepare`` output first.
        retry_failed: redo videos that an earlier run found no crop in.
        executor: where the videos are prepared, one task per video
            (:class:`~crossfake.executors.RayExecutor` for a Ray cluster, whose nodes must see ``out_dir``
            and the videos at the same paths); default ``LocalExecutor(config.workers)``. The outputs
            do not depend on it: the manifest is assembled from the videos' shards in record order.

    Returns:
        The run's :class:`PrepareSummary`, also written to ``out_dir/prepare.json``.

    Raises:
        CrossfakeError: no records, duplicate video ids, unusable face detector settings, or an ``out_dir``
            prepared with different crop settings.
    """
    config = config or PrepareConfig()
    out_dir = Path(out_dir)
    if not records:
        raise CrossfakeError("no videos to prepare")
    dupes = [v for v, n in Counter(r.video_id for r in records).items() if n > 1]
    if dupes:
        raise CrossfakeError(f"duplicate video ids {dupes[:5]}: every (corpus, manipulation, name) must be unique")
    start = time.perf_counter()
    config_hash = config.crop_hash()
    if overwrite:
        _clear_outputs(out_dir)
    _check_previous(out_dir, config_hash)
    # Built here first so a bad face detector setting (e.g. missing weights) fails before any work starts.
    cropper = FaceCropper(config.crop)

    shard_dir = out_dir / SHARD_DIR
    shard_dir.mkdir(parents=True, exist_ok=True)
    _remove_temporaries(shard_dir)
    _remove_temporaries(out_dir)
    groups = identity_groups(records)
    shards = {r.video_id: shard_dir / _shard_name(r.video_id) for r in records}
    # Tasks carry absolute paths: a worker (a Ray worker above all) need not run in this folder.
    abs_out = out_dir.resolve()
    tasks: list[_Task] = []
    for rec in records:
        meta = _shard_meta(shards[rec.video_id])
        if meta is not None and meta.get("config_hash") != config_hash:
            raise _config_changed(str(shards[rec.video_id]))
        if meta is None or (retry_failed and meta.get("failed")):
            task_rec = dataclasses.replace(rec, path=Path(rec.path).resolve())
            task_shard = abs_out / SHARD_DIR / shards[rec.video_id].name
            tasks.append(_Task(task_rec, groups[rec.video_id], abs_out, task_shard, config))
    executor = executor if executor is not None else LocalExecutor(config.workers)
    info = {
        "config": config.model_dump(mode="json"),
        "config_hash": config_hash,
        "executor": executor.describe(),
        "status": "running",
    }
    write_json_atomic(out_dir / "prepare.json", {**info, "provenance": provenance()})
    summary = PrepareSummary(videos=len(records), skipped=len(records) - len(tasks))
    log.info("preparing %d videos into %s (%d already done)", len(tasks), out_dir, summary.skipped)

    shard_errors: dict[str, str] = {}
    for result in _run_tasks(tasks, executor, cropper, progress, start):
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
    tasks: list[_Task], executor: Executor, cropper: FaceCropper, progress: bool, start: float
) -> Iterator[_Result]:
    """Yield the result of every task as the executor finishes it, with a progress bar over videos."""
    # disable=None: no bar when stderr is not a terminal (log files, CI).
    bar = tqdm(
        total=len(tasks), unit="video", disable=None if progress and tasks else True, dynamic_ncols=True
    )
    frames = 0
    results: Iterator[_Result] | None = None
    try:
        if executor.in_process:  # this process's cropper, already built; nothing is pickled
            results = executor.map_unordered(lambda task: _process_video(task, cropper), tasks)
        else:
            results = executor.map_unordered(_worker_run, tasks, setup=_init_worker)
        for result in results:
            frames += result.frames_sampled
            bar.update()
            bar.set_postfix(frames_per_s=f"{frames / max(time.perf_counter() - start, 1e-9):.1f}")
            yield result
    except WorkerDied as e:
        raise CrossfakeError(
            f"{e}. Finished videos are kept; re-run to resume, or run with --executor local --workers 0 "
            "to see which video crashes"
        ) from None
    finally:
        if results is not None:
            results.close()  # cancels what the executor has not started (Ctrl-C, an error)
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
        df = upgrade(table.to_pandas())  # a shard written before the vocabulary rename: today's names
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


# -- the crop specification of a prepared manifest ------------------------------------------------------


def read_prepare_config(path: str | Path) -> PrepareConfig:
    """The settings in a ``prepare.json`` written by :func:`prepare`, or in a prepare YAML config."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return PrepareConfig.from_yaml(path, workers=0)
    if not isinstance(data, dict):
        raise CrossfakeError(f"{path}: expected prepare.json or a mapping of prepare settings")
    return PrepareConfig.parse({**data.get("config", data), "workers": 0}, where=str(path))


def crop_spec_of_manifest(manifest: str | Path) -> tuple[CropSpec, Path] | None:
    """The crop specification a manifest's crops were made with, and the ``prepare.json`` it came from.

    Looked up beside the manifest, or beside the manifest a split manifest was made from (its
    ``split_*.json`` sidecar records it); None if neither has one.
    """
    manifest = Path(manifest)
    candidates = [manifest.parent / "prepare.json"]
    try:
        origin = json.loads(manifest.with_suffix(".json").read_text(encoding="utf-8")).get("manifest")
        if origin:
            candidates.append(Path(origin).parent / "prepare.json")
    except (OSError, ValueError, AttributeError):
        pass
    for candidate in candidates:
        if candidate.is_file():
            return read_prepare_config(candidate).crop, candidate
    return None
