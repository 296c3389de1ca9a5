"""The experiment run directory (format ``crossfake-experiment/1``) and its record, ``experiment.json``.

::

    RUN/
      experiment.yaml      the resolved experiment config (shown verbatim in the report)
      experiment.json      the record: name, description, provenance, split, test sets, executor, other
                           corpora, and one entry per method (status, error, parameters, wall times,
                           validation threshold and AUC, prediction columns, prediction files)
      split.parquet        the split manifest (one row per face crop, with a ``split`` column)
      methods/<entry>/     a `crossfake train` run dir with val_predictions.parquet and
                           predictions_<test set>.parquet (error.log when the entry failed)
      report/              written by :func:`crossfake.reports.build_report`

This module is the one model of that record: the experiment runner (:mod:`crossfake.experiments.runner`)
builds an :class:`Experiment` of :class:`MethodEntry` and writes it with :func:`write_experiment`; the
reports (:mod:`crossfake.reports`) read it back with :func:`load_experiment`. A method's status is a
:class:`Status`; paths in the typed record are resolved against RUN and written relative to it.

Files written before this module (plain dicts, entries of crossfake 0.1 without ``prediction_columns``)
load the same, and so do test sets written before the vocabulary rename (``sources``, read as
``manipulations``); a file that is not well formed raises a :class:`CrossfakeError` naming the file and the
key.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from crossfake.data.predictions import PredictionColumns
from crossfake.utils.errors import CrossfakeError
from crossfake.utils.io import write_json_atomic

EXPERIMENT_FORMAT = "crossfake-experiment/1"
EXPERIMENT_JSON = "experiment.json"
EXPERIMENT_YAML = "experiment.yaml"
SPLIT_FILE = "split.parquet"
METHODS_DIR = "methods"
ERROR_FILE = "error.log"
REPORT_DIR = "report"
VAL_PREDICTIONS = "val_predictions.parquet"
#: experiment.json entries written before methods declared their prediction columns (crossfake 0.1): the
#: columns its one explaining method (the Qwen2.5-VL zero-shot detector) wrote.
UNDECLARED_COLUMNS = PredictionColumns(
    explanation="reasoning", details=("verdict", "confidence", "artifacts"), raw=("raw_answer", "parse_error"),
    parsed="parsed",
)


class Status(StrEnum):
    """The status of a method entry in ``experiment.json`` (the report adds ``missing``: done, but no usable
    predictions)."""

    done = "done"
    failed = "failed"
    pending = "pending"


#: The statuses, in order, as the strings experiment.json holds.
STATUSES: tuple[str, ...] = tuple(s.value for s in Status)

_ENTRY_KEYS = ("status", "error", "method", "run_dir", "parameters", "wall_time_s", "threshold", "threshold_rule",
               "val_auc", "prediction_columns", "predictions")
_EXPERIMENT_KEYS = ("format", "name", "description", "provenance", "split", "test_sets", "methods", "executor",
                    "corpora")


def relative_name(path: Path, run_dir: Path) -> str:
    """``path`` relative to ``run_dir`` when inside it (so reports do not depend on where RUN lies)."""
    try:
        return str(path.relative_to(run_dir))
    except ValueError:
        return str(path)


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


def _test_set(spec: Any, name: str, where: Path) -> dict[str, Any]:
    """Test set ``name`` of ``where``: ``{"split": ..., "manipulations": [...]}``; a set written before the
    vocabulary rename names its manipulations ``sources``."""
    spec = _expect(spec, dict, f"test_sets.{name}", where)
    if "sources" not in spec:
        return spec
    if "manipulations" in spec:
        raise CrossfakeError(f"{where}: test_sets.{name} gives both `sources` (the old name) and `manipulations`")
    return {"manipulations" if key == "sources" else key: value for key, value in spec.items()}


def _columns(raw: dict[str, Any], what: str, where: Path) -> PredictionColumns:
    """The method's declared prediction columns; an entry written before methods declared them gets the
    columns crossfake's VLM wrote then (used only where a predictions table has them)."""
    if "prediction_columns" not in raw:
        return UNDECLARED_COLUMNS
    declared = raw["prediction_columns"]
    return PredictionColumns.from_dict(_expect(declared, dict, what, where)) if declared else PredictionColumns()


