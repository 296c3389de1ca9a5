"""Score manifest rows with a detector, streaming: memory stays bounded whatever the number of frames.

Report 1 had to cut its Face2Face test set from 509,084 to 100,000 frames because its scoring held every
image in memory. Here images are loaded and scored batch by batch: at most one batch of images (or of
cached features) per loader, and one part's output rows (``part_rows`` rows of scores, no images), are in
memory at a time.

With ``out``, the rows go to Parquet part files of ``part_rows`` rows under a hidden folder beside
``out``, each written through a temporary file; when all parts exist they are streamed into ``out``
(again through a temporary file and a rename) and the parts are removed. An interrupted scoring run
therefore resumes at its first missing part, and ``out`` either does not exist or is complete. The parts
are tied to the model and the rows by a fingerprint, so changed weights or rows start afresh.

Scoring goes through ``detector.predict_details(inputs) -> (logits, {column: values per row})``; extra
columns (a VLM's verdict and explanation) follow ``logit`` in the output. A detector that sets
``journal_predictions`` (answers take seconds each) also has its part in progress journalled: each finished batch's rows (every column)
are appended to ``<part>.jsonl`` in the parts folder, flushed and fsynced, and a restart skips the rows
already journalled; a complete journal is converted to the part's Parquet file and deleted. (Plain
detectors resume per part: at milliseconds per image, a per-batch fsync would cost more than it saves.)

With an ``executor`` (:mod:`crossfake.executors`: a pool of processes or a Ray cluster) the rows that are
not in a finished part are cut into tasks of whole batches (``task_rows`` rows, aligned to the batches
this process would make) and scored by workers, each of which loads the detector once per process
(``loader``); this process writes every part file exactly as above once its tasks are back, so the parts
folder, the resume and ``out`` are those of scoring here, and every batch holds the same rows, which
makes the scores identical. See :func:`_predict_with_executor`.

A ``crop_transform`` (a perturbation of the crops, for robustness studies) is applied to each decoded
crop before the detector's transform; it bypasses the feature cache and enters the fingerprint.

Output columns: ``sample_id, video_id, corpus, manipulation, label`` (copied from the manifest), ``logit``
(the detector's output, float32) and ``score`` = sigmoid(logit) = p(fake), computed in float64 so that
scores only tie when logits tie. Parts and journals left by a run from before today's column names
(``dataset``, ``method``) are read under the new names, so such a run resumes where it stopped.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from accelerate.utils import send_to_device
from tqdm.auto import tqdm

from crossfake.data.manifest import RENAMED_COLUMNS
from crossfake.executors.base import Executor, WorkerDied
from crossfake.methods.base import Detector
from crossfake.scoring.data import Collate, CropTransform, FaceCropDataset, make_loader
from crossfake.scoring.device import autocast, detector_device, resolve_precision
from crossfake.scoring.features import FeatureCache, probe_digest
from crossfake.utils.errors import CrossfakeError
from crossfake.utils.io import atomic_path, write_json_atomic
from crossfake.utils.logging import get_logger

log = get_logger("scoring.predict")

#: Columns copied from the manifest, then the model's outputs.
ID_COLUMNS: tuple[str, ...] = ("sample_id", "video_id", "corpus", "manipulation", "label")
SCHEMA = pa.schema(
    [
        ("sample_id", pa.string()),
        ("video_id", pa.string()),
        ("corpus", pa.string()),
        ("manipulation", pa.string()),
        ("label", pa.int8()),
        ("score", pa.float64()),
        ("logit", pa.float32()),
    ]
)
#: Old name -> today's, of the ID columns: parts and journals of an interrupted run from before the rename.
_OLD_ID_COLUMNS = {old: new for old, new in RENAMED_COLUMNS.items() if new in ID_COLUMNS}


def sigmoid(logits: np.ndarray) -> np.ndarray:
    """p(fake) from logits, in float64 (a float32 sigmoid would tie every score above ~17)."""
    x = np.asarray(logits, dtype=np.float64)
    return 1.0 / (1.0 + np.exp(-x))


def predict_manifest(
    detector: Detector,
    manifest_df: pd.DataFrame,
    batch_size: int = 64,
    *,
    out: str | Path | None = None,
    cache: FeatureCache | None = None,
    precision: str = "auto",
    num_workers: int | None = None,
    part_rows: int = 50_000,
    progress: bool = True,
    crop_transform: CropTransform | None = None,
    executor: Executor | None = None,
    loader: Callable[[], Detector] | None = None,
    task_rows: int | None = None,
) -> pd.DataFrame:
    """Score every row of ``manifest_df`` with ``detector``, batch by batch.

    Args:
        detector: a trained detector, on the device to score with (see ``load_run``).
        manifest_df: manifest rows; crop paths resolve against ``manifest_df.attrs["root"]`` (set by
            ``read_manifest``).
        batch_size: images per batch, and rows per write.
        out: Parquet file to stream the predictions to (resumable, see the module docstring). Without
            it the predictions are only returned.
        cache: a :class:`FeatureCache`; detectors with ``supports_feature_cache`` then score
            ``head(cached features)``, extracting the features once.
        precision: ``auto`` (bf16 autocast on CUDA, fp32 on CPU), ``fp32`` or ``bf16``.
        num_workers: image-loading processes (None: a default from the CPU count).
        part_rows: rows per resumable part file when ``out`` is given.
        progress: show a progress bar.
        crop_transform: applied to each decoded crop before the detector's transform (e.g. a perturbation
            of a robustness study). The feature cache is then bypassed (its entries are features of the
            crops as stored), and the resumable parts are tied to the transform's output on a probe image.
        executor: score in workers (see the module docstring); None: in this process. ``detector`` then
            only fingerprints the parts (it may sit on the CPU while the workers use GPUs).
        loader: with an executor that does not run in this process: a picklable function that returns
            the detector in a worker, on the device to score with, cached per process (e.g.
            :class:`~crossfake.scoring.run.RunLoader`).
        task_rows: rows per executor task, rounded up to whole batches (default: a 16th of the rows, at
            most 4096; one batch for a detector that journals its predictions).

    Returns:
        The predictions, one row per manifest row, in the manifest's order.
    """
    device = detector_device(detector)
    precision = resolve_precision(precision, device)
    rows = manifest_df.reset_index(drop=True)
    if executor is not None:
        return _predict_with_executor(
            detector,
            rows,
            executor,
            loader,
            _Settings(batch_size, precision, num_workers, part_rows, crop_transform),
            out=None if out is None else Path(out),
            cache=cache,
            task_rows=task_rows,
            progress=progress,
        )
    features = None
    if cache is not None and crop_transform is not None:
        log.info("a crop transform is given: scoring images, not cached features")
    elif cache is not None and detector.supports_feature_cache:
        features = cache.get(
            detector,
            rows,
            batch_size=batch_size,
            precision=precision,
            num_workers=num_workers,
            progress=progress,
        )
    detector.eval()

    def batches(start: int, stop: int) -> Iterator[pa.Table]:
        part = rows.iloc[start:stop]
        for first, logits, details in _score(
            detector,
            part,
            None if features is None else features[start:stop],
            batch_size,
            device,
            precision,
            num_workers,
            crop_transform,
        ):
            yield _table(part.iloc[first : first + len(logits)], logits, details)

    if out is None:
        with tqdm(total=len(rows), desc="scoring", unit="img", disable=not progress) as bar:
            tables = []
            for table in batches(0, len(rows)):
                tables.append(table)
                bar.update(table.num_rows)
        if not tables:
            return SCHEMA.empty_table().to_pandas()
        return pa.concat_tables(tables, promote_options="permissive").to_pandas()

    out = Path(out)
    journalled = detector.journal_predictions
    parts = _parts_folder(out, _fingerprint(detector, rows, precision, part_rows, crop_transform))
    with tqdm(total=len(rows), desc="scoring", unit="img", disable=not progress) as bar:
        for start in range(0, len(rows), part_rows):
            stop = min(start + part_rows, len(rows))
            path = parts / f"{start:012d}.parquet"
            if path.is_file():  # scored by an earlier, interrupted call
                bar.update(stop - start)
                continue
            if journalled:
                journal = path.with_suffix(".jsonl")
                done = _valid_journal_rows(journal, rows["sample_id"].iloc[start:stop].astype(str).tolist())
                bar.update(done)
                _append_to_journal(journal, batches(start + done, stop), bar)
                _write_tables(path, lambda journal=journal: _journal_tables(journal, batch_size))
                journal.unlink()
                continue
            # One part's output rows (no images) in memory, so detail columns get one unified schema.
            tables = []
            for table in batches(start, stop):
                tables.append(table)
                bar.update(table.num_rows)
            _write_tables(path, lambda tables=tables: tables)
    return _merge_parts(parts, out, batch_size, len(rows))


def _parts_folder(out: Path, fingerprint: str) -> Path:
    """The parts folder of ``out``, emptied first if its parts belong to another fingerprint."""
    parts = out.parent / f".{out.name}.parts"
    if _read_fingerprint(parts) != fingerprint:
        shutil.rmtree(parts, ignore_errors=True)
        write_json_atomic(parts / "fingerprint.json", {"fingerprint": fingerprint})
    return parts


def _merge_parts(parts: Path, out: Path, batch_size: int, n_rows: int) -> pd.DataFrame:
    """Stream every part file, in order, into ``out`` (atomically); remove the parts; read ``out``."""
    paths = sorted(parts.glob("[0-9]*.parquet"))
    schema = _unified([_upgraded_schema(pq.read_schema(path)) for path in paths])
    with atomic_path(out) as tmp, pq.ParquetWriter(tmp, schema) as writer:
        for path in paths:
            for batch in pq.ParquetFile(path).iter_batches(batch_size=batch_size):
                table = pa.Table.from_batches([batch])
                writer.write_table(table.rename_columns(_upgraded_names(table.column_names)).cast(schema))
    shutil.rmtree(parts)
    log.info("wrote %d predictions to %s", n_rows, out)
    return pd.read_parquet(out)


# -- scoring in workers (an executor) -------------------------------------------------------------------

#: rows per executor task when the caller does not say, at most (a detector that journals: one batch)
TASK_ROWS = 4096
#: ... and at least this many tasks for the rows, so that a small set still spreads over the workers
MIN_TASKS = 16


@dataclass(frozen=True)
class _Settings:
    """How every batch is scored, the same in this process and in each worker."""

    batch_size: int
    precision: str
    num_workers: int | None
    part_rows: int
    crop_transform: CropTransform | None


@dataclass(frozen=True)
class _Task:
    """Rows ``[first, stop)`` of the part that starts at row ``part``, to score in a worker.

    ``rows`` are rows ``[lo, lo + len(rows))``: the task's own, or, when features come from the cache, the
    task's rows widened to whole batches of the grid that starts at row 0, so that a worker extracts each
    feature in the same batch as the extraction of every row in one process would.
    """

    part: int
    first: int
    stop: int
    lo: int
    rows: pd.DataFrame


@dataclass(frozen=True)
class _TaskScorer:
    """The work of one task in a worker: its rows' output tables, one per batch (picklable)."""

    loader: Callable[[], Detector]
    settings: _Settings
    root: str
    cache_root: str | None

    def __call__(self, task: _Task) -> tuple[int, int, int, list[pa.Table]]:
        detector = self.loader()
        s = self.settings
        rows = task.rows.reset_index(drop=True)
        rows.attrs["root"] = self.root  # crop paths resolve as in the caller, in any working folder
        mine = slice(task.first - task.lo, task.stop - task.lo)
        features = None
        if self.cache_root is not None:
            # Shared by every worker: entries are written to a temporary file and renamed, so a reader
            # sees a whole entry or none, and two workers extracting the same one write equal files.
            features = FeatureCache(self.cache_root).get(
                detector,
                rows,
                batch_size=s.batch_size,
                precision=s.precision,
                num_workers=s.num_workers,
                progress=False,
            )[mine]
        part = rows.iloc[mine]
        detector.eval()
        device = detector_device(detector)
        tables = [
            _table(part.iloc[first : first + len(logits)], logits, details)
            for first, logits, details in _score(
                detector, part, features, s.batch_size, device, s.precision, s.num_workers, s.crop_transform
            )
        ]
        return task.part, task.first, task.stop, tables


