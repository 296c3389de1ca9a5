"""``experiment.json``: one typed record (:mod:`crossfake.runs.experiment`) that the runner writes and the
report reads; files of earlier versions still load, and a malformed one fails naming the file and key."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

import crossfake.reports as reports
from crossfake.data.predictions import PredictionColumns
from crossfake.experiments import ExperimentConfig, read_experiment, run_experiment, runner
from crossfake.runs.experiment import (
    STATUSES,
    UNDECLARED_COLUMNS,
    Experiment,
    MethodEntry,
    Status,
    load_experiment,
    write_experiment,
)
from crossfake.utils.errors import CrossfakeError

SRC = Path(__file__).resolve().parents[1] / "src" / "crossfake"

#: experiment.json as the runner wrote it before the typed record (plain dicts): a done entry declaring
#: its columns, a 0.1 entry without ``prediction_columns``, a failed one (status and error only) and a
#: pending one, plus the keys ``_data`` adds (executor, corpora, the split audit); its test set names its
#: manipulations ``sources``, as before the vocabulary rename.
LEGACY: dict[str, Any] = {
    "format": "crossfake-experiment/1",
    "name": "tiny",
    "description": "two methods",
    "provenance": {"crossfake_version": "0.2.0", "created_utc": "2026-01-01T00:00:00+00:00"},
    "split": {"spec": "report1", "mode": "videos", "manifest": "split.parquet",
              "audit": {"leaks": False, "overlaps": []}},
    "test_sets": {"NT": {"split": "test", "sources": ["real", "NeuralTextures"]}},
    "methods": {
        "linear_probe": {
            "status": "done", "error": None, "method": "linear_probe", "run_dir": "methods/linear_probe",
            "parameters": {"trainable": 513, "total": 1000, "trainable_percent": 51.3},
            "wall_time_s": {"train": 1.5, "test": 0.25}, "threshold": 0.4, "threshold_rule": "val EER",
            "val_auc": 0.9, "prediction_columns": None,
            "predictions": {"NT": "methods/linear_probe/predictions_NT.parquet"},
        },
        "vlm": {
            "status": "done", "error": None, "method": "vlm_zero_shot", "run_dir": "methods/vlm",
            "parameters": {"trainable": 0, "total": 7}, "wall_time_s": {"train": 0.0, "test": 9.0},
            "threshold": 0.5, "threshold_rule": None, "val_auc": 0.7,
            "predictions": {"NT": "methods/vlm/predictions_NT.parquet"},
        },
        "lora": {"status": "failed", "error": "RuntimeError: boom"},
        "later": {"status": "pending"},
    },
    "executor": {"name": "local", "workers": 0},
    "corpora": {"celebdf": {"videos": 4, "frames": 8}},
}


def _write(run_dir: Path, record: Any) -> Path:
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / "experiment.json"
    path.write_text(json.dumps(record))
    return path


def test_a_written_record_reads_back_equal(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    experiment = Experiment(
        run_dir=run, name="tiny", description="d", provenance={"crossfake_version": "0.2.0"},
        split={"spec": "report1", "mode": "identity", "manifest": "split.parquet", "audit": {"leaks": True}},
        test_sets={"NT": {"split": "test", "manipulations": ["real", "NeuralTextures"]}},
        methods={
            "vlm": MethodEntry("vlm", status=Status.done, method="vlm_zero_shot", run_dir=run / "methods" / "vlm",
                               parameters={"trainable": 0}, wall_time_s={"train": 0.0, "test": 1.0}, threshold=0.5,
                               threshold_rule="val EER", val_auc=0.75,
                               columns=PredictionColumns(explanation="why", details=("verdict",)),
                               predictions={"NT": run / "methods" / "vlm" / "predictions_NT.parquet"}),
            "probe": MethodEntry("probe", status=Status.done, run_dir=run / "methods" / "probe", threshold=0.25),
            "lora": MethodEntry("lora", status=Status.failed, error="RuntimeError: boom"),
            "later": MethodEntry("later"),
        },
        executor={"name": "ray", "workers": 2}, corpora={"celebdf": {"videos": 4}},
        extra={"added_by_a_later_version": [1, 2]},
    )
    write_experiment(experiment)
    back = load_experiment(run)
    assert back == experiment
    assert list(back.methods) == ["vlm", "probe", "lora", "later"]  # the file's order
    assert back.methods["lora"].status is Status.failed and back.methods["later"].status is Status.pending
    # Paths are stored relative to RUN, so a moved run directory reads the same.
    stored = json.loads((run / "experiment.json").read_text())
    assert stored["methods"]["vlm"]["predictions"] == {"NT": "methods/vlm/predictions_NT.parquet"}
    assert stored["methods"]["vlm"]["run_dir"] == "methods/vlm" and stored["methods"]["lora"]["status"] == "failed"
    assert back.to_json() == stored == experiment.to_json()


def test_a_file_of_the_dict_era_still_loads(tmp_path: Path) -> None:
    run = tmp_path / "run"
    _write(run, LEGACY)
    experiment = load_experiment(run)
    assert (experiment.name, experiment.description, experiment.config_text) == ("tiny", "two methods", None)
    assert experiment.executor == {"name": "local", "workers": 0}
    assert experiment.corpora == {"celebdf": {"videos": 4, "frames": 8}}
    assert experiment.split["audit"] == {"leaks": False, "overlaps": []}
    assert experiment.split_path == run / "split.parquet"
    assert experiment.test_sets == {"NT": {"split": "test", "manipulations": ["real", "NeuralTextures"]}}
    probe, vlm, lora, later = experiment.methods.values()
    assert probe.status is Status.done and probe.columns == PredictionColumns()
    assert probe.predictions == {"NT": run / "methods/linear_probe/predictions_NT.parquet"}
    assert probe.run_dir == run / "methods/linear_probe" and probe.wall_time_s["train"] == 1.5
    assert vlm.columns == UNDECLARED_COLUMNS  # crossfake 0.1: no prediction_columns key
    assert lora.status is Status.failed and lora.error == "RuntimeError: boom" and lora.run_dir is None
    assert later.status is Status.pending and later.predictions == {}
    assert experiment.failed() == ["lora"]
    # Rewritten in the typed form it keeps the same information (and the 0.1 entry's columns, made explicit).
    write_experiment(experiment)
    assert load_experiment(run) == experiment
    # The runner's view is the same typed record.
    run_view = read_experiment(run)
    assert run_view.entries["lora"].status == "failed" and run_view.failed() == ["lora"]
    assert run_view.experiment.corpora["celebdf"]["videos"] == 4
    assert run_view.entries["linear_probe"].threshold == 0.4
    # The reports read the same model: no second copy.
    assert reports.load_experiment is load_experiment and reports.MethodEntry is MethodEntry


def _error(tmp_path: Path, record: Any) -> str:
    run = tmp_path / "bad"
    path = _write(run, record)
    with pytest.raises(CrossfakeError) as e:
        load_experiment(run)
    message = str(e.value)
    assert str(path) in message, message
    return message


def _with_entry(**entry: Any) -> dict[str, Any]:
    return {**LEGACY, "methods": {"a": entry}}


def test_a_malformed_file_names_the_file_and_the_key(tmp_path: Path) -> None:
    message = _error(tmp_path, _with_entry(status="finished"))
    assert message.endswith("methods.a.status must be one of ['done', 'failed', 'pending'], not 'finished'")
    assert "methods.a.threshold must be a int or float, not str ('0.5')" in _error(
        tmp_path, _with_entry(status="done", threshold="0.5"))
    assert "methods.a.predictions must be a dict, not list" in _error(tmp_path, _with_entry(predictions=["x"]))
    assert "methods.a.prediction_columns must be a dict, not str" in _error(
        tmp_path, _with_entry(prediction_columns="reasoning"))
    assert "methods.a must be a dict, not str" in _error(tmp_path, {**LEGACY, "methods": {"a": "done"}})
    for key in ("name", "test_sets", "methods"):
        assert _error(tmp_path, {k: v for k, v in LEGACY.items() if k != key}).endswith(f"missing key {key!r}")
    assert "methods must be a dict, not list" in _error(tmp_path, {**LEGACY, "methods": []})
    assert "executor must be a dict, not str" in _error(tmp_path, {**LEGACY, "executor": "ray"})
    assert "corpora must be a dict, not list" in _error(tmp_path, {**LEGACY, "corpora": ["celebdf"]})
    assert "expected format 'crossfake-experiment/1', found 'crossfake-run/1'" in _error(
        tmp_path, {**LEGACY, "format": "crossfake-run/1"})
    assert "the top level must be a dict, not list" in _error(tmp_path, [LEGACY])
    assert "test_sets.NT must be a dict, not list" in _error(tmp_path, {**LEGACY, "test_sets": {"NT": ["real"]}})
    both = {"split": "test", "sources": ["real", "FaceSwap"], "manipulations": ["real", "FaceSwap"]}
    assert _error(tmp_path, {**LEGACY, "test_sets": {"NT": both}}).endswith(
        "test_sets.NT gives both `sources` (the old name) and `manipulations`")


def test_the_runner_records_failures_as_status_failed(tmp_path: Path, monkeypatch) -> None:
    config = ExperimentConfig.parse({
        "name": "tiny", "split": "report1",
        "defaults": {"method": {"backbone": "tiny"}, "train": {"epochs": 1}},
        "methods": {"linear_probe": {}, "lora": {"method": {"r": 2, "alpha": 4}}},
        "tests": {"NT": ["real", "NeuralTextures"]},
    })
    run_dir = tmp_path / "run"
    monkeypatch.setattr(runner, "_data", lambda config, run_dir, *a, **k: run_dir / "split.parquet")

    def fail(name: str) -> None:
        raise RuntimeError(f"no {name} today")

    result = run_experiment(config, run_dir, progress=False, report=False, on_method=fail, only=["lora"])
    assert result.failed() == ["lora"]
    lora, probe = result.entries["lora"], result.entries["linear_probe"]
    assert lora.status is Status.failed and lora.error == "RuntimeError: no lora today"
    assert probe.status is Status.pending  # not run (--only): keeps its state
    assert "no lora today" in (run_dir / "methods" / "lora" / "error.log").read_text()
    again = read_experiment(run_dir)
    assert again.experiment == result.experiment
    assert again.experiment.executor is not None and "name" in again.experiment.executor
    assert json.loads((run_dir / "experiment.json").read_text())["methods"]["lora"]["status"] == "failed"


def test_a_run_directory_of_the_old_vocabulary_resumes(tmp_path: Path) -> None:
    """experiment.yaml written before the vocabulary rename (`source:`, `methods` options, a split's and a
    test set's `sources:`) holds the same data settings as today's config: the run resumes."""
    split = {"name": "s", "mode": "identity",
             "manipulations": {"real": {"train": 80, "val": 10, "test": 10}, "NeuralTextures": {"test": 100}}}
    config = ExperimentConfig.parse({
        "name": "tiny", "split": split, "data": {"corpus": "ffpp", "options": {"manipulations": ["NeuralTextures"]}},
        "defaults": {"method": {"backbone": "tiny"}}, "methods": {"linear_probe": {}},
        "tests": {"NT": ["real", "NeuralTextures"]},
        "corpora": {"other": {"root": str(tmp_path), "corpus": "folder", "options": {"manipulations": ["Swap"]},
                              "synth": {"manipulations": ["FaceSwap"]}}},
    })
    old = config.to_dict()
    old["data"] = {("source" if k == "corpus" else k): v for k, v in old["data"].items()}
    old["data"]["options"] = {"methods": ["NeuralTextures"]}
    other = old["corpora"]["other"]
    other["source"] = other.pop("corpus")
    other["options"], other["synth"]["methods"] = {"methods": ["Swap"]}, other["synth"].pop("manipulations")
    old["split"] = {**split, "sources": split["manipulations"]}
    del old["split"]["manipulations"]
    old["tests"] = {"NT": {"split": "test", "sources": ["real", "NeuralTextures"]}}
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "experiment.yaml").write_text(yaml.safe_dump(old))
    experiment = runner._start(config, run_dir)
    assert experiment.methods["linear_probe"].status is Status.pending
    assert yaml.safe_load((run_dir / "experiment.yaml").read_text()) == config.to_dict()  # rewritten as today's
    # A data setting that really changed still refuses to mix two studies.
    (run_dir / "experiment.yaml").write_text(yaml.safe_dump({**old, "data": {**old["data"], "source": "folder"}}))
    with pytest.raises(CrossfakeError, match="was run with other data settings"):
        runner._start(config, run_dir)


def test_status_is_the_only_place_the_strings_live() -> None:
    assert STATUSES == ("done", "failed", "pending") == tuple(Status)
    assert Status.failed == "failed" and json.dumps(Status.done) == '"done"'
    assert reports.Status is Status
    for old in ("DONE", "FAILED", "PENDING"):
        assert not hasattr(runner, old)
    literal = re.compile(r"""["'](done|failed|pending)["']""")
    for file in ("experiments/runner.py", "reports/collect.py", "experiments/studies.py",
                 "cli/run.py", "cli/report.py", "cli/ablate.py", "cli/leakage.py"):
        assert not literal.findall((SRC / file).read_text()), file
    defining = [m.group(0) for m in literal.finditer((SRC / "runs" / "experiment.py").read_text())]
    assert defining == ['"done"', '"failed"', '"pending"']  # the enum's members
