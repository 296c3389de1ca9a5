"""Benchmark ``prepare`` and batch scoring on the local executor vs the Ray executor here: Ray's overhead.

A synthetic FF++ (``--videos`` originals and as many FaceSwap fakes, ``--length`` frames of 256x256 each) is
prepared with ``--frames`` frames per video, Haar faces and 64-pixel PNG crops, by

  local, in process     LocalExecutor(0): every video in this process
  local, N workers      LocalExecutor(N): a pool of N spawned processes (prepare's default executor)
  ray, N CPUs           RayExecutor on a new local Ray instance of N CPUs, one task per video
  ray, chunks of K      the same, K videos per task

each into a fresh folder, each run's outputs checked identical to the first one's (manifest, failures,
crop bytes). Wall time is the best of ``--repeat`` rounds. Starting the local Ray instance (``ray.init``,
paid once per ``crossfake prepare --executor ray`` that starts its own) is timed apart; the overhead ratio
is the Ray run's time over the N-worker pool's (which also pays its processes' start in every run).

Scoring (``score_run``, as ``crossfake evaluate``): a linear probe on ``--backbone`` (default the bundled
``synth-tiny`` CLIP; ``tiny`` for a random one) is trained for one epoch on the first half of the prepared
videos, then every crop is scored from its image (no feature cache), by

  here                  no executor: the batches in this process (the default)
  local, N workers      LocalExecutor(N): a pool of N spawned processes, each loading the run
  ray, N CPUs           RayExecutor on the same Ray instance: tasks of whole batches

each written to a predictions file checked identical (``assert_frame_equal``, exact) to the first one's.
The first Ray run pays its workers' start (importing torch, loading the run); later ones reuse them, which
is what a long scoring job sees, so the table gives the first and the best of ``--repeat``.

Run:  python benchmarks/bench_executors.py [--videos 16] [--length 16] [--frames 8] [--workers 2] [--repeat 2]
      [--only prepare|score] [--backbone synth-tiny] [--score-frames 16] [--batch-size 32]
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import pandas as pd  # noqa: E402

from crossfake.data.corpora import get_corpus  # noqa: E402
from crossfake.data.manifest import read_manifest  # noqa: E402
from crossfake.data.preprocess import PrepareConfig, prepare  # noqa: E402
from crossfake.data.synth import SynthConfig, synthesize  # noqa: E402
from crossfake.executors import Executor, LocalExecutor, RayExecutor  # noqa: E402
from crossfake.runs.config import TrainConfig  # noqa: E402
from crossfake.scoring import score_run  # noqa: E402
from crossfake.training import train  # noqa: E402


def same_outputs(out: Path, reference: Path) -> bool:
    a, b = read_manifest(out), read_manifest(reference)
    pd.testing.assert_frame_equal(a, b)
    pd.testing.assert_frame_equal(
        pd.read_parquet(out / "failures.parquet"), pd.read_parquet(reference / "failures.parquet")
    )
    return all((out / p).read_bytes() == (reference / p).read_bytes() for p in a["path"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=16, help="originals (even, >= 8); as many fakes")
    parser.add_argument("--length", type=int, default=16, help="frames per synthetic video")
    parser.add_argument("--frames", type=int, default=8, help="frames sampled per video")
    parser.add_argument("--workers", type=int, default=2, help="pool processes and Ray CPUs")
    parser.add_argument("--chunk", type=int, default=4, help="videos per Ray task in the chunked run")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--only", choices=("prepare", "score"), help="benchmark only this (default: both)")
    parser.add_argument("--backbone", default="synth-tiny", help="backbone of the scored linear probe")
    parser.add_argument("--score-frames", type=int, default=16, help="frames per video prepared for scoring")
    parser.add_argument("--batch-size", type=int, default=32, help="scoring batch size")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="bench_executors_"))
    try:
        root = synthesize(
            tmp / "ffpp",
            SynthConfig(n_videos=args.videos, n_frames=args.length, manipulations=("FaceSwap",)),
            workers=args.workers,
        )
        records = get_corpus("ffpp", root).records()
        config = PrepareConfig(frames=args.frames, size=64, face_detector="haar", workers=0)
        print(
            f"{len(records)} videos, {args.frames} of {args.length} frames each; "
            f"{os.cpu_count()} cores here, best of {args.repeat}\n"
        )

        import ray

        start = time.perf_counter()
        ray.init(
            address="local", num_cpus=args.workers, include_dashboard=False, logging_level=logging.WARNING
        )
        ray_start = time.perf_counter() - start

        if args.only != "score":
            bench_prepare(args, tmp, records, config, ray_start)
        if args.only != "prepare":
            bench_score(args, tmp, records)
        ray.shutdown()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def bench_prepare(args: argparse.Namespace, tmp: Path, records: list, config: PrepareConfig,
                  ray_start: float) -> None:
    runs: list[tuple[str, Executor]] = [
        ("local, in process", LocalExecutor(0)),
        (f"local, {args.workers} workers", LocalExecutor(args.workers)),
        (f"ray, {args.workers} CPUs", RayExecutor()),
        (f"ray, chunks of {args.chunk}", RayExecutor(chunksize=args.chunk)),
    ]
    times: dict[str, float] = {}
    reference: Path | None = None
    for i, (name, executor) in enumerate(runs):
        best = float("inf")
        for r in range(args.repeat):
            out = tmp / f"out{i}_{r}"
            t = time.perf_counter()
            prepare(records, out, config, progress=False, executor=executor)
            best = min(best, time.perf_counter() - t)
            reference = reference or out
            assert same_outputs(out, reference), f"{name}: outputs differ from the first run's"
        times[name] = best

    pool = times[f"local, {args.workers} workers"]
    print(f"{'executor':<22} {'wall s':>7} {'videos/s':>9} {'vs pool':>8}")
    for name, seconds in times.items():
        print(f"{name:<22} {seconds:7.2f} {len(records) / seconds:9.1f} {seconds / pool:7.2f}x")
    print(
        f"\nray.init of a local {args.workers}-CPU instance: {ray_start:.1f} s (once per run that starts one)"
    )
    print("outputs of every run identical (manifest, failures, crop bytes)\n")


def bench_score(args: argparse.Namespace, tmp: Path, records: list) -> None:
    """Scoring here vs a process pool vs Ray tasks, on crops prepared here (see the module docstring)."""
    prepared = tmp / "score_prepared"
    config = PrepareConfig(frames=args.score_frames, size=64, face_detector="haar", workers=0)
    prepare(records, prepared, config, progress=False, executor=LocalExecutor(args.workers))
    rows = read_manifest(prepared)
    videos = list(dict.fromkeys(rows["video_id"]))
    half = set(videos[::2])  # every other video trains (real and fake alike), the rest validates
    rows["split"] = ["train" if v in half else "val" for v in rows["video_id"]]
    split = prepared / "split.parquet"
    rows.to_parquet(split)
    run_dir = tmp / "score_run"
    train(
        TrainConfig.parse({
            "method": {"name": "linear_probe", "backbone": args.backbone},
            "data": {"manifest": str(split)},
            "train": {"epochs": 1, "batch_size": 32, "num_workers": 0, "feature_cache": False},
            "out": str(run_dir),
        }),
        progress=False,
    )
    rows = read_manifest(split)
    print(f"scoring {len(rows)} crops of {len(videos)} videos, linear probe on {args.backbone}, "
          f"batch {args.batch_size}, from the images (no feature cache)\n")
    runs: list[tuple[str, Executor | None]] = [
        ("here", None),
        (f"local, {args.workers} workers", LocalExecutor(args.workers)),
        (f"ray, {args.workers} CPUs", RayExecutor()),
    ]
    times: dict[str, tuple[float, float]] = {}
    reference = None
    for i, (name, executor) in enumerate(runs):
        seconds = []
        for r in range(args.repeat):
            out = tmp / f"preds{i}_{r}.parquet"
            t = time.perf_counter()
            got = score_run(run_dir, rows, out, device="cpu", batch_size=args.batch_size, num_workers=0,
                            feature_cache=False, progress=False, executor=executor)
            seconds.append(time.perf_counter() - t)
            if reference is None:
                reference = got
            pd.testing.assert_frame_equal(got, reference)
        times[name] = (seconds[0], min(seconds))
    here = times["here"][1]
    print(f"{'executor':<22} {'first s':>8} {'best s':>7} {'crops/s':>8} {'vs here':>8}")
    for name, (first, best) in times.items():
        print(f"{name:<22} {first:8.2f} {best:7.2f} {len(rows) / best:8.1f} {best / here:7.2f}x")
    print("predictions of every run identical (assert_frame_equal, exact)")


if __name__ == "__main__":
    main()
