"""Benchmark multi-process training: step time of N CPU processes vs one, with the same global batch.

Both runs are ``crossfake.training.train`` under ``torchrun`` (gloo on the CPU; one process is torchrun with
``--nproc_per_node 1``, so the launch is the same), on synthetic 64-pixel crops, training on images (no
feature cache) with the same global batch: one process with ``--global-batch`` rows per step, N processes
with ``--global-batch / N`` each. Per run: the median time between consecutive optimizer steps after
``--warmup`` steps (the loader, forward, backward, gradient all-reduce and AdamW step; validation runs only
after the last step), images/s, and the speed-up of N processes over one.

Each process gets ``OMP_NUM_THREADS=--threads`` (default 1), so N processes use N cores: on a machine with
fewer free cores than processes the ratio says how much the all-reduce and the extra processes cost, not
what N GPUs gain.

Run:  python benchmarks/bench_distributed.py [--method lora] [--backbone tiny] [--processes 2]
          [--global-batch 32] [--steps 20] [--rows 320]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image


def write_crops(root: Path, rows: int, size: int = 64) -> Path:
    """``rows`` training crops (half fake: a bright dot grid) and 32 validation crops; the split manifest."""
    from crossfake.data.manifest import write_manifest

    rng = np.random.default_rng(0)
    records = []
    for split, n in (("train", rows), ("val", 32)):
        for i in range(n):
            label, video_id = i % 2, f"bench/{split}/{i // 4:04d}_{i % 2}"
            rel = f"crops/{split}/{i:05d}.png"
            pixels = rng.integers(0, 200, (size, size, 3), dtype=np.uint8)
            if label:
                pixels[::2, ::2] = 255
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(pixels).save(root / rel)
            records.append({
                "sample_id": f"{video_id}/{i:06d}", "path": rel, "corpus": "bench",
                "manipulation": "FaceSwap" if label else "real", "video_id": video_id, "video_path": "/bench.mp4",
                "frame_idx": i, "label": label, "target_id": video_id, "source_id": video_id,
                "identity_group": video_id, "official_split": None, "face_x0": 0.0, "face_y0": 0.0,
                "face_x1": float(size), "face_y1": float(size), "det_score": 1.0, "num_faces": 1,
                "face_detector": "none", "split": split,
            })  # fmt: skip
    path = root / "split.parquet"
    write_manifest(pd.DataFrame(records), path)
    return path


def worker(config_path: str, timings_path: str) -> None:
    """One process of a run (under torchrun): train, recording when each optimizer step ends."""
    from accelerate import PartialState

    from crossfake.training import TrainConfig, train

    ends: list[float] = []
    train(
        TrainConfig.from_yaml(config_path), on_step=lambda _: ends.append(time.perf_counter()), progress=False
    )
    if PartialState().is_main_process:
        Path(timings_path).write_text(json.dumps(ends))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(args: argparse.Namespace, manifest: Path, root: Path, processes: int) -> dict[str, Any]:
    out = root / f"run_{processes}"
    config = {
        "method": {"name": args.method, "backbone": args.backbone},
        "data": {"manifest": str(manifest)},
        "train": {"epochs": 1, "max_steps": args.steps, "batch_size": args.global_batch // processes,
                  "eval_batch_size": 32, "lr": 1e-3, "num_workers": 0, "device": "cpu",
                  "feature_cache": False, "log_every": 1000},
        "out": str(out),
    }  # fmt: skip
    config_path, timings = root / f"config_{processes}.yaml", root / f"timings_{processes}.json"
    config_path.write_text(json.dumps(config))
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", str(processes),
        "--master_addr", "127.0.0.1", "--master_port", str(free_port()),
        __file__, "--worker", str(config_path), str(timings),
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "TOKENIZERS_PARALLELISM": "false"}
    start = time.perf_counter()
    subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    ends = json.loads(timings.read_text())
    steps = np.diff(ends)[args.warmup :]
    step_s = statistics.median(steps)
    return {"processes": processes, "step_s": step_s, "img_s": args.global_batch / step_s, "wall_s": wall}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--method", default="lora")
    parser.add_argument("--backbone", default="tiny", help="tiny (random), synth-tiny, or a CLIP hub id")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--global-batch", type=int, default=32, help="rows per optimizer step, all processes")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3, help="step times left out at the start")
    parser.add_argument("--rows", type=int, default=320, help="training crops (>= steps x global batch)")
    parser.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS per process")
    parser.add_argument("--worker", nargs=2, metavar=("CONFIG", "TIMINGS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(*args.worker)
        return
    if args.global_batch % args.processes:
        parser.error("--global-batch must be a multiple of --processes")
    with tempfile.TemporaryDirectory(prefix="bench_distributed_") as tmp:
        root = Path(tmp)
        manifest = write_crops(root, args.rows)
        results = [run(args, manifest, root, p) for p in (1, args.processes)]
    print(
        f"{args.method} on {args.backbone}, 64 px crops, global batch {args.global_batch}, {args.steps} "
        f"steps (median after {args.warmup}), OMP_NUM_THREADS={args.threads}, {os.cpu_count()} CPUs visible"
    )
    print(f"{'processes':>9}  {'batch/process':>13}  {'step ms':>8}  {'img/s':>7}  {'run wall s':>10}")
    for r in results:
        print(
            f"{r['processes']:>9}  {args.global_batch // r['processes']:>13}  {1000 * r['step_s']:>8.1f}  "
            f"{r['img_s']:>7.1f}  {r['wall_s']:>10.1f}"
        )
    print(
        f"speed-up of {args.processes} processes over 1: {results[0]['step_s'] / results[1]['step_s']:.2f}x"
    )


if __name__ == "__main__":
    main()
