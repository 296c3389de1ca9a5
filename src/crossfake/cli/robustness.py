"""Robustness study: a trained run's test AUC under the DeeperForensics perturbations, per type and level.

Scores the test crops of RUN_DIR (a `crossfake train` run, or a method of an experiment:
RUN/methods/<entry>) clean and under the seven perturbations of DeeperForensics-1.0 (Jiang et al.,
CVPR 2020) at five levels each, with the authors' parameters:

  CS    colour saturation change        chroma x 0.4, 0.3, 0.2, 0.1, 0.0
  CC    colour contrast change          values x 0.85, 0.725, 0.6, 0.475, 0.35
  BW    local block-wise distortion     16, 32, 48, 64, 80 grey 8 px blocks (per 256 px of crop)
  GNC   white Gaussian noise (YCbCr)    variance 0.001, 0.002, 0.005, 0.01, 0.05
  GB    Gaussian blur                   kernel 7, 9, 13, 17, 21 px (per 256 px), sigma = kernel / 6
  JPEG  DeeperForensics' "JPEG"         down/up-sampling by 2, 3, 4, 5, 6
  VC    video compression               H.264 CRF 30, 32, 35, 38, 40 over each video's crops

The perturbation is applied to each decoded crop before the method's preprocessing; VC encodes each
video's crops, in frame order, as one clip and scores the decoded frames. Every cell (a perturbation at a
level, and the clean baseline) gives frame- and video-level AUC with 95% bootstrap CIs over videos.

Writes into --out (default RUN_DIR/robustness):

  robustness.md     frame and video AUC [CI] per perturbation (rows) and level (columns), their mean
                    and its drop from clean, and the parameters
  robustness.csv    one row per cell: AUCs, CIs, drop from clean, frames, videos, seconds
  robustness.json   the same with the settings and provenance
  robustness.png    AUC against level, one line per perturbation, clean dashed (frame and video panels)
  cells/<cell>/     predictions.parquet and metrics.json of each cell

Resumable: a finished cell is skipped, an interrupted one continues, and a cell whose settings changed
(other weights, rows or seed) is redone.

Examples:
  crossfake robustness runs/demo/methods/linear_probe
  crossfake robustness runs/lora --perturbations GB,JPEG,VC --levels 1,3,5
  crossfake robustness runs/lora --manipulations real,FaceSwap --out runs/lora/robustness_faceswap
  crossfake robustness runs/lora --executor ray --address auto     # the crops scored by Ray tasks
  crossfake robustness runs/lora --manifest prepared_cdf/manifest.parquet --split all --out runs/lora/rob_cdf
"""

from __future__ import annotations

import argparse
from pathlib import Path

from crossfake.cli.evaluate import add_executor_arguments, executor_from_args
from crossfake.data.perturbations import LEVELS, PERTURBATIONS
from crossfake.experiments.robustness import ScoreOptions, run_robustness


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", type=Path, help="run directory written by `crossfake train`")
    parser.add_argument(
        "--perturbations",
        default="all",
        help=f"comma-separated perturbation codes ({', '.join(PERTURBATIONS)}) or 'all'",
    )
    parser.add_argument(
        "--levels",
        default=f"{LEVELS[0]}-{LEVELS[-1]}",
        help="comma-separated levels or a range, e.g. 1,3,5 or 1-5",
    )
    parser.add_argument(
        "--split",
        help="split of the manifest to perturb and score (default: test; 'all': every row, also the default "
        "for a manifest without a split column)",
    )
    parser.add_argument("--manifest", type=Path, help="score this manifest instead of the run's own")
    parser.add_argument(
        "--manipulations",
        "--sources",  # the flag's name before the vocabulary rename
        dest="manipulations",
        help="comma-separated manipulations (the manifest's manipulation column) to keep, e.g. real,FaceSwap "
        "(default: every row of the split)",
    )
    parser.add_argument("--out", type=Path, help="output folder (default: RUN_DIR/robustness)")
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of the random perturbations and the bootstrap"
    )
    parser.add_argument(
        "--bootstrap", type=int, default=1000, metavar="N", help="bootstrap resamples of the CIs (0: none)"
    )
    parser.add_argument("--weights", choices=["best", "last"], default="best", help="checkpoint to load")
    parser.add_argument(
        "--batch-size", type=int, help="images per batch (default: the run's eval batch size)"
    )
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto", help="where to score")
    parser.add_argument("--num-workers", type=int, help="image-loading processes (default: the run's)")
    parser.add_argument(
        "--no-cache", action="store_true", help="score the clean crops without the run's feature cache"
    )
    parser.add_argument(
        "--keep-vc-crops",
        action="store_true",
        help="keep the video-compressed crops (OUT/vc_crops/<level>/) after their cell is finished",
    )
    add_executor_arguments(parser, what="scores the crops")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars (logs only)")


def run(args: argparse.Namespace) -> int:
    from crossfake.evaluation.tables import format_with_ci
    from crossfake.utils.errors import CrossfakeError

    if args.batch_size is not None and args.batch_size < 1:
        raise CrossfakeError(f"--batch-size must be >= 1, not {args.batch_size}")
    if args.num_workers is not None and args.num_workers < 0:
        raise CrossfakeError(f"--num-workers must be >= 0, not {args.num_workers}")
    options = ScoreOptions(
        weights=args.weights,
        device=args.device,
        batch_size=args.batch_size,
        num_workers=args.num_workers,
        feature_cache=not args.no_cache,
        progress=not args.no_progress,
        executor=executor_from_args(args),
    )
    try:
        result = run_robustness(
            args.run_dir,
            out=args.out,
            perturbations=args.perturbations,
            levels=args.levels,
            split=args.split,
            manifest=args.manifest,
            manipulations=args.manipulations,
            seed=args.seed,
            bootstrap=args.bootstrap,
            options=options,
            keep_vc_crops=args.keep_vc_crops,
        )
    finally:
        if options.executor is not None:
            options.executor.close()
    table = result.table
    print(
        f"\nrobustness of {args.run_dir}: {len(result.scored)} cells scored, {len(result.skipped)} finished "
        f"earlier; {result.wall_s:.1f} s"
    )
    width = max(len(c) for c in table["cell"])
    print(f"{'cell':<{width}}  {'frame AUC [95% CI]':<26}  video AUC [95% CI]")
    for r in table.itertuples(index=False):
        frame = format_with_ci(r.frame_auc, r.frame_low, r.frame_high)
        video = format_with_ci(r.video_auc, r.video_low, r.video_high)
        print(f"{r.cell:<{width}}  {frame:<26}  {video}")
    out = result.out
    print(f"\ntables: {out / 'robustness.md'} (.csv, .json)\nfigure: {out / 'robustness.png'}")
    return 0