@dataclass
class MethodEntry:
    """One method of an experiment, as recorded in ``experiment.json`` (all fields but ``name`` optional).

    Attributes:
        name: the entry name (unique in the experiment; e.g. ``lora_r8``).
        status: done, failed or pending.
        error: one-line message of a failure.
        method: the method class (registry name), e.g. ``lora``.
        run_dir: the method's `crossfake train` run directory, resolved against RUN.
        parameters: ``trainable``, ``total``, ``trainable_percent``.
        wall_time_s: ``train`` and ``test`` seconds.
        threshold: the decision threshold chosen on validation, None when unknown.
        threshold_rule: how it was chosen.
        val_auc: validation AUC of the selected checkpoint.
        columns: what the method's extra prediction columns are (its explanation, details, raw answer);
            stored as ``prediction_columns``.
        predictions: test set name -> predictions file, resolved against RUN.
        issues: problems the report found (missing predictions, unreadable files), one line each; not part
            of experiment.json.
        extra: keys of the entry this version does not know, kept as they are.
    """

    name: str
    status: Status = Status.pending
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
    issues: list[str] = field(default_factory=list, compare=False)
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, name: str, raw: Any, run_dir: Path, where: Path) -> MethodEntry:
        """The entry ``methods.<name>`` of ``where`` (an experiment.json in ``run_dir``), validated."""
        raw = _expect(raw, dict, f"methods.{name}", where)
        status = raw.get("status", Status.pending.value)
        if status not in STATUSES:
            raise CrossfakeError(f"{where}: methods.{name}.status must be one of {list(STATUSES)}, not {status!r}")
        predictions = _expect(raw.get("predictions") or {}, dict, f"methods.{name}.predictions", where)
        return cls(
            name=name,
            status=Status(status),
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
            extra={k: v for k, v in raw.items() if k not in _ENTRY_KEYS},
        )

    def to_json(self, run_dir: Path) -> dict[str, Any]:
        """The entry as experiment.json stores it, paths relative to ``run_dir`` (RUN)."""
        return {
            "status": Status(self.status).value,
            "error": self.error,
            "method": self.method,
            "run_dir": relative_name(self.run_dir, run_dir) if self.run_dir is not None else None,
            "parameters": self.parameters,
            "wall_time_s": self.wall_time_s,
            "threshold": self.threshold,
            "threshold_rule": self.threshold_rule,
            "val_auc": self.val_auc,
            "prediction_columns": self.columns.to_dict() if self.columns != PredictionColumns() else None,
            "predictions": {t: relative_name(p, run_dir) for t, p in self.predictions.items()},
            **self.extra,
        }


