"""Frame- and video-level AUC/EER/ACC/F1/AP with bootstrap CIs and ROC curves for a predictions table.

PREDICTIONS is a CSV or Parquet table with one row per frame: a score (higher = more fake), a label
(0/1, true/false, real/fake, ...; 1 = fake) and, for video-level metrics, a video id. A frame or video
is predicted fake iff its score >= --threshold.

Levels: frame; video (mean), a video's score is the mean of its frame scores; video (vote), the
fraction of its frames predicted fake, the verdict being the majority (> 0.5). Confidence intervals are
percentile bootstrap intervals, stratified by class, resampling whole videos (also at frame level,
since frames of one video are not independent).

With --group-col (e.g. manipulation) every manipulation is also evaluated alone against all the real rows;
the real group gets its accuracy only.

Writes OUT/metrics.json (all results, settings, the input's path and sha256), OUT/metrics.md and
OUT/roc.png (frame and video level side by side).

A table written before today's column names is read under them (``dataset`` as ``corpus``, ``method`` as
``manipulation``; --group-col may name either).

Examples:
  crossfake metrics runs/lora/predictions_test.parquet --group-col manipulation
  crossfake metrics preds.csv --video-col none --bootstrap 0 --format markdown
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import pandas as pd

from crossfake.data.manifest import current_column, upgrade
from crossfake.evaluation.aggregate import Evaluation, evaluate_predictions
from crossfake.evaluation.plots import plot_roc
from crossfake.evaluation.tables import format_results
from crossfake.utils.errors import CrossfakeError
from crossfake.utils.io import write_json_atomic, write_text_atomic
from crossfake.utils.logging import get_logger
from crossfake.utils.provenance import file_sha256, provenance

log = get_logger("metrics")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("predictions", type=Path, help="predictions table (.csv or .parquet)")
    parser.add_argument("--score-col", default="score", help="score column (higher = more fake)")
    parser.add_argument("--label-col", default="label", help="label column (1/true/fake = fake)")
    parser.add_argument("--video-col", default="video_id", help="video id column; 'none': frame level only")
    parser.add_argument("--group-col", help="subgroup column, e.g. manipulation (each fake group vs all reals)")
    parser.add_argument("--threshold", type=float, default=0.5, help="predicted fake iff score >= threshold")
    parser.add_argument("--bootstrap", type=int, default=1000, metavar="N", help="resamples (0: no CIs)")
    parser.add_argument("--confidence", type=float, default=0.95, help="coverage of the confidence intervals")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    parser.add_argument("--nan", choices=["error", "drop"], default="error",
                        help="rows with a NaN or infinite score: stop with an error, or drop them")
    parser.add_argument("--out", type=Path, help="output folder (default: <stem>_metrics beside the input)")
    parser.add_argument("--format", choices=["table", "json", "markdown"], default="table",
                        help="what to print on stdout")


def read_predictions(path: Path, text_columns: list[str]) -> pd.DataFrame:
    """Read a CSV or Parquet table; ``text_columns`` of a CSV stay strings (video "000" is not 0). Columns of
    the old vocabulary get today's names (:func:`crossfake.data.manifest.upgrade`)."""
    if not path.is_file():
        raise CrossfakeError(f"no predictions table at {path}")
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            return upgrade(pd.read_csv(path, dtype=dict.fromkeys(text_columns, str)))
        if suffix in (".parquet", ".pq"):
            return upgrade(pd.read_parquet(path))
    except Exception as e:  # pandas and pyarrow raise many types for an unreadable file
        raise CrossfakeError(f"cannot read {path}: {e}") from e
    raise CrossfakeError(f"{path}: expected a .csv or .parquet file, not {suffix or 'no suffix'!r}")


def _check_args(args: argparse.Namespace) -> None:
    if not math.isfinite(args.threshold):
        raise CrossfakeError(f"--threshold must be a finite number, not {args.threshold}")
    if args.bootstrap < 0:
        raise CrossfakeError(f"--bootstrap must be >= 0, not {args.bootstrap}")
    if not 0 < args.confidence < 1:
        raise CrossfakeError(f"--confidence must be between 0 and 1, not {args.confidence}")


def _summary(evaluation: Evaluation, path: Path, n_rows: int) -> str:
    info = evaluation.info
    lines = [f"predictions: {path} ({n_rows} rows" + (
        f", {info['n_dropped_nan']} with a NaN/inf score dropped)" if info["n_dropped_nan"] else ")")]
    lines.append(f"threshold: predicted fake iff score >= {info['threshold']}; vote: {info['vote_rule']}")
    if info["n_boot"]:
        lines.append(f"CIs: {100 * info['confidence']:g}% {info['bootstrap']}, {info['n_boot']} resamples, "
                     f"seed {info['seed']}")
    if info["group_col"]:
        lines.append(f"groups ({info['group_col']}): {info['subgroups']}")
    return "\n".join(lines)


def _markdown(evaluation: Evaluation, path: Path, sha256: str, n_rows: int) -> str:
    summary = "\n".join(f"- {line}" for line in _summary(evaluation, path, n_rows).splitlines())
    return (f"# Metrics: {path.name}\n\n{summary}\n- sha256: `{sha256}`\n\n"
            f"{format_results(evaluation.results, 'markdown')}\n\n![ROC curves](roc.png)\n")


def run(args: argparse.Namespace) -> int:
    _check_args(args)
    video_col = None if args.video_col.lower() == "none" else args.video_col
    text_columns = [c for c in (video_col, args.group_col) if c]
    df = read_predictions(args.predictions, text_columns)
    group_col = current_column(args.group_col, df.columns) if args.group_col is not None else None
    evaluation = evaluate_predictions(
        df, args.score_col, args.label_col, video_col, group_col, threshold=args.threshold,
        levels=("frame", "video") if video_col else ("frame",), n_boot=args.bootstrap, seed=args.seed,
        confidence=args.confidence, nan=args.nan, require_both_classes=True,
    )

    out = args.out or args.predictions.with_name(f"{args.predictions.stem}_metrics")
    sha256 = file_sha256(args.predictions)
    record = {"input": str(args.predictions.resolve()), "input_sha256": sha256, **evaluation.to_dict()}
    write_json_atomic(out / "metrics.json", provenance(record))
    write_text_atomic(out / "metrics.md", _markdown(evaluation, args.predictions, sha256, len(df)))
    plot_roc(evaluation, out / "roc.png", title=args.predictions.name)
    log.info("wrote %s, metrics.md and roc.png", out / "metrics.json")

    if args.format == "json":
        summary = {"input": record["input"], "input_sha256": sha256, **evaluation.to_dict(curves=False)}
        print(json.dumps(summary, indent=2))
    elif args.format == "markdown":
        print(_markdown(evaluation, args.predictions, sha256, len(df)), end="")
    else:
        print(_summary(evaluation, args.predictions, len(df)) + "\n")
        print(format_results(evaluation.results, "text"))
    return 0
