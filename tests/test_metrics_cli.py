"""`crossfake metrics PREDICTIONS` end to end on CSV and Parquet tables written here."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib.image
import numpy as np
import pandas as pd
import pytest

from crossfake.cli.main import main
from crossfake.evaluation import metrics
from crossfake.utils.provenance import file_sha256

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def predictions(seed: int = 0) -> pd.DataFrame:
    """Frames of real videos and two manipulations, labels as strings, video names with leading zeros."""
    rng = np.random.default_rng(seed)
    rows = []
    for manipulation, n_videos, shift in (("real", 24, 0.0), ("FaceSwap", 16, 0.4), ("NeuralTextures", 16, 0.15)):
        for v in range(n_videos):
            base = rng.normal(0.35 + shift, 0.15)
            for _ in range(5):
                rows.append({"video_id": f"{v:03d}" if manipulation == "real" else f"{manipulation}/{v:03d}",
                             "manipulation": manipulation, "label": "real" if manipulation == "real" else "fake",
                             "prob": round(float(base + rng.normal(0, 0.08)), 3)})
    return pd.DataFrame(rows)


def write(df: pd.DataFrame, path: Path) -> Path:
    if path.suffix == ".csv":
        df.to_csv(path, index=False)
    else:
        df.to_parquet(path, index=False)
    return path


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_old_column_names_are_read_as_today(tmp_path, capsys, suffix):
    """A table written before the rename (``method`` for the manipulation, ``dataset`` for the corpus) gives
    the same results, grouped by ``--group-col method`` or ``manipulation``."""
    df = predictions().assign(corpus="ffpp")
    new = write(df, tmp_path / f"new{suffix}")
    old = write(df.rename(columns={"manipulation": "method", "corpus": "dataset"}), tmp_path / f"old{suffix}")
    results = []
    for path, col in ((new, "manipulation"), (old, "method"), (old, "manipulation")):
        out = tmp_path / f"{path.stem}_{col}"
        assert main(["metrics", str(path), "--score-col", "prob", "--group-col", col, "--bootstrap", "0",
                     "--out", str(out)]) == 0
        record = json.loads((out / "metrics.json").read_text())
        assert record["info"]["group_col"] == "manipulation"
        results.append(record["results"])
    capsys.readouterr()
    assert results[0] == results[1] == results[2]
    assert {r["group"] for r in results[0]} == {"all", "real", "FaceSwap", "NeuralTextures"}


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_end_to_end(tmp_path, capsys, suffix):
    df = predictions()
    path = write(df, tmp_path / f"preds{suffix}")
    rc = main(["metrics", str(path), "--score-col", "prob", "--group-col", "manipulation", "--bootstrap", "200"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "Frame level" in out and "Video level (score = mean" in out and "Video level (majority vote" in out
    auc = metrics.roc_auc((df["label"] == "fake").to_numpy(), df["prob"].to_numpy())
    frame_all = next(line for line in out.splitlines() if line.startswith("all "))
    assert frame_all.split()[1] == f"{auc:.3f}" and frame_all.split()[2].startswith("[")  # AUC then its CI
    assert "200 resamples" in out and "cluster bootstrap" in out

    folder = tmp_path / "preds_metrics"
    record = json.loads((folder / "metrics.json").read_text(), parse_constant=lambda c: pytest.fail(c))
    assert record["input"] == str(path.resolve())
    assert record["input_sha256"] == file_sha256(path)
    assert record["info"]["n_boot"] == 200 and record["info"]["group_col"] == "manipulation"
    res = pd.DataFrame(record["results"])
    assert set(res["level"]) == {"frame", "video_mean", "video_vote"}
    assert set(res["group"]) == {"all", "real", "FaceSwap", "NeuralTextures"}
    frame_auc = res.query("level == 'frame' and group == 'all' and metric == 'auc'").iloc[0]
    assert frame_auc["value"] == pytest.approx(auc, abs=1e-12)
    assert frame_auc["ci_low"] < frame_auc["value"] < frame_auc["ci_high"]
    # Video ids "000" of the CSV stayed strings: 56 videos, not 40 with "000" and "FaceSwap/000" ...
    assert frame_auc["n"] == len(df)
    video = res.query("level == 'video_mean' and group == 'all'").iloc[0]
    assert (video["n_real"], video["n_fake"]) == (24, 32)

    png = (folder / "roc.png").read_bytes()
    assert png[:8] == PNG_SIGNATURE
    image = matplotlib.image.imread(folder / "roc.png")
    assert image.ndim == 3 and image.shape[1] > 1.5 * image.shape[0]
    md = (folder / "metrics.md").read_text()
    assert "### Frame level" in md and "roc.png" in md and file_sha256(path) in md


def test_csv_video_ids_keep_leading_zeros(tmp_path, capsys):
    # "000" and "00" are two videos; read as numbers they would merge into video 0 with mixed labels.
    df = pd.DataFrame({"video_id": ["000", "000", "00", "00"], "label": [0, 0, 1, 1],
                       "score": [0.1, 0.2, 0.8, 0.9]})
    path = write(df, tmp_path / "p.csv")
    assert main(["metrics", str(path), "--bootstrap", "0"]) == 0
    assert "1/1" in capsys.readouterr().out  # one real and one fake video


def test_formats_and_out_dir(tmp_path, capsys):
    path = write(predictions(), tmp_path / "p.parquet")
    out_dir = tmp_path / "elsewhere"
    assert main(["metrics", str(path), "--score-col", "prob", "--bootstrap", "0", "--format", "json",
                 "--out", str(out_dir)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["input_sha256"] == file_sha256(path) and "curves" not in printed
    assert all(r["ci_low"] is None for r in printed["results"])  # --bootstrap 0: no CIs
    assert {p.name for p in out_dir.iterdir()} == {"metrics.json", "metrics.md", "roc.png"}
    args = ["metrics", str(path), "--score-col", "prob", "--bootstrap", "0"]
    assert main([*args, "--format", "markdown"]) == 0
    assert "| all |" in capsys.readouterr().out


def test_frame_only(tmp_path, capsys):
    path = write(predictions().drop(columns="video_id"), tmp_path / "p.csv")
    assert main(["metrics", str(path), "--score-col", "prob", "--video-col", "none", "--bootstrap", "9"]) == 0
    out = capsys.readouterr().out
    assert "Frame level" in out and "Video level" not in out and "resampling frames" in out
    assert matplotlib.image.imread(tmp_path / "p_metrics" / "roc.png").ndim == 3


def test_nan_policy(tmp_path, capsys):
    df = predictions()
    df.loc[[2, 7], "prob"] = np.nan
    path = write(df, tmp_path / "p.csv")
    assert main(["metrics", str(path), "--score-col", "prob", "--bootstrap", "0"]) == 2
    err = capsys.readouterr().err
    assert "2 row(s) have a NaN or infinite score" in err and "--nan drop" in err and "Traceback" not in err
    assert main(["metrics", str(path), "--score-col", "prob", "--bootstrap", "0", "--nan", "drop"]) == 0
    assert "2 with a NaN/inf score dropped" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("change", "args", "message"),
    [
        (lambda df: df[df["label"] == "fake"], [], "fake samples only"),
        (lambda df: df, ["--score-col", "score"], "'score'"),
        (lambda df: df.assign(label="maybe"), [], "unexpected label value(s): 'maybe'"),
        (lambda df: df, ["--threshold", "nan"], "--threshold"),
    ],
)
def test_user_errors(tmp_path, capsys, change, args, message):
    path = write(change(predictions()), tmp_path / "p.csv")
    default = ["--score-col", "prob"] if "--score-col" not in args else []
    assert main(["metrics", str(path), *default, *args, "--bootstrap", "0"]) == 2
    err = capsys.readouterr().err
    assert message in err and err.startswith("crossfake metrics: error:")


def test_missing_column_lists_available(tmp_path, capsys):
    path = write(predictions(), tmp_path / "p.csv")
    assert main(["metrics", str(path), "--bootstrap", "0"]) == 2
    err = capsys.readouterr().err
    assert "['score']" in err and "'prob'" in err and "'video_id'" in err


def test_unreadable_inputs(tmp_path, capsys):
    assert main(["metrics", str(tmp_path / "absent.csv")]) == 2
    assert "no predictions table" in capsys.readouterr().err
    (tmp_path / "p.txt").write_text("x")
    assert main(["metrics", str(tmp_path / "p.txt")]) == 2
    assert ".csv or .parquet" in capsys.readouterr().err
