"""Run an experiment end to end: prepare, split, train each method, test, and write the report.

EXPERIMENT is a YAML file or the name of a shipped experiment (listed under `experiment` below). Everything lands
in one run directory (--out, default runs/<name>): the resolved config, the split manifest, one
`crossfake train` run per method with its test predictions, and report/ (Markdown + HTML with tables,
ROC figures, the split table, config and provenance).

Re-running the same command skips finished work: the prepared crops, every finished method (trained and
tested with the same config), and the finished part of an interrupted one. A method that fails is
recorded (experiment.json, methods/<entry>/error.log) and the others go on; the exit status is then 1.
Checkpoints and thresholds are selected on validation only.

Without --data, an experiment whose config names no corpus runs on the synthetic FF++ it writes into
the run directory.

Cross-dataset: an experiment with `corpora:` (the shipped `cross-dataset`) also tests every method on
other corpora, each cropped with the same settings and never trained on, and writes
cross_dataset.md/.csv/.json: frame and video AUC with CIs per corpus and their average. --corpus
NAME=ROOT (repeatable) names the corpora to test on, replacing the config's (its synthetic stand-in);
NAME is a corpus adapter (celebdf, dfdc, dfd, wilddeepfake, ffpp, folder) or a corpus of the config.

--executor ray [--address auto|ray://HEAD:10001] prepares the videos and scores the test rows in Ray
tasks (GPU tasks when scoring on CUDA), with the same outputs and resume as the local executor; training
runs here. The same flags work for `crossfake ablate` and `crossfake leakage`.

Examples:
  crossfake run demo                                              # the README's demo, tiny models
  crossfake run report1 --data /data/FaceForensics++ --out runs/report1
  crossfake run report2 --set defaults.method.backbone=tiny       # every method on a tiny backbone
  crossfake run report1 --only linear_probe,lora                  # just these entries
  crossfake run my_study.yaml --set methods.lora.method.r=8 --set tests.NeuralTextures=[real,NeuralTextures]
  crossfake run cross-dataset --data /data/FaceForensics++ --corpus celebdf=/data/Celeb-DF-v2 \
      --corpus dfdc=/data/dfdc_test --corpus dfd=/data/FaceForensics++ --corpus wilddeepfake=/data/WildDeepfake
"""

from __future__ import annotations

import argparse
from pathlib import Path

from crossfake.cli.evaluate import add_executor_arguments, executor_from_args
from crossfake.experiments import ExperimentConfig, run_experiment
from crossfake.experiments.config import with_corpora
from crossfake.reports import headline_text
from crossfake.runs.experiment import Status
from crossfake.utils.config import add_override_argument
from crossfake.utils.errors import CrossfakeError
from crossfake.utils.shipped import shipped_names


def add_experiment_arguments(parser: argparse.ArgumentParser, what: str = "experiment") -> None:
    """The options every experiment-driven command shares (run, ablate, leakage)."""
    parser.add_argument("--out", type=Path, help=f"run directory (default: runs/<{what} name>)")
    parser.add_argument(
        "--data", type=Path, metavar="ROOT", help="corpus root (e.g. an FF++ copy); default: the config's"
    )
    add_override_argument(parser, f"{what} config", "defaults.train.epochs=2")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars (logs only)")
    add_executor_arguments(parser, what="prepares the videos and scores the test rows")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "experiment",
        help=f"experiment config: a YAML file or a shipped name ({', '.join(shipped_names('experiments'))})",
    )
    add_experiment_arguments(parser)
    parser.add_argument("--only", help="comma-separated method entries to run (the others are left as they are)")
    parser.add_argument("--no-report", action="store_true", help="do not build the report at the end")
    parser.add_argument(
        "--corpus", action="append", default=[], metavar="NAME=ROOT",
        help="test on this corpus too (repeatable; replaces the config's corpora), e.g. celebdf=/data/Celeb-DF-v2",
    )


def corpus_roots(values: list[str]) -> dict[str, Path]:
    """``--corpus NAME=ROOT`` values as name -> root."""
    roots: dict[str, Path] = {}
    for value in values:
        name, sep, root = value.partition("=")
        if not sep or not name.strip() or not root.strip():
            raise CrossfakeError(f"--corpus {value!r}: expected NAME=ROOT, e.g. celebdf=/data/Celeb-DF-v2")
        path = Path(root.strip()).expanduser()
        if not path.is_dir():
            raise CrossfakeError(f"--corpus {value!r}: {path} is not a folder")
        if name.strip() in roots:
            raise CrossfakeError(f"--corpus {name.strip()} is given twice")
        roots[name.strip()] = path
    return roots


def data_overrides(args: argparse.Namespace, prefix: str = "") -> list[str]:
    """``--set`` overrides plus ``--data`` as ``data.root=...``."""
    overrides = list(args.overrides)
    if args.data is not None:
        if not args.data.is_dir():
            raise CrossfakeError(f"--data {args.data} is not a folder")
        overrides.append(f"{prefix}data.root={args.data.expanduser().absolute()}")
    return overrides


def run(args: argparse.Namespace) -> int:
    config = ExperimentConfig.from_yaml(args.experiment, overrides=data_overrides(args))
    if args.corpus:
        config = with_corpora(config, corpus_roots(args.corpus))
    out = args.out or Path("runs") / config.name
    only = [m.strip() for m in args.only.split(",") if m.strip()] if args.only else None
    executor = executor_from_args(args)
    try:
        if config.corpora:
            from crossfake.experiments.studies import CROSS_DATASET, run_cross_dataset

            result, _ = run_cross_dataset(config, out, only=only, progress=not args.no_progress,
                                          report=not args.no_report, executor=executor)
            print("\n" + (result.run_dir / f"{CROSS_DATASET}.md").read_text(encoding="utf-8"))
        else:
            result = run_experiment(config, out, only=only, progress=not args.no_progress,
                                    report=not args.no_report, executor=executor)
    finally:
        if executor is not None:
            executor.close()

    print(f"\nexperiment {config.name}: {result.run_dir}")
    for name, entry in result.entries.items():
        detail = entry.error if entry.status == Status.failed else ""
        print(f"  {name:<20} {entry.status}{': ' + detail if detail else ''}")
    if not args.no_report:
        print("\n" + headline_text(result.run_dir))
        print(f"\nreport: {result.run_dir / 'report' / 'report.html'}")
    return 1 if result.failed() else 0
