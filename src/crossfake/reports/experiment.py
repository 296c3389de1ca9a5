"""Reading an experiment run directory (format ``crossfake-experiment/1``), as ``crossfake run`` writes it.

::

    RUN/
      experiment.yaml      the resolved experiment config, shown verbatim in the report
      experiment.json      name, description, provenance, split, test sets and one entry per method
      split.parquet        the split manifest (one row per face crop, with a ``split`` column)
      methods/<entry>/     a `crossfake train` run dir with val_predictions.parquet and
                           predictions_<test set>.parquet
      report/              written by :func:`crossfake.reports.build_report`

Only ``experiment.json`` is required to be well formed: a method entry whose predictions are missing or
unreadable is reported as such (see :attr:`MethodEntry.issues`), not raised.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from crossfake.data.predictions import PredictionColumns
from crossfake.utils.errors import CrossfakeError

EXPERIMENT_FORMAT = "crossfake-experiment/1"
EXPERIMENT_JSON = "experiment.json"
EXPERIMENT_YAML = "experiment.yaml"
SPLIT_FILE = "split.parquet"
REPORT_DIR = "report"
VAL_PREDICTIONS = "val_predictions.parquet"
#: Statuses of a method entry in ``experiment.json``; the report adds ``missing`` (done, no predictions).
STATUSES = ("done", "failed", "pending")
#: experiment.json entries written before methods declared their prediction columns (crossfake 0.1): the
#: columns its one explaining method (the Qwen2.5-VL zero-shot detector) wrote.
UNDECLARED_COLUMNS = PredictionColumns(
    explanation="reasoning", details=("verdict", "confidence", "artifacts"), raw=("raw_answer", "parse_error"),
    parsed="parsed",
)


@dataclass
class MethodEntry:
    """One method of an experiment, as recorded in ``experiment.json`` (all fields but ``name`` optional).

    Attributes:
        name: the entry name (unique in the experiment; e.g. ``lora_r8``).
        status: ``done``, ``failed`` or ``pending``.
        error: one-line message of a failure.
        method: the method class (registry name), e.g. ``lora``.
        run_dir: the method's `crossfake train` run directory, resolved against RUN.
        parameters: ``trainable``, ``total``, ``trainable_percent``.
        wall_time_s: ``train`` and ``test`` seconds.
        threshold: the decision threshold chosen on validation, None when unknown.
        threshold_rule: how it was chosen.
        val_auc: validation AUC of the selected checkpoint.
        columns: what the method's extra prediction columns are (its explanation, details, raw answer).
        predictions: test set name -> predictions file, resolved against RUN.
        issues: problems the report found (missing predictions, unreadable files), one line each.
    """

    name: str
    status: str = "pending"
    error: str | None = None
    method: str | None = None
    run_dir: Path | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    wall_time_s: dict[str, float] = field(default_factory=dict)
    threshold: float | None = None
    threshold_rule: str | None = None
    val_auc: float | None = None
    columns: PredictionColumns = field(default_factory=PredictionColumns)
    predictions: dict[str, Path] = field(default_factory=dict)
    issues: list[str] = field(default_factory=list)


@dataclass
class Experiment:
    """A parsed experiment run directory.

    Attributes:
        run_dir: the RUN folder.
        record: ``experiment.json`` as read.
        name, description: from ``experiment.json``.
        provenance: versions, git state, command line and time of the run.
        split: ``spec`` and ``manifest`` (resolved against RUN) of the split.
        test_sets: test set name -> ``{"split": ..., "sources": [...]}``.
        methods: entry name -> :class:`MethodEntry`, in the file's order.
        config_text: ``experiment.yaml`` verbatim, or None when it is missing.
    """

    run_dir: Path
    record: dict[str, Any]
    name: str
    description: str
    provenance: dict[str, Any]
    split: dict[str, Any]
    test_sets: dict[str, dict[str, Any]]
    methods: dict[str, MethodEntry]
    config_text: str | None

    @property
    def report_dir(self) -> Path:
        return self.run_dir / REPORT_DIR

    @property
    def split_path(self) -> Path:
        return self.run_dir / str(self.split.get("manifest") or SPLIT_FILE)


def _expect(value: Any, kind: type | tuple[type, ...], what: str, where: Path) -> Any:
    if not isinstance(value, kind):
        names = " or ".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))
        raise CrossfakeError(f"{where}: {what} must be a {names}, not {type(value).__name__} ({value!r:.80})")
    return value


def _number(value: Any, what: str, where: Path) -> float | None:
    if value is None:
        return None
    _expect(value, (int, float), what, where)
    return float(value) if math.isfinite(value) else None


def _columns(raw: dict[str, Any], what: str, where: Path) -> PredictionColumns:
    """The method's declared prediction columns; an entry written before methods declared them gets the
    columns crossfake's VLM wrote then (used only where a predictions table has them)."""
    if "prediction_columns" not in raw:
        return UNDECLARED_COLUMNS
    declared = raw["prediction_columns"]
    return PredictionColumns.from_dict(_expect(declared, dict, what, where)) if declared else PredictionColumns()


