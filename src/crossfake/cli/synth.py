"""Write a synthetic FaceForensics++ corpus in the official layout.

Procedural faces (many identities, head motion, skin texture) are rendered into H.264 videos, and each
pair of originals (a, b) gives the fakes a_b and b_a of every chosen manipulation, with artifacts that
differ the way the real manipulations' do: FaceSwap (soft re-rendered face, colour mismatch, seam), Deepfakes (blurry
low-res face), Face2Face (expression warp) and NeuralTextures (smoothed mouth). Beside the videos come FF++'s split files
(train/val/test.json, 72/14/14% of the pairs) and conversion_dict.json, where a few YouTube videos
supply two originals of the same person, one of them across two splits. synth.json records the config,
and per original its identity and ground-truth face boxes.

The same seed gives the same videos. Videos already present are kept, so an interrupted run resumes.

Examples:
  crossfake synth data/synth-ffpp
  crossfake synth data/tiny --videos 8 --frames 8 --manipulations FaceSwap,NeuralTextures
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from crossfake.data.synth import SynthConfig, synthesize
from crossfake.data.synth.writer import CRF, fake_path, original_path, plan_corpus
from crossfake.utils.logging import get_logger

log = get_logger("synth")

_DEFAULTS = SynthConfig()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out", type=Path, metavar="OUT", help="corpus root to write (created if missing)")
    parser.add_argument(
        "--videos", type=int, default=_DEFAULTS.n_videos, help="number of original videos (even)"
    )
    parser.add_argument("--frames", type=int, default=_DEFAULTS.n_frames, help="frames per video")
    parser.add_argument(
        "--size",
        type=int,
        default=_DEFAULTS.size,
        help="frame width in pixels, a multiple of 8 (height = 3/4 of it)",
    )
    parser.add_argument("--fps", type=int, default=_DEFAULTS.fps, help="frames per second")
    parser.add_argument(
        "--seed", type=int, default=_DEFAULTS.seed, help="random seed (same seed, same corpus)"
    )
    parser.add_argument(
        "--manipulations",
        "--methods",
        dest="manipulations",
        default=",".join(_DEFAULTS.manipulations),
        help="comma-separated manipulations to write",
    )
    parser.add_argument(
        "--compression",
        choices=list(CRF),
        default=_DEFAULTS.compression,
        help="c23 = CRF 23, c40 = CRF 40, raw = lossless; also the folder name",
    )
    parser.add_argument(
        "--shared-youtube",
        type=int,
        default=_DEFAULTS.shared_youtube,
        help="YouTube videos that supply two originals (the same person twice)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="videos rendered in parallel (default: one per CPU core); does not change the output",
    )


def run(args: argparse.Namespace) -> int:
    config = SynthConfig(
        n_videos=args.videos,
        n_frames=args.frames,
        size=args.size,
        fps=args.fps,
        seed=args.seed,
        manipulations=tuple(m.strip() for m in args.manipulations.split(",") if m.strip()),
        compression=args.compression,
        shared_youtube=args.shared_youtube,
    )
    log.info(
        "writing %d originals x %d frames (%dx%d, %s) and their fakes under %s",
        config.n_videos,
        config.n_frames,
        config.width,
        config.height,
        config.compression,
        args.out,
    )
    start = time.perf_counter()
    out = synthesize(args.out, config, workers=args.workers, progress=True)
    elapsed = time.perf_counter() - start

    plan = plan_corpus(config)
    n_real = sum(original_path(out, config.compression, n).is_file() for n in plan.originals)
    print(f"synthetic FaceForensics++ at {out} ({elapsed:.1f} s)")
    print(f"  {'original':<15} {n_real:>4} videos")
    for manipulation in config.manipulations:
        n_fake = sum(
            fake_path(out, config.compression, manipulation, t, s).is_file()
            for a, b in plan.pairs
            for t, s in ((a, b), (b, a))
        )
        print(f"  {manipulation:<15} {n_fake:>4} videos")
    sizes = ", ".join(f"{s} {len(p)}" for s, p in plan.splits.items())
    print(
        f"  pairs: {sizes}; identities: {plan.n_identities}; shared YouTube videos: {config.shared_youtube}"
    )
    return 0
