"""Score a split (or another manifest) with a trained run and report frame- and video-level metrics.

Loads RUN_DIR's best checkpoint (selected on validation AUC), scores the rows of the chosen split of the
run's own manifest, or of --manifest (e.g. a Face2Face-only manifest for the zero-shot test), streaming
batch by batch, and writes into --out (default: RUN_DIR):

  predictions_<name>.parquet   sample_id, video_id, corpus, manipulation, label, score (= p(fake)), logit
  metrics_<name>.json          every metric with bootstrap CIs, at threshold 0.5 and at the run's
                               validation threshold (EER threshold on val), plus provenance
  metrics_<name>.md, roc_<name>.png

<name> is the split (test), or the manifest's file name and split for another manifest. The scores are
those of training: `crossfake evaluate RUN --split val` reproduces RUN/val_predictions.parquet.

Examples:
  crossfake evaluate runs/lora                       # the test split of the run's manifest
  crossfake evaluate runs/lora --group-col manipulation   # also each manipulation against the reals
  crossfake evaluate runs/lora --manifest prepared_f2f/manifest.parquet --split all
  crossfake evaluate runs/lora --executor ray --address auto   # scored by the workers of a Ray cluster

--executor ray scores the rows in Ray tasks (extra 'distributed'), on a new local instance or a cluster
(--address auto, ray://HEAD:10001), each task on a GPU with --device cuda (or auto where this machine sees
one); every node needs crossfake, the run directory and the crops at the same paths. The predictions are
those of scoring here, and an interrupted run resumes at its missing parts with either executor.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

from crossfake.data.manifest import SPLIT_COLUMN, current_column, read_manifest
from crossfake.evaluation.aggregate import Evaluation, evaluate_predictions
from crossfake.evaluation.plots import plot_roc
from crossfake.evaluation.tables import format_results
from crossfake.executors.base import EXECUTORS, Executor, LocalExecutor, get_executor
from crossfake.runs.directory import BEST_DIR, LAST_DIR, RunInfo, read_run_info
from crossfake.scoring.device import DEVICES, resolve_device
from crossfake.scoring.run import load_for_scoring, score_run
from crossfake.utils.errors import CrossfakeError
from crossfake.utils.io import write_json_atomic, write_text_atomic
from crossfake.utils.logging import get_logger
from crossfake.utils.provenance import file_sha256, provenance

log = get_logger("evaluate")

ALL_ROWS = "all"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", type=Path, help="run directory written by `crossfake train`")
    parser.add_argument(
        "--split",
        help=f"split to score ('{ALL_ROWS}': every row); default: test, or every row "
        "of a manifest without a split column",
    )
    parser.add_argument("--manifest", type=Path, help="score this manifest instead of the run's own")
    parser.add_argument("--name", help="name of the outputs (default: the split, or <manifest>_<split>)")
    parser.add_argument("--group-col", help="also evaluate per value of this column, e.g. manipulation")
    parser.add_argument("--out", type=Path, help="output folder (default: the run directory)")
    parser.add_argument(
        "--weights", choices=[BEST_DIR, LAST_DIR], default=BEST_DIR, help="checkpoint to load"
    )
    parser.add_argument(
        "--batch-size", type=int, help="images per batch (default: the run's eval batch size)"
    )
    parser.add_argument("--device", choices=DEVICES, default="auto", help="where to score")
    parser.add_argument(
        "--num-workers", type=int, help="image-loading processes (default: from the CPU count)"
    )
    parser.add_argument(
        "--no-cache",
        action="store_true",
        help="do not use the feature cache, even for a method that supports it",
    )
    parser.add_argument(
        "--bootstrap", type=int, default=1000, metavar="N", help="bootstrap resamples (0: no CIs)"
    )
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    add_executor_arguments(parser)
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def add_executor_arguments(parser: argparse.ArgumentParser, what: str = "scores the rows") -> None:
    """``--executor`` and ``--address``: where batch scoring (and preparation) runs."""
    parser.add_argument(
        "--executor",
        choices=EXECUTORS,
        default="local",
        help=f"what {what}: this process (local, the default) or Ray tasks (ray: pip install "
        "'crossfake[distributed]'), each on a GPU when scoring on CUDA",
    )
    parser.add_argument(
        "--address",
        help="with --executor ray: the cluster, 'auto' (the one this machine belongs to), 'ray://HEAD:10001' "
        "or HOST:PORT; default: $RAY_ADDRESS, else a new local Ray instance",
    )


def executor_from_args(args: argparse.Namespace) -> Executor | None:
    """The executor ``--executor``/``--address`` ask for; None for the local one (work in this process)."""
    if args.address is not None and args.executor != "ray":
        raise CrossfakeError("--address needs --executor ray")
    return None if args.executor == "local" else get_executor(args.executor, address=args.address)


def select_rows(manifest: pd.DataFrame, split: str | None, where: Path) -> tuple[pd.DataFrame, str]:
    """The rows to score and the split's name (``all`` for every row)."""
    if SPLIT_COLUMN not in manifest.columns:
        if split not in (None, ALL_ROWS):
            raise CrossfakeError(
                f"{where} has no '{SPLIT_COLUMN}' column, so --split {split} is impossible; "
                f"use --split {ALL_ROWS} or a split manifest"
            )
        return manifest, ALL_ROWS
    split = split or "test"
    if split == ALL_ROWS:
        return manifest, ALL_ROWS
    rows = manifest.loc[(manifest[SPLIT_COLUMN] == split).fillna(False).to_numpy()]
    if rows.empty:
        found = sorted(map(str, manifest[SPLIT_COLUMN].dropna().unique()))
        raise CrossfakeError(f"{where} has no rows in split {split!r} (splits present: {found})")
    return rows, split


