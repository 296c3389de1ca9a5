"""Identity-leakage study: one detector on a frame-level random split vs an identity-disjoint split.

STUDY is a YAML file or the shipped `leakage` study (CLIP + LoRA on report 2's shares, NeuralTextures
test). The same data, method and percentages are split twice: frame by frame at random, so frames of one
video (one person) are in train and in test, and by identity, so nobody is on two sides. Each split is a
full experiment run (RUN/leaky, RUN/safe, resumable); leakage.md / .csv / .json hold the test AUCs,
their gap, and each split's overlap counts from the audit (people and videos shared between splits, and
test videos showing a person seen in training).

Examples:
  crossfake leakage --data /data/FaceForensics++ --out runs/leakage
  crossfake leakage --set method=linear_probe --set experiment_overrides.defaults.method.backbone=tiny
"""

from __future__ import annotations

import argparse
from pathlib import Path

from crossfake.cli.run import add_experiment_arguments, data_overrides
from crossfake.experiments.studies import LeakageConfig, run_leakage


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("study", nargs="?", default="leakage", help="leakage config: YAML file or shipped name")
    add_experiment_arguments(parser, what="study")


def run(args: argparse.Namespace) -> int:
    config = LeakageConfig.from_yaml(args.study, overrides=data_overrides(args, prefix="experiment_overrides."))
    out = args.out or Path("runs") / config.name
    run_leakage(config, out, progress=not args.no_progress)
    print("\n" + (out / "leakage.md").read_text(encoding="utf-8"))
    return 0
