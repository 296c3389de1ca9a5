"""Score manifest rows with a detector, streaming: memory stays bounded whatever the number of frames.

Report 1 had to cut its Face2Face test set from 509,084 to 100,000 frames because its scoring held every
image in memory. Here images are loaded, scored and written batch by batch: at most one batch of images
(or of cached features) and one batch of output rows is in memory at a time.

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

Output columns: ``sample_id, video_id, dataset, method, label`` (copied from the manifest), ``logit``
(the detector's output, float32) and ``score`` = sigmoid(logit) = p(fake), computed in float64 so that
scores only tie when logits tie.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from accelerate.utils import send_to_device
from tqdm.auto import tqdm

from crossfake.methods.base import Detector
from crossfake.training.config import autocast, resolve_precision
from crossfake.training.data import Collate, FaceCropDataset, make_loader
from crossfake.training.features import FeatureCache
from crossfake.utils.io import atomic_path, write_json_atomic
from crossfake.utils.logging import get_logger

log = get_logger("evaluation.predict")

#: Columns copied from the manifest, then the model's outputs.
ID_COLUMNS: tuple[str, ...] = ("sample_id", "video_id", "dataset", "method", "label")
SCHEMA = pa.schema(
    [
        ("sample_id", pa.string()),
        ("video_id", pa.string()),
        ("dataset", pa.string()),
        ("method", pa.string()),
        ("label", pa.int8()),
        ("score", pa.float64()),
        ("logit", pa.float32()),
    ]
)


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

    Returns:
        The predictions, one row per manifest row, in the manifest's order.
    """
    device = _device(detector)
    precision = resolve_precision(precision, device)
    rows = manifest_df.reset_index(drop=True)
    features = None
    if cache is not None and detector.supports_feature_cache:
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
    parts = out.parent / f".{out.name}.parts"
    fingerprint = _fingerprint(detector, rows, precision, part_rows)
    if _read_fingerprint(parts) != fingerprint:
        shutil.rmtree(parts, ignore_errors=True)
        write_json_atomic(parts / "fingerprint.json", {"fingerprint": fingerprint})
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
            with atomic_path(path) as tmp, pq.ParquetWriter(tmp, SCHEMA) as writer:
                for table in batches(start, stop):
                    writer.write_table(table)
                    bar.update(table.num_rows)
    paths = sorted(parts.glob("[0-9]*.parquet"))
    schema = _unified([pq.read_schema(path) for path in paths])
    with atomic_path(out) as tmp, pq.ParquetWriter(tmp, schema) as writer:
        for path in paths:
            for batch in pq.ParquetFile(path).iter_batches(batch_size=batch_size):
                writer.write_table(pa.Table.from_batches([batch]).cast(schema))
    shutil.rmtree(parts)
    log.info("wrote %d predictions to %s", len(rows), out)
    return pd.read_parquet(out)


def _device(detector: Detector) -> torch.device:
    # A detector whose model runs elsewhere (a VLM behind an HTTP server) has no parameters: the CPU.
    param = next(detector.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


def _score(
    detector: Detector,
    rows: pd.DataFrame,
    features: np.ndarray | None,
    batch_size: int,
    device: torch.device,
    precision: str,
    num_workers: int | None,
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
        FaceCropDataset(rows, detector.transform),
        batch_size,
        Collate(detector.collate),
        num_workers=num_workers,
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


def _append_to_journal(journal: Path, tables: Iterable[pa.Table], bar: tqdm) -> None:
    """Append each table's rows to ``journal`` as JSON lines, durable (flush + fsync) once per table."""
    journal.parent.mkdir(parents=True, exist_ok=True)
    with journal.open("a", encoding="utf-8") as f:
        for table in tables:
            f.write("".join(json.dumps(row) + "\n" for row in table.to_pylist()))
            f.flush()
            os.fsync(f.fileno())
            bar.update(table.num_rows)


def _journal_tables(journal: Path, batch_size: int) -> Iterator[pa.Table]:
    """The journal's rows as tables of at most ``batch_size`` rows, with the prediction columns' types."""

    def table(chunk: list[dict]) -> pa.Table:
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


def _fingerprint(detector: Detector, rows: pd.DataFrame, precision: str, part_rows: int) -> str:
    """What the part files depend on: the model (config + trained weights), the rows, the settings."""
    h = hashlib.sha256()
    h.update(json.dumps([detector.config.model_dump(mode="json"), precision, part_rows]).encode())
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