def run(args: argparse.Namespace) -> int:
    if args.batch_size is not None and args.batch_size < 1:
        raise CrossfakeError(f"--batch-size must be >= 1, not {args.batch_size}")
    resolve_device(args.device)  # no CUDA for --device cuda: said before anything is read
    info = read_run_info(args.run_dir)
    # The rows first: a wrong split or manifest is reported before a backbone is loaded.
    manifest_path = Path(args.manifest or info.config.data.manifest)
    if manifest_path.is_dir():
        manifest_path = manifest_path / "manifest.parquet"
    rows, split = select_rows(read_manifest(manifest_path), args.split, manifest_path)
    name = args.name or (split if args.manifest is None else f"{manifest_path.stem}_{split}")
    executor = executor_from_args(args)
    out = args.out or info.run_dir
    log.info("scoring %d rows (split %s of %s) with %s", len(rows), split, manifest_path, info.run_dir)
    preds_path = out / f"predictions_{name}.parquet"
    if executor is None:
        run_or_dir = load_for_scoring(info.run_dir, weights=args.weights, device=args.device)
        used: Executor = LocalExecutor()
    else:  # the workers load the run; score_run loads it here on the CPU only
        run_or_dir = info.run_dir
        used = executor.for_device(resolve_device(args.device).type)
    try:
        preds = score_run(
            run_or_dir,
            rows,
            preds_path,
            weights=args.weights,
            device=args.device,
            batch_size=args.batch_size,
            num_workers=args.num_workers,
            feature_cache=False if args.no_cache else None,
            progress=not args.no_progress,
            executor=executor,
        )
        executor_info = used.describe()  # while connected: with the cluster's size
    finally:
        if executor is not None:
            executor.close()

    thresholds = {"0.5": 0.5, "val EER": info.threshold}
    group_col = current_column(args.group_col, preds.columns) if args.group_col is not None else None
    evaluations = {
        label: evaluate_predictions(
            preds, group_col=group_col, threshold=thr, n_boot=args.bootstrap, seed=args.seed
        )
        for label, thr in thresholds.items()
    }
    results = pd.concat(
        [
            e.results.assign(threshold=f"{label} ({thresholds[label]:.3f})")
            for label, e in evaluations.items()
        ],
        ignore_index=True,
    )
    table = format_results(results, "text", row_keys=("group", "threshold"))
    record = provenance(
        {
            "run_dir": str(info.run_dir.resolve()),
            "weights": args.weights,
            "manifest": str(manifest_path.resolve()),
            "manifest_sha256": file_sha256(manifest_path),
            "split": split,
            "predictions": str(preds_path.resolve()),
            "executor": executor_info,
            "val_threshold": info.threshold,
            "threshold_rule": info.record.threshold_rule,
            "metrics": {label: e.to_dict(curves=False) for label, e in evaluations.items()},
        }
    )
    write_json_atomic(out / f"metrics_{name}.json", record)
    write_text_atomic(out / f"metrics_{name}.md", _markdown(info, name, split, manifest_path, results))
    _plot(evaluations["0.5"], out / f"roc_{name}.png", f"{info.record.method}: {name}")

    print(f"run: {info.run_dir} ({info.record.method}, best val AUC {info.val_auc:.4f})")
    print(f"scored {len(preds)} rows of {manifest_path} (split {split}) -> {preds_path}")
    print(f"thresholds: 0.5 and the validation EER threshold {info.threshold:.4f}\n")
    print(table)
    print(f"\nmetrics: {out / f'metrics_{name}.json'}")
    return 0


def _markdown(info: RunInfo, name: str, split: str, manifest: Path, results: pd.DataFrame) -> str:
    head = (
        f"# {info.record.method} on {name}\n\n- run: `{info.run_dir}`\n- manifest: `{manifest}` "
        f"(split {split})\n- thresholds: 0.5 and the validation EER threshold {info.threshold:.4f}\n- run "
        f"record: {json.dumps({'best_step': info.record.best_step, 'best_val_auc': info.record.best_val_auc})}\n\n"
    )
    return head + format_results(results, "markdown", row_keys=("group", "threshold")) + "\n"


def _plot(evaluation: Evaluation, path: Path, title: str) -> None:
    try:
        plot_roc(evaluation, path, title=title)
    except CrossfakeError as e:  # e.g. a fakes-only manifest: metrics at a threshold, but no ROC curve
        log.warning("no ROC figure: %s", e)
