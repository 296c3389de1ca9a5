"""Rebuild an experiment's report from its saved predictions: tables, ROC figures, Markdown and HTML.

RUN is an experiment run directory written by `crossfake run` (experiment.json, split.parquet and
methods/<entry>/predictions_<test set>.parquet). No model is loaded: every metric is recomputed from the
predictions, at frame and video level, at each method's validation threshold and at 0.5, with bootstrap
confidence intervals over videos. Writes, replacing any previous report as a whole:

  RUN/report/report.md      tables (AUC, EER, ACC, balanced and per-class accuracy, F1, AP, parameters,
                            run time), ROC figures, the split table, failed methods, config, provenance
  RUN/report/report.html    the same page, self-contained (figures embedded, no network access)
  RUN/report/metrics.csv    every metric, tidy: test_set, method, threshold, level, group, metric, value, CI
  RUN/report/metrics.json   the same with the method records, split table and input checksums
  RUN/report/figures/       per test set, one frame|video ROC figure per method and one of all methods

A method that failed, is pending or whose predictions are missing is listed as such, not an error.

Examples:
  crossfake report runs/cross_manipulation
  crossfake report runs/cross_manipulation --bootstrap 200 --format markdown
"""

from __future__ import annotations

import argparse
from pathlib import Path

from crossfake.reports.build import build_report, headline_text, load_summary
from crossfake.runs.experiment import Status
from crossfake.utils.errors import CrossfakeError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", type=Path, help="experiment run directory written by `crossfake run`")
    parser.add_argument("--bootstrap", type=int, default=1000, metavar="N", help="bootstrap resamples (0: no CIs)")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    parser.add_argument("--format", choices=["table", "markdown", "none"], default="table",
                        help="what to print: the headline tables as text or Markdown, or nothing")
    parser.add_argument("--strict", action="store_true",
                        help="exit with status 1 when a method failed, is pending or lacks predictions "
                        "(the report is written all the same)")


def run(args: argparse.Namespace) -> int:
    if args.bootstrap < 0:
        raise CrossfakeError(f"--bootstrap must be >= 0, not {args.bootstrap}")
    paths = build_report(args.run_dir, n_boot=args.bootstrap, seed=args.seed)
    summary = load_summary(args.run_dir, rebuild="never")
    if args.format != "none":
        print(headline_text(summary, "markdown" if args.format == "markdown" else "text") + "\n")
    print(f"report: {paths.html}\n        {paths.markdown}\nmetrics: {paths.metrics_csv}, {paths.metrics_json.name}")
    incomplete = [f"{name} ({r['status']})" for name, r in summary.methods.items()
                  if r["status"] != Status.done or r.get("issues")]
    if incomplete:
        print(f"incomplete: {', '.join(incomplete)}; see the report's 'Failed or missing methods'")
    return 1 if args.strict and incomplete else 0
