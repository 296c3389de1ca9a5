"""`crossfake train` and `crossfake evaluate` end to end on the tiny split (see test_training.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml
from test_training import make_tiny_split

from crossfake.cli.main import main
from crossfake.data.manifest import SPLIT_COLUMN, read_manifest, write_manifest


@pytest.fixture(scope="module")
def trained_cli(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A run trained through the CLI from a YAML file plus --set overrides; returns (run dir, manifest)."""
    root = tmp_path_factory.mktemp("cli")
    manifest = make_tiny_split(root / "data")
    config = root / "probe.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "method": {"name": "linear_probe", "backbone": "tiny"},
                "data": {"manifest": "placeholder.parquet"},
                "train": {"batch_size": 8, "lr": 1e-2, "num_workers": 0},
            }
        )
    )
    sets = [f"data.manifest={manifest}", "train.epochs=2", f"train.cache_dir={root / 'cache'}"]
    argv = ["train", str(config), "--out", str(root / "run"), "--no-progress"]
    assert main(argv + [a for s in sets for a in ("--set", s)]) == 0
    return root / "run", manifest


def _evaluate(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(["evaluate", *args, "--bootstrap", "20", "--no-progress"])
    out, err = capsys.readouterr()
    return code, out, err


def test_train_cli_writes_a_run(trained_cli: tuple[Path, Path]) -> None:
    run_dir, manifest = trained_cli
    record = json.loads((run_dir / "run.json").read_text())
    assert record["config"]["train"]["epochs"] == 2 and record["config"]["data"]["manifest"] == str(manifest)
    assert (run_dir / "best" / "model.safetensors").is_file()


def test_evaluate_test_split_writes_predictions_and_metrics(
    trained_cli: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir, manifest = trained_cli
    code, out, _ = _evaluate(capsys, str(run_dir), "--group-col", "manipulation")
    assert code == 0
    preds = pd.read_parquet(run_dir / "predictions_test.parquet")
    test = read_manifest(manifest).query(f"{SPLIT_COLUMN} == 'test'")
    assert preds["sample_id"].tolist() == test["sample_id"].tolist()
    for name in ("metrics_test.json", "metrics_test.md", "roc_test.png"):
        assert (run_dir / name).is_file()
    metrics = json.loads((run_dir / "metrics_test.json").read_text())
    threshold = json.loads((run_dir / "run.json").read_text())["threshold"]
    assert metrics["val_threshold"] == threshold and metrics["split"] == "test"
    at_half, at_val = metrics["metrics"]["0.5"], metrics["metrics"]["val EER"]
    assert at_half["info"]["threshold"] == 0.5 and at_val["info"]["threshold"] == threshold
    levels = {r["level"] for r in at_half["results"]}
    assert levels == {"frame", "video_mean", "video_vote"}
    groups = {r["group"] for r in at_val["results"]}
    assert groups == {"all", "NeuralTextures", "real"}
    # The printed table has a row per group and threshold, at frame and video level.
    assert "Frame level" in out and "Video level" in out and f"val EER ({threshold:.3f})" in out


def test_evaluate_val_reproduces_the_training_scores(
    trained_cli: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir, _ = trained_cli
    for extra in ([], ["--no-cache"]):  # cached features, and the full backbone forward
        out = tmp_path / ("nocache" if extra else "cache")
        code, _, _ = _evaluate(capsys, str(run_dir), "--split", "val", "--out", str(out), *extra)
        assert code == 0
        pd.testing.assert_frame_equal(
            pd.read_parquet(out / "predictions_val.parquet"),
            pd.read_parquet(run_dir / "val_predictions.parquet"),
        )


def test_evaluate_another_manifest_without_splits(
    trained_cli: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir, manifest = trained_cli
    df = read_manifest(manifest)
    other = manifest.parent / "other.parquet"  # beside the crops, so the relative paths resolve
    write_manifest(df.drop(columns=[SPLIT_COLUMN]), other)
    code, out, _ = _evaluate(capsys, str(run_dir), "--manifest", str(other), "--out", str(tmp_path))
    assert code == 0
    assert len(pd.read_parquet(tmp_path / "predictions_other_all.parquet")) == len(df)
    code, _, err = _evaluate(capsys, str(run_dir), "--manifest", str(other), "--split", "test")
    assert code == 2 and "has no 'split' column" in err


def test_evaluate_reports_user_errors(
    trained_cli: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir, _ = trained_cli
    code, _, err = _evaluate(capsys, str(tmp_path))
    assert code == 2 and "not a crossfake run directory" in err
    code, _, err = _evaluate(capsys, str(run_dir), "--split", "holdout")
    assert code == 2 and "no rows in split 'holdout'" in err


def test_train_cli_reports_config_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["train", "linear_probe", "--set", "train.epochss=2"])
    _, err = capsys.readouterr()
    assert code == 2 and "linear_probe.yaml is invalid" in err and "train.epochss: unknown key" in err
    assert "no manifest at" in err  # every problem at once, before any model is built