def _entry(name: str, raw: Any, run_dir: Path, where: Path) -> MethodEntry:
    raw = _expect(raw, dict, f"methods.{name}", where)
    status = raw.get("status", "pending")
    if status not in STATUSES:
        raise CrossfakeError(f"{where}: methods.{name}.status must be one of {list(STATUSES)}, not {status!r}")
    predictions = _expect(raw.get("predictions") or {}, dict, f"methods.{name}.predictions", where)
    return MethodEntry(
        name=name,
        status=status,
        error=raw.get("error"),
        method=raw.get("method"),
        run_dir=run_dir / raw["run_dir"] if raw.get("run_dir") else None,
        parameters=_expect(raw.get("parameters") or {}, dict, f"methods.{name}.parameters", where),
        wall_time_s=_expect(raw.get("wall_time_s") or {}, dict, f"methods.{name}.wall_time_s", where),
        threshold=_number(raw.get("threshold"), f"methods.{name}.threshold", where),
        threshold_rule=raw.get("threshold_rule"),
        val_auc=_number(raw.get("val_auc"), f"methods.{name}.val_auc", where),
        columns=_columns(raw, f"methods.{name}.prediction_columns", where),
        predictions={str(t): run_dir / str(p) for t, p in predictions.items()},
    )


def load_experiment(run_dir: str | Path) -> Experiment:
    """Parse RUN/experiment.json (and experiment.yaml, verbatim).

    Raises:
        CrossfakeError: RUN or its experiment.json is missing, not JSON, of another format, or lacks
            ``name``, ``test_sets`` or ``methods`` of the right types; each message names the file and what
            was expected there.
    """
    run_dir = Path(run_dir).expanduser()
    if not run_dir.is_dir():
        raise CrossfakeError(f"no experiment run directory at {run_dir}")
    where = run_dir / EXPERIMENT_JSON
    if not where.is_file():
        raise CrossfakeError(
            f"{run_dir} is not an experiment run directory: expected {where}, written by `crossfake run`"
        )
    try:
        record = json.loads(where.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CrossfakeError(f"{where} is not valid JSON: {e}") from None
    _expect(record, dict, "the top level", where)
    if record.get("format") != EXPERIMENT_FORMAT:
        raise CrossfakeError(f"{where}: expected format {EXPERIMENT_FORMAT!r}, found {record.get('format')!r}")
    for key, kind in (("name", str), ("test_sets", dict), ("methods", dict)):
        if key not in record:
            raise CrossfakeError(f"{where}: missing key {key!r}")
        _expect(record[key], kind, key, where)
    test_sets = {
        str(name): _expect(spec, dict, f"test_sets.{name}", where) for name, spec in record["test_sets"].items()
    }
    methods = {str(name): _entry(str(name), raw, run_dir, where) for name, raw in record["methods"].items()}
    yaml_path = run_dir / EXPERIMENT_YAML
    return Experiment(
        run_dir=run_dir,
        record=record,
        name=record["name"],
        description=str(record.get("description") or ""),
        provenance=_expect(record.get("provenance") or {}, dict, "provenance", where),
        split=_expect(record.get("split") or {}, dict, "split", where),
        test_sets=test_sets,
        methods=methods,
        config_text=yaml_path.read_text(encoding="utf-8") if yaml_path.is_file() else None,
    )


def relative_name(path: Path, run_dir: Path) -> str:
    """``path`` relative to ``run_dir`` when inside it (so reports do not depend on where RUN lies)."""
    try:
        return str(path.relative_to(run_dir))
    except ValueError:
        return str(path)


def read_predictions(path: Path, run_dir: Path | None = None) -> pd.DataFrame:
    """A predictions Parquet file, or a CrossfakeError naming the file (relative to ``run_dir`` if given)
    and why it cannot be used."""
    name = path if run_dir is None else relative_name(path, run_dir)
    if not path.is_file():
        raise CrossfakeError(f"predictions file missing: expected {name}")
    try:
        df = pd.read_parquet(path)
    except Exception as e:  # pyarrow raises several types for a damaged file
        raise CrossfakeError(f"cannot read predictions {name}: {e}") from None
    missing = [c for c in ("video_id", "label", "score") if c not in df.columns]
    if missing:
        raise CrossfakeError(f"predictions {name} lack column(s) {missing}; columns: {list(df.columns)}")
    return df
