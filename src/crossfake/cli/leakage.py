"""Identity-leakage study: the same detectors on the same data, split four ways, test AUCs side by side.

STUDY is a YAML file or a shipped study: `leakage` (report 2's data and shares, linear probe and LoRA on
CLIP ViT-B/32, NeuralTextures test; give the corpus with --data) or `leakage-demo` (the demo's synthetic
FF++ and small models, FaceSwap test; runs offline in minutes). The arms:

  frames-all  the reports' leaky split: frames of every video of every manipulation, the test
              manipulation's included, at random over train/val/test
  frames      frames at random, each manipulation by its own shares (the test manipulation only in test)
  videos      each manipulation's videos cut by its shares (report 1's video-level split: people shared)
  identity    identity-disjoint (the reference)

Each arm and seed is a full experiment run (RUN/<arm>/seed<k>/, resumable; every arm shares one crop
cache). leakage.md / .csv / .json hold per method and arm the test AUC, frame and video, with bootstrap
CIs, the gap to the reference arm, and the test set's audit: people, videos and test-manipulation frames
shared with training. With several seeds, the mean and sd over seeds and in how many seeds the reference
AUC lies below the arm's CI. Exit status 1 when a method failed in some arm.

Examples:
  crossfake leakage leakage-demo
  crossfake leakage leakage-demo --set "seeds=[0,1,2]" --out runs/leakage-demo-3seeds
  crossfake leakage --data /data/FaceForensics++ --out runs/leakage
  crossfake leakage --data /shared/FaceForensics++ --executor ray --address auto   # prepare + scoring on Ray
  crossfake leakage --data /data/FaceForensics++ --set method=lora --set "arms=[frames-all,identity]"
"""

from __future__ import annotations

import argparse
from pathlib import Path

from crossfake.cli.evaluate import executor_from_args
from crossfake.cli.run import add_experiment_arguments, data_overrides
from crossfake.experiments.studies import LeakageConfig, run_leakage
from crossfake.runs.experiment import Status


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("study", nargs="?", default="leakage", help="leakage config: YAML file or shipped name")
    add_experiment_arguments(parser, what="study")


def run(args: argparse.Namespace) -> int:
    config = LeakageConfig.from_yaml(args.study, overrides=data_overrides(args, prefix="experiment_overrides."))
    out = args.out or Path("runs") / config.name
    executor = executor_from_args(args)
    try:
        table = run_leakage(config, out, progress=not args.no_progress, executor=executor)
    finally:
        if executor is not None:
            executor.close()
    print("\n" + (out / "leakage.md").read_text(encoding="utf-8"))
    return 0 if (table["status"] == Status.done).all() else 1