@dataclass
class Experiment:
    """An experiment run directory and its record (``experiment.json``).

    Attributes:
        run_dir: the RUN folder.
        name, description: the experiment's.
        provenance: versions, git state, command line and time of the run.
        split: ``spec``, ``mode``, ``manifest`` (relative to RUN) and the identity ``audit`` of the split.
        test_sets: test set name -> ``{"split": ..., "manipulations": [...]}``.
        methods: entry name -> :class:`MethodEntry`, in the file's order.
        executor: what ran preparation and scoring (:meth:`crossfake.executors.Executor.describe`), None
            when not recorded.
        corpora: the other corpora's crops (cross-dataset): corpus name -> what was prepared.
        config_text: ``experiment.yaml`` verbatim, or None when it is missing (not part of experiment.json).
        extra: top-level keys this version does not know, kept as they are.
    """

    run_dir: Path
    name: str
    description: str = ""
    provenance: dict[str, Any] = field(default_factory=dict)
    split: dict[str, Any] = field(default_factory=dict)
    test_sets: dict[str, dict[str, Any]] = field(default_factory=dict)
    methods: dict[str, MethodEntry] = field(default_factory=dict)
    executor: dict[str, Any] | None = None
    corpora: dict[str, Any] = field(default_factory=dict)
    config_text: str | None = field(default=None, compare=False)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def path(self) -> Path:
        """RUN/experiment.json."""
        return self.run_dir / EXPERIMENT_JSON

    @property
    def report_dir(self) -> Path:
        return self.run_dir / REPORT_DIR

    @property
    def split_path(self) -> Path:
        return self.run_dir / str(self.split.get("manifest") or SPLIT_FILE)

    def failed(self) -> list[str]:
        """The entries that failed, in order."""
        return [name for name, entry in self.methods.items() if entry.status == Status.failed]

    def to_json(self) -> dict[str, Any]:
        return {
            "format": EXPERIMENT_FORMAT,
            "name": self.name,
            "description": self.description,
            "provenance": self.provenance,
            "split": self.split,
            "test_sets": self.test_sets,
            "methods": {name: entry.to_json(self.run_dir) for name, entry in self.methods.items()},
            "executor": self.executor,
            "corpora": self.corpora,
            **self.extra,
        }

    @classmethod
    def from_json(cls, record: Any, run_dir: Path, where: Path | None = None) -> Experiment:
        """The record ``record`` of ``run_dir``, validated; errors name ``where`` (default RUN/experiment.json).

        Raises:
            CrossfakeError: of another format, or lacking ``name``, ``test_sets`` or ``methods`` of the right
                types, or with a malformed entry; the message names the file and the key.
        """
        where = run_dir / EXPERIMENT_JSON if where is None else where
        _expect(record, dict, "the top level", where)
        if record.get("format") != EXPERIMENT_FORMAT:
            raise CrossfakeError(f"{where}: expected format {EXPERIMENT_FORMAT!r}, found {record.get('format')!r}")
        for key, kind in (("name", str), ("test_sets", dict), ("methods", dict)):
            if key not in record:
                raise CrossfakeError(f"{where}: missing key {key!r}")
            _expect(record[key], kind, key, where)
        test_sets = {str(name): _test_set(spec, str(name), where) for name, spec in record["test_sets"].items()}
        methods = {str(name): MethodEntry.from_json(str(name), raw, run_dir, where)
                   for name, raw in record["methods"].items()}
        executor = record.get("executor")
        return cls(
            run_dir=run_dir,
            name=record["name"],
            description=str(record.get("description") or ""),
            provenance=_expect(record.get("provenance") or {}, dict, "provenance", where),
            split=_expect(record.get("split") or {}, dict, "split", where),
            test_sets=test_sets,
            methods=methods,
            executor=None if executor is None else _expect(executor, dict, "executor", where),
            corpora=_expect(record.get("corpora") or {}, dict, "corpora", where),
            extra={k: v for k, v in record.items() if k not in _EXPERIMENT_KEYS},
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
    experiment = Experiment.from_json(record, run_dir, where)
    yaml_path = run_dir / EXPERIMENT_YAML
    experiment.config_text = yaml_path.read_text(encoding="utf-8") if yaml_path.is_file() else None
    return experiment


def write_experiment(experiment: Experiment) -> Path:
    """Write (atomically) RUN/experiment.json of ``experiment``; its path. experiment.yaml is written by the
    runner from the config, not from here."""
    write_json_atomic(experiment.path, experiment.to_json())
    return experiment.path


__all__ = [
    "ERROR_FILE",
    "EXPERIMENT_FORMAT",
    "EXPERIMENT_JSON",
    "EXPERIMENT_YAML",
    "METHODS_DIR",
    "REPORT_DIR",
    "SPLIT_FILE",
    "STATUSES",
    "UNDECLARED_COLUMNS",
    "VAL_PREDICTIONS",
    "Experiment",
    "MethodEntry",
    "Status",
    "load_experiment",
    "relative_name",
    "write_experiment",
]