@dataclass(frozen=True)
class _Given:
    """The loader of an executor that runs in this process: the detector already loaded here."""

    detector: Detector

    def __call__(self) -> Detector:
        return self.detector


@dataclass
class _Part:
    """A part in flight: the next row to take, and tables come back early (by first row)."""

    start: int
    stop: int
    next: int
    early: dict[int, tuple[int, list[pa.Table]]] = field(default_factory=dict)
    tables: list[pa.Table] = field(default_factory=list)


def _predict_with_executor(
    detector: Detector,
    rows: pd.DataFrame,
    executor: Executor,
    loader: Callable[[], Detector] | None,
    settings: _Settings,
    *,
    out: Path | None,
    cache: FeatureCache | None,
    task_rows: int | None,
    progress: bool,
) -> pd.DataFrame:
    """:func:`predict_manifest` with the batches scored in ``executor``'s workers.

    Parts, fingerprint and the final file are those of scoring in this process. The rows of the parts not
    finished are cut into tasks of whole batches, aligned as this process would batch them: at the part's
    start (or, for a journalled part, at its first row not journalled) and, for cached features, on the
    grid from row 0 of the extraction of all rows. A worker loads the detector once per process and
    returns its rows' tables; this process puts each part's tables in order and writes the part file
    as soon as the part is whole. A detector that journals gets one batch per task by default, and each
    batch is appended to the part's journal as soon as the batches before it are in: the journal and its
    resume are those of scoring here. Killing the job loses only the tasks in flight and the parts
    not yet whole (non-journalled); a rerun scores only the parts without a file.
    """
    n, bs = len(rows), settings.batch_size
    if executor.in_process:
        loader = _Given(detector)
    elif loader is None:
        raise CrossfakeError(
            f"scoring with the {executor.name} executor needs a loader, a picklable function that loads "
            "the detector in a worker (crossfake.scoring.score_run makes one from the run directory)"
        )
    journalled = detector.journal_predictions
    cache_root = None
    if cache is not None and settings.crop_transform is not None:
        log.info("a crop transform is given: scoring images, not cached features")
    elif cache is not None and detector.supports_feature_cache:
        cache_root = str(cache.root.absolute())
    # From the number of rows, never from what is left: a resumed run cuts tasks (and cache entries) alike.
    default = bs if journalled else min(TASK_ROWS, math.ceil(n / MIN_TASKS))
    step = bs * max(1, math.ceil((task_rows or default) / bs))
    missing = [c for c in (*ID_COLUMNS, "path") if c not in rows.columns]
    if missing:
        raise CrossfakeError(f"the rows to score have no column {', '.join(missing)}")
    slim = rows[[*ID_COLUMNS, "path"]]  # what a worker needs, and nothing it does not

    parts_dir = None
    parts: dict[int, _Part] = {}
    if out is None:
        if n:
            parts[0] = _Part(0, n, 0)
    else:
        fingerprint = _fingerprint(detector, rows, settings.precision, settings.part_rows, settings.crop_transform)
        parts_dir = _parts_folder(out, fingerprint)
        for start in range(0, n, settings.part_rows):
            stop = min(start + settings.part_rows, n)
            path = parts_dir / f"{start:012d}.parquet"
            if path.is_file():  # scored by an earlier, interrupted call
                continue
            done = 0
            if journalled:
                ids = rows["sample_id"].iloc[start:stop].astype(str).tolist()
                done = _valid_journal_rows(path.with_suffix(".jsonl"), ids)
            parts[start] = _Part(start, stop, start + done)
    tasks = []
    for part in parts.values():
        for first in range(part.next, part.stop, step):
            stop = min(first + step, part.stop)
            lo, hi = (first // bs * bs, min(math.ceil(stop / bs) * bs, n)) if cache_root else (first, stop)
            tasks.append(_Task(part.start, first, stop, lo, slim.iloc[lo:hi]))
    log.info(
        "scoring %d rows in %d tasks of %d parts with the %s executor%s",
        sum(t.stop - t.first for t in tasks),
        len(tasks),
        len(parts),
        executor.name,
        "" if out is None else f" ({-(-n // settings.part_rows) - len(parts)} parts finished earlier)",
    )

    def finish(part: _Part) -> None:
        if parts_dir is None:
            return
        path = parts_dir / f"{part.start:012d}.parquet"
        if journalled:
            journal = path.with_suffix(".jsonl")
            _write_tables(path, lambda: _journal_tables(journal, bs))
            journal.unlink()
        else:
            _write_tables(path, lambda: part.tables)
        part.tables = []

    scorer = _TaskScorer(loader, settings, str(Path(rows.attrs.get("root", ".")).absolute()), cache_root)
    remaining = sum(t.stop - t.first for t in tasks)
    with tqdm(total=n, initial=n - remaining, desc="scoring", unit="img", disable=not progress) as bar:
        for part in parts.values():
            if part.next == part.stop:  # a complete journal, not yet converted
                finish(part)
        results = executor.map_unordered(scorer, tasks)
        try:
            for start, first, stop, tables in results:
                part = parts[start]
                part.early[first] = (stop, tables)
                bar.update(stop - first)
                while part.next in part.early:
                    stop, tables = part.early.pop(part.next)
                    if journalled and parts_dir is not None:
                        journal = parts_dir / f"{part.start:012d}.jsonl"
                        _append_to_journal(journal, tables, None)
                    else:
                        part.tables.extend(tables)
                    part.next = stop
                if part.next == part.stop:
                    finish(part)
        except WorkerDied as e:
            raise CrossfakeError(
                f"{e}. The parts scored so far are kept; run the same command again to score the others"
            ) from None
        finally:
            results.close()

    if parts_dir is None:
        tables = parts[0].tables if parts else []
        if not tables:
            return SCHEMA.empty_table().to_pandas()
        return pa.concat_tables(tables, promote_options="permissive").to_pandas()
    return _merge_parts(parts_dir, out, bs, n)


def _score(
    detector: Detector,
    rows: pd.DataFrame,
    features: np.ndarray | None,
    batch_size: int,
    device: torch.device,
    precision: str,
    num_workers: int | None,
    crop_transform: CropTransform | None = None,
) -> Iterator[tuple[int, np.ndarray, dict[str, list]]]:
    """(position of the batch's first row in ``rows``, its logits, its detail columns) per batch, in order."""
    if features is not None:
        for first in range(0, len(rows), batch_size):
            chunk = torch.from_numpy(np.array(features[first : first + batch_size])).to(device)
            with torch.no_grad(), autocast(device, precision):
                logits = detector.head(chunk)
            yield first, logits.float().cpu().numpy(), {}
        return
    loader = make_loader(
        FaceCropDataset(rows, detector.transform, crop_transform=crop_transform),
        batch_size,
        Collate(detector.collate),
        num_workers=num_workers,
        gpu=device.type == "cuda",
    )
    for inputs, _, idx in loader:
        with autocast(device, precision):
            inputs = send_to_device(inputs, device)
            logits, details = detector.predict_details(inputs)
        yield int(idx[0]), logits.float().cpu().numpy(), details


def _table(rows: pd.DataFrame, logits: np.ndarray, details: dict[str, list] | None = None) -> pa.Table:
    columns = {c: rows[c].to_numpy() for c in ID_COLUMNS}
    columns["score"] = sigmoid(logits)
    columns["logit"] = logits.astype(np.float32)
    table = pa.Table.from_pydict(columns, schema=SCHEMA)
    for name, values in (details or {}).items():
        if name in SCHEMA.names:
            raise ValueError(f"predict_details column {name!r} would replace a prediction column")
        table = table.append_column(name, pa.array(values))
    return table


def _upgraded_names(names: list[str]) -> list[str]:
    """Column names of a part written before the rename of the ID columns, under today's names."""
    return [_OLD_ID_COLUMNS.get(n, n) if _OLD_ID_COLUMNS.get(n) not in names else n for n in names]


def _upgraded_schema(schema: pa.Schema) -> pa.Schema:
    names = _upgraded_names(schema.names)
    return pa.schema([f.with_name(n) for f, n in zip(schema, names, strict=True)], metadata=schema.metadata)


def _unified(schemas: list[pa.Schema]) -> pa.Schema:
    """One schema for tables whose detail columns may differ in type: a batch where a column was all
    null has the null type, which the other batches' type replaces."""
    return pa.unify_schemas(schemas, promote_options="permissive") if schemas else SCHEMA


def _write_tables(path: Path, tables: Callable[[], Iterable[pa.Table]]) -> None:
    """Write the tables ``tables()`` yields to one Parquet file, atomically, in one unified schema.

    ``tables`` is called twice (schemas, then data), so only one table is ever held in memory.
    """
    schema = _unified([t.schema for t in tables()])
    with atomic_path(path) as tmp, pq.ParquetWriter(tmp, schema) as writer:
        for table in tables():
            writer.write_table(table.cast(schema))


def _valid_journal_rows(journal: Path, expected_ids: list[str]) -> int:
    """How many rows of a part ``journal`` holds, cut back to its valid prefix.

    A journal line counts if it is complete JSON for the next expected sample id; anything after the first
    line that is not (a line torn by a crash, rows of other data) is truncated away before appending.
    """
    if not journal.is_file():
        return 0
    good = size = 0
    with journal.open("rb") as f:
        for line in f:
            if good == len(expected_ids) or not line.endswith(b"\n"):
                break
            try:
                row = json.loads(line)
            except ValueError:
                break
            if not isinstance(row, dict) or row.get("sample_id") != expected_ids[good]:
                break
            good, size = good + 1, size + len(line)
    with journal.open("r+b") as f:
        f.truncate(size)
    if good:
        log.info("resuming %s: %d rows already scored", journal, good)
    return good


def _append_to_journal(journal: Path, tables: Iterable[pa.Table], bar: tqdm | None) -> None:
    """Append each table's rows to ``journal`` as JSON lines, durable (flush + fsync) once per table."""
    journal.parent.mkdir(parents=True, exist_ok=True)
    with journal.open("a", encoding="utf-8") as f:
        for table in tables:
            f.write("".join(json.dumps(row) + "\n" for row in table.to_pylist()))
            f.flush()
            os.fsync(f.fileno())
            if bar is not None:
                bar.update(table.num_rows)


def _upgraded_row(row: dict) -> dict:
    """A journalled row written before the rename of the ID columns, under today's names."""
    if not any(old in row for old in _OLD_ID_COLUMNS):
        return row
    return dict(zip(_upgraded_names(list(row)), row.values(), strict=True))


def _journal_tables(journal: Path, batch_size: int) -> Iterator[pa.Table]:
    """The journal's rows as tables of at most ``batch_size`` rows, with the prediction columns' types."""

    def table(chunk: list[dict]) -> pa.Table:
        chunk = [_upgraded_row(r) for r in chunk]
        columns = {f.name: pa.array([r[f.name] for r in chunk], f.type) for f in SCHEMA}
        extra = [name for name in chunk[0] if name not in SCHEMA.names]
        return pa.table({**columns, **{name: pa.array([r.get(name) for r in chunk]) for name in extra}})

    chunk: list[dict] = []
    with journal.open(encoding="utf-8") as f:
        for line in f:
            chunk.append(json.loads(line))
            if len(chunk) == batch_size:
                yield table(chunk)
                chunk = []
    if chunk:
        yield table(chunk)


def _fingerprint(
    detector: Detector,
    rows: pd.DataFrame,
    precision: str,
    part_rows: int,
    crop_transform: CropTransform | None = None,
) -> str:
    """What the part files depend on: the model (config + trained weights), the rows, the settings, and a
    crop transform (by its output on the probe image, so e.g. two JPEG qualities differ)."""
    h = hashlib.sha256()
    h.update(json.dumps([detector.config.model_dump(mode="json"), precision, part_rows]).encode())
    if crop_transform is not None:
        h.update(probe_digest(crop_transform))
    for name, tensor in sorted(detector.trainable_state_dict().items()):
        h.update(name.encode())
        h.update(tensor.float().numpy().tobytes())
    h.update("\n".join(rows["sample_id"].astype(str)).encode())
    return h.hexdigest()


def _read_fingerprint(parts: Path) -> str | None:
    try:
        return json.loads((parts / "fingerprint.json").read_text())["fingerprint"]
    except (OSError, ValueError, KeyError):
        return None
