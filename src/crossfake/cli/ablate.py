"""The LoRA ablation grid: one method trained per cell of a grid of options, resumable cell by cell.

STUDY is a YAML file or a shipped study (lora_grid: report 2's rank {8,16,32} x alpha {16,32,64} x
dropout {0,0.05,0.1}, plus the train fraction {20,50,100}%). Every cell is a method entry of one
experiment run (see `crossfake run --help`), so the data is prepared and split once, finished cells are
skipped on a re-run, and a failing cell is recorded while the others go on.

Writes, besides the experiment's run directory and report: ablation.csv / .md / .json (one row per
cell: settings, validation AUC, test frame/video AUC and EER, trainable parameters, train time; ranked by
validation AUC, never by test) and figures/ heatmaps of test and validation AUC over rank x alpha, one
per dropout.

Examples:
  crossfake ablate lora_grid --data /data/FaceForensics++ --out runs/lora_grid
  crossfake ablate lora_grid --data /shared/FaceForensics++ --executor ray --address auto   # prepare + scoring on Ray
  crossfake ablate lora_grid --set experiment_overrides.defaults.method.backbone=tiny
  crossfake ablate lora_grid --set 'grid={method.r: [8, 16]}' --set 'sweeps={}'     # a smaller grid
"""

from __future__ import annotations

import argparse
from pathlib import Path

from crossfake.cli.evaluate import executor_from_args
from crossfake.cli.run import add_experiment_arguments, data_overrides
from crossfake.evaluation.tables import render
from crossfake.experiments.studies import AblationConfig, run_ablation
from crossfake.runs.experiment import Status


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("study", nargs="?", default="lora_grid", help="ablation config: YAML file or shipped name")
    add_experiment_arguments(parser, what="study")


def run(args: argparse.Namespace) -> int:
    config = AblationConfig.from_yaml(args.study, overrides=data_overrides(args, prefix="experiment_overrides."))
    out = args.out or Path("runs") / config.name
    executor = executor_from_args(args)
    try:
        table = run_ablation(config, out, progress=not args.no_progress, executor=executor)
    finally:
        if executor is not None:
            executor.close()
    print(f"\nablation {config.name}: {len(table)} cells, ranked by validation AUC (test set {config.test})\n")
    print(render(list(table.columns), [[f"{v:.4g}" if isinstance(v, float) else str(v) for v in row]
                                        for row in table.itertuples(index=False)], fmt="text"))
    print(f"\ntable: {out / 'ablation.md'}\nreport: {out / 'report' / 'report.html'}")
    return 1 if (table["status"] != Status.done).any() else 0
