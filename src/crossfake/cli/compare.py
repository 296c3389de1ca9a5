"""Put several experiment runs side by side: per test set, one row per method, columns per run.

Each RUN is an experiment run directory written by `crossfake run`. Its numbers come from
RUN/report/metrics.json, which is built first when missing or older than the run's predictions (as
`crossfake report RUN` would). Threshold metrics are taken at each method's validation threshold.
Prints the tables; with --out, also writes OUT/compare.md, OUT/compare.html (self-contained),
OUT/compare.csv (run, test_set, method, metric, value) and OUT/figures/ (a heatmap of the first metric
over method x run per test set).

Metrics (--metric, repeatable): auc, eer, accuracy, balanced_accuracy, real_acc, fake_acc, f1, ap (frame
level), video_auc, video_eer, video_accuracy, video_balanced_accuracy (video = mean of frame scores),
vote_accuracy, vote_f1 (majority vote of frame verdicts).

Examples:
  crossfake compare runs/identity_split runs/frame_split
  crossfake compare runs/a runs/b runs/c --metric auc --metric video_auc --metric f1 --out comparison
"""

from __future__ import annotations

import argparse
from pathlib import Path

from crossfake.reports.compare import compare_text, load_runs, write_comparison
from crossfake.reports.tables import DEFAULT_COMPARE_METRICS, METRICS
from crossfake.utils.errors import CrossfakeError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dirs", type=Path, nargs="+", metavar="RUN", help="experiment run directories")
    parser.add_argument("--metric", action="append", choices=list(METRICS), dest="metrics",
                        help=f"metric column (repeatable; default: {' '.join(DEFAULT_COMPARE_METRICS)})")
    parser.add_argument("--out", type=Path, help="also write compare.md, compare.html, compare.csv and figures/ here")
    parser.add_argument("--bootstrap", type=int, default=1000, metavar="N",
                        help="bootstrap resamples for reports that have to be built")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed for reports that have to be built")
    parser.add_argument("--format", choices=["table", "markdown"], default="table", help="what to print")


def run(args: argparse.Namespace) -> int:
    if args.bootstrap < 0:
        raise CrossfakeError(f"--bootstrap must be >= 0, not {args.bootstrap}")
    metrics = args.metrics or list(DEFAULT_COMPARE_METRICS)
    summaries = load_runs(args.run_dirs, n_boot=args.bootstrap, seed=args.seed)
    print(compare_text(summaries, metrics, "markdown" if args.format == "markdown" else "text"))
    if args.out is not None:
        paths = write_comparison(summaries, args.out, metrics)
        print(f"\ncomparison: {paths.html}\n            {paths.markdown}\n            {paths.csv}")
    return 0
