"""Benchmark ``crossfake detect``: seconds per 10-second 640×480 video, by frames sampled per second.

Writes a 640×480 H.264 video of a moving synthetic face (crossfake synth's renderer, 25 fps, crf 23, one
keyframe per ``--gop`` frames, as ``bench_prepare.py`` does), builds the linear probe on a ViT-B/32 CLIP
with the OpenAI checkpoint's shapes and *random* weights (``bench_clip.random_clip``: no download; speed
does not depend on the weight values), and runs the real detect pipeline (PyAV streaming decode, OpenCV
Haar face detection, prepare's crop geometry, batched CLIP scoring) on the video at each ``--fps``:

  frames      frames scored (fps × 10 s)
  total       seconds for the whole video (best of ``--repeat``), split into
  decode      demuxing + decoding, and RGB conversion of the sampled frames only
  faces       Haar face detection + square crops
  model       CLIP preprocessing + ViT-B/32 forward + linear head, batches of ``--batch-size``

One untimed warm-up run comes first (the first forward of a model is slower).

Run:  python benchmarks/bench_detect.py [--fps 0.5 1 2 4 8] [--seconds 10] [--batch-size 32] [--threads N]
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import torch
from bench_clip import BACKBONE, random_clip
from bench_prepare import write_video

from crossfake.data.preprocess import CropSpec
from crossfake.inference import DetectPipeline, FrameSampling
from crossfake.methods import method_class, method_config
from crossfake.runs.config import TrainConfig
from crossfake.runs.directory import RunInfo
from crossfake.runs.record import RunRecord


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fps", type=float, nargs="+", default=[0.5, 1, 2, 4, 8], help="frames per second to score")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of the video (default 10)")
    parser.add_argument("--gop", type=int, default=250, help="keyframe interval of the video (FF++ c23: 250)")
    parser.add_argument("--batch-size", type=int, default=32, help="face crops per model call (default 32)")
    parser.add_argument("--repeat", type=int, default=1, help="runs per setting; the best is shown (default 1)")
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's own)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory(prefix="bench_detect_") as work:
        video = write_video(Path(work) / "face.mp4", args.seconds, 25, args.gop, seed=0)
        t0 = time.perf_counter()
        probe = method_class("linear_probe")(method_config("linear_probe", backbone=BACKBONE), random_clip())
        build = time.perf_counter() - t0
        # A stand-in for a trained run: its config (for the precision) and a record with a threshold.
        config = TrainConfig.parse(
            {"method": {"name": "linear_probe", "backbone": BACKBONE}, "data": {"manifest": work},
             "train": {"precision": "fp32"}}, check_paths=False,
        )
        record = RunRecord(method="linear_probe", parameters={}, steps=0, best_step=0, best_val_auc=float("nan"),
                           threshold=0.5, wall_time_s=0.0, threshold_name="0.5 (an untrained probe)")
        info = RunInfo(Path("random ViT-B/32"), config, record)
        pipeline = DetectPipeline(probe, info, CropSpec(face_detector="haar"), batch_size=args.batch_size)
        print(
            f"torch {torch.__version__} on {platform.processor() or 'CPU'}: {torch.get_num_threads()} threads, "
            f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}; ViT-B/32 (random weights) built in "
            f"{build:.1f} s; {args.seconds:g} s 640×480 H.264 video at 25 fps, keyframe every {args.gop} frames; "
            f"batch {args.batch_size}, Haar faces, prepare's crop (1.3× margin, 256 px)\n"
        )
        pipeline.sampling = FrameSampling(fps=1, max_frames=10**6)
        pipeline.detect(video)  # warm-up

        header = f"{'fps':>5} {'frames':>6} {'faces':>5} {'total s':>8} {'decode':>7} {'faces':>7} {'model':>7} {'s/frame':>8}"
        print(header)
        print("-" * len(header))
        for fps in args.fps:
            pipeline.sampling = FrameSampling(fps=fps, max_frames=10**6)
            best = min((pipeline.detect(video) for _ in range(args.repeat)), key=lambda r: r.timing.total)
            t, n = best.timing, len(best.frames)
            faces = sum(len(f.faces) for f in best.frames)
            print(
                f"{fps:5g} {n:6d} {faces:5d} {t.total:8.2f} {t.decode:7.2f} {t.faces:7.2f} {t.model:7.2f} "
                f"{t.total / max(n, 1):8.3f}"
            )


if __name__ == "__main__":
    main()
