"""Train a detector from a YAML config into a run directory.

CONFIG is a YAML file or the name of a shipped config (linear_probe, lora, visual_prompt,
reprogramming). Any key can be overridden with --set, validated like the file itself. The run directory
(--out, else the config's `out:`, else runs/<config name>) receives config.yaml, run.json, train.log,
best/ and last/ checkpoints and val_predictions.parquet. Re-running the same command resumes an
interrupted run from last/.

The checkpoint kept is the one with the best validation AUC; the decision threshold is the EER threshold
of its validation predictions. Test rows are never loaded.

Multi-GPU: accelerate launch -m crossfake.cli.main train CONFIG.yaml

Examples:
  crossfake train linear_probe --set data.manifest=prepared/split_report1.parquet
  crossfake train lora --set data.manifest=prepared/split_report2.parquet --set method.r=8 --out runs/lora_r8
  crossfake train my_config.yaml --set train.epochs=2 --set train.eval_every=100
"""

from __future__ import annotations

import argparse
from pathlib import Path

from accelerate import PartialState

from crossfake.runs.config import TrainConfig
from crossfake.training.loop import train
from crossfake.utils.config import add_override_argument


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="training config: a YAML file or a shipped name (e.g. lora)")
    parser.add_argument("--out", type=Path, help="run directory (overrides the config's `out:`)")
    add_override_argument(parser, "config", "train.epochs=2 or method.r=8")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars (logs only)")


def run(args: argparse.Namespace) -> int:
    config = TrainConfig.from_yaml(args.config, overrides=args.overrides)
    if args.out is not None:
        config = config.model_copy(update={"out": args.out.expanduser().absolute()})
    info = train(config, progress=not args.no_progress)
    if PartialState().is_main_process:  # one summary under `accelerate launch`, not one per GPU
        params = info.record.parameters
        print(f"run: {info.run_dir}")
        print(
            f"method: {info.record.method}  trainable parameters: {params['trainable']:,} of "
            f"{params['total']:,} ({params['trainable_percent']:.4f}%)"
        )
        print(
            f"best val AUC: {info.val_auc:.4f} at step {info.record.best_step} of {info.record.steps}; "
            f"threshold (val EER): {info.threshold:.4f}"
        )
        print(f"next: crossfake evaluate {info.run_dir}")
    return 0
