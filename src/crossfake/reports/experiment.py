"""Reading an experiment run directory (format ``crossfake-experiment/1``), as ``crossfake run`` writes it.

The layout, the record (:class:`Experiment`, :class:`MethodEntry`, :class:`Status`) and its parsing live
in :mod:`crossfake.runs.experiment`, the one model the runner writes and the report reads; they are
re-exported here. This module adds what only the report needs: reading a predictions file.

Only ``experiment.json`` is required to be well formed: a method entry whose predictions are missing or
unreadable is reported as such (see :attr:`MethodEntry.issues`), not raised.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from crossfake.runs.experiment import (
    EXPERIMENT_FORMAT,
    EXPERIMENT_JSON,
    EXPERIMENT_YAML,
    REPORT_DIR,
    SPLIT_FILE,
    STATUSES,
    UNDECLARED_COLUMNS,
    VAL_PREDICTIONS,
    Experiment,
    MethodEntry,
    Status,
    load_experiment,
    relative_name,
)
from crossfake.utils.errors import CrossfakeError


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


__all__ = [
    "EXPERIMENT_FORMAT",
    "EXPERIMENT_JSON",
    "EXPERIMENT_YAML",
    "REPORT_DIR",
    "SPLIT_FILE",
    "STATUSES",
    "UNDECLARED_COLUMNS",
    "VAL_PREDICTIONS",
    "Experiment",
    "MethodEntry",
    "Status",
    "load_experiment",
    "read_predictions",
    "relative_name",
]
