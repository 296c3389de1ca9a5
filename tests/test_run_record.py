"""run.json as one typed record: what the trainer writes reads back the same, old records still read, and a
broken one is refused naming the file and the key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from crossfake.data.predictions import PredictionColumns
from crossfake.runs.record import RUN_FORMAT, RunRecord
from crossfake.utils.errors import CrossfakeError

WHERE = Path("/runs/x/run.json")


def _raw(**changes: object) -> dict:
    raw = {
        "format": RUN_FORMAT,
        "crossfake_version": "0.1.0",
        "created_utc": "2026-12-02T00:00:00+00:00",
        "command": ["crossfake", "train", "lora"],
        "git": {"commit": "abc", "dirty": False},
        "method": "lora",
        "config": {"method": {"name": "lora"}},
        "manifest": "/data/split.parquet",
        "manifest_sha256": "f" * 64,
        "crop": {"face_detector": "yunet", "margin": 1.3},
        "data": {"train": {"rows": 10}},
        "parameters": {"trainable": 10, "total": 100, "trainable_percent": 10.0},
        "lr": 1e-4,
        "precision": "fp32",
        "device": "cpu",
        "num_processes": 1,
        "feature_cache": None,
        "pseudo_fakes": None,
        "steps": 12,
        "best_step": 8,
        "best_val_auc": 0.75,
        "val_metrics": {"auc": 0.75, "eer": 0.3},
        "threshold": 0.42,
        "threshold_rule": "EER on validation",
        "threshold_name": "validation EER threshold",
        "prediction_columns": {"explanation": "reasoning", "details": ["verdict"], "raw": [], "parsed": None},
        "history": [{"step": 8, "val_auc": 0.75}],
        "wall_time_s": 3.5,
    }
    raw.update(changes)
    return raw


def test_a_record_reads_typed_and_writes_back_the_same_json() -> None:
    raw = _raw(future_key={"kept": True})
    record = RunRecord.from_json(raw, WHERE)
    assert record.method == "lora" and record.best_step == 8 and record.threshold == 0.42
    assert record.prediction_columns == PredictionColumns(explanation="reasoning", details=("verdict",))
    assert record.provenance["git"] == {"commit": "abc", "dirty": False}
    assert record.extra == {"future_key": {"kept": True}}
    assert record.to_json() == raw and list(record.to_json()) == list(raw)  # the keys in run.json's order
    assert json.loads(json.dumps(record.to_json())) == raw


def test_a_record_of_an_older_version_reads_with_the_new_keys_missing() -> None:
    raw = _raw()
    for key in ("crop", "threshold_name", "prediction_columns", "threshold_rule"):
        del raw[key]
    record = RunRecord.from_json(raw, WHERE)
    assert record.crop is None and record.threshold_name is None and record.prediction_columns is None


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"format": "crossfake-run/0"}, "expected 'crossfake-run/1'"),
        ({"threshold": "0.4"}, "`threshold` must be a number"),
        ({"steps": True}, "`steps` must be an integer"),
        ({"method": None}, "`method` must be a string"),
        ({"crop": [1, 2]}, "`crop` must be a JSON object"),
        ({"prediction_columns": {"details": 5}}, "`prediction_columns` is malformed"),
    ],
)
def test_a_broken_record_names_the_file_and_the_key(changes: dict, message: str) -> None:
    with pytest.raises(CrossfakeError, match=message) as e:
        RunRecord.from_json(_raw(**changes), WHERE)
    assert str(WHERE) in str(e.value)


def test_a_record_that_is_not_an_object_is_refused() -> None:
    with pytest.raises(CrossfakeError, match="expected a JSON object, not list"):
        RunRecord.from_json([1, 2], WHERE)


def test_a_record_without_a_result_is_not_a_finished_run() -> None:
    raw = _raw()
    del raw["best_val_auc"]
    with pytest.raises(CrossfakeError, match="lacks `best_val_auc`.*not the record of a finished run"):
        RunRecord.from_json(raw, WHERE)
