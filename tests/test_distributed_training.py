"""Multi-process training equals one process with the same global batch.

Two CPU processes (``torchrun``, gloo) train a tiny detector through ``crossfake train``; one process
trains the same config with a per-process batch twice as large, i.e. the same global batch. Every optimizer
step then sees the same training rows, so the two runs must end with the same weights, the same validation
predictions and the same threshold, up to float rounding: a step's gradient is one sum over its rows in one
process and two partial sums (one per process) added by the all-reduce in the other, which reorders float32
additions (~1e-7 relative per step; AdamW's normalised updates keep that from growing over 6 steps).
Hence ``RTOL``: 1e-5 relative, a hundred times that rounding, and orders of magnitude below what a real
difference in the rows of a step or in the weighting of the gradient moves (measured: >1e-2 on the
threshold when the last, short batch was padded with repeated rows).

Both paths are covered: the whole detector on images (LoRA without dropout, whose masks could not match
across process counts) and the head on cached features (the linear probe, with gradient accumulation).
The 37 training rows do not fill the last global batch, so an epoch ends with a short step, split unevenly
between the processes or leaving one of them no row at all: where sharding, padding and loss weighting go
wrong.

``accelerate launch --cpu`` runs one process unless MPI is installed, so the test launches with ``torchrun``;
``accelerate launch --multi_gpu`` uses the same launcher on GPUs. A fast unit test checks the sharding itself
(:class:`~crossfake.training.data.ShardedBatches`) for several row counts and process counts.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from safetensors.torch import load_file

from crossfake.data.manifest import write_manifest
from crossfake.training import TrainConfig, train
from crossfake.training.data import EpochShuffle, ShardedBatches

PROCESSES = 2
#: Relative tolerance of weights, logits and threshold (see the module docstring); ATOL for values near 0.
RTOL, ATOL = 1e-5, 1e-6
#: (split, label, method, videos, frames per video): 37 training rows, so that the last global batch of an
#: epoch is short and splits unevenly (16 + 16 + 5 rows), or leaves one process only a stand-in (12 * 3 + 1).
VIDEOS = [
    ("train", 0, "real", 6, 3),
    ("train", 0, "real", 1, 1),
    ("train", 1, "FaceSwap", 6, 3),
    ("val", 0, "real", 3, 3),
    ("val", 1, "FaceSwap", 3, 3),
]
RUN_FILES = {
    "config.yaml",
    "run.json",
    "train.log",
    "val_predictions.parquet",
    "best/model.safetensors",
    "last/model.safetensors",
    "last/training_state.pt",
    "last/state.json",
}


def _crop(rng: np.random.Generator, fake: bool) -> Image.Image:
    # Noise; a fake carries a bright dot grid, which even the random tiny CLIP's features separate.
    pixels = rng.integers(0, 200, (32, 32, 3), dtype=np.uint8)
    if fake:
        pixels[::2, ::2] = 255
    return Image.fromarray(pixels)


@pytest.fixture(scope="module")
def manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("crops")
    rng = np.random.default_rng(0)
    rows = []
    for k, (split, label, manipulation, videos, frames) in enumerate(VIDEOS):
        for v in range(videos):
            video_id = f"tiny/{manipulation}/{split}{k}{v:02d}"
            for f in range(frames):
                rel = f"crops/{video_id}/{f:06d}.png"
                (root / rel).parent.mkdir(parents=True, exist_ok=True)
                _crop(rng, bool(label)).save(root / rel)
                rows.append({
                    "sample_id": f"{video_id}/{f:06d}", "path": rel, "corpus": "tiny", "manipulation": manipulation,
                    "video_id": video_id, "video_path": f"/videos/{split}{v:02d}.mp4", "frame_idx": f,
                    "label": label, "target_id": video_id, "source_id": video_id,
                    "identity_group": video_id, "official_split": None, "face_x0": 0.0, "face_y0": 0.0,
                    "face_x1": 32.0, "face_y1": 32.0, "det_score": 1.0, "num_faces": 1,
                    "face_detector": "none", "split": split,
                })  # fmt: skip
    path = root / "split.parquet"
    write_manifest(pd.DataFrame(rows), path)
    return path


#: name -> (method options, per-process train options, optimizer steps); the one-process reference has
#: PROCESSES times the batch_size.
CASES: dict[str, tuple[dict[str, Any], dict[str, Any], int]] = {
    # The whole forward on images; LoRA on the tiny CLIP's attention, so DDP averages real gradients.
    # Global batches of 16: steps of 16, 16 and 5 rows (3 + 2 per process) per epoch.
    "images-lora": (
        {"name": "lora", "r": 4, "alpha": 8, "dropout": 0.0},
        {"feature_cache": False, "batch_size": 8},
        6,
    ),
    # The head on cached features; global micro-batches of 12, two per step: steps of 12 + 12 rows and
    # 12 + 1, where the second process has only a stand-in for the last row, weighed 0.
    "feature-cache-linear-probe": (
        {"name": "linear_probe"},
        {"feature_cache": True, "batch_size": 6, "grad_accum": 2},
        4,
    ),
}
#: What every process runs: the public trainer, once per config (one launch for all cases).
DRIVER = """
import sys
from crossfake.training import TrainConfig, train
for path in sys.argv[1:]:
    train(TrainConfig.from_yaml(path), progress=False)
"""


def _config(manifest: Path, out: Path, case: str, processes: int) -> dict[str, Any]:
    method, per_process, _ = CASES[case]
    return {
        "method": {"backbone": "tiny", **method},
        "data": {"manifest": str(manifest)},
        "train": {"epochs": 2, "lr": 1e-2, "num_workers": 0, "device": "cpu", "eval_batch_size": 8,
                  "cache_dir": str(out.parent / f"{out.name}_cache"), **per_process,
                  "batch_size": per_process["batch_size"] * PROCESSES // processes},
        "out": str(out),
    }  # fmt: skip


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def two_process_runs(manifest: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every case trained by ``PROCESSES`` CPU processes under torchrun (gloo): ``<root>/<case>/two``."""
    root = tmp_path_factory.mktemp("distributed")
    paths = []
    for case in CASES:
        (root / case).mkdir()
        paths.append(root / case / "two.yaml")
        config = _config(manifest, root / case / "two", case, PROCESSES)
        paths[-1].write_text(json.dumps(config))  # JSON is YAML
    (root / "driver.py").write_text(DRIVER)
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", str(PROCESSES),
        "--master_addr", "127.0.0.1", "--master_port", str(_free_port()),
        str(root / "driver.py"), *map(str, paths),
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    return root


def _files(run_dir: Path) -> set[str]:
    return {str(p.relative_to(run_dir)) for p in run_dir.rglob("*") if p.is_file()}


def _close(a: Any, b: Any, what: str) -> None:
    np.testing.assert_allclose(np.asarray(a, np.float64), np.asarray(b, np.float64), rtol=RTOL, atol=ATOL,
                               err_msg=what)  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("case", list(CASES))
def test_two_processes_match_one_with_the_same_global_batch(
    manifest: Path, two_process_runs: Path, tmp_path: Path, case: str
) -> None:
    one = _config(manifest, tmp_path / "one", case, processes=1)
    train(TrainConfig.parse(one), progress=False)

    runs = {"one": tmp_path / "one", "two": two_process_runs / case / "two"}
    # Only the main process wrote, and it wrote a complete run: the same files, nothing half-written.
    assert _files(runs["one"]) == _files(runs["two"]) == RUN_FILES
    records = {n: json.loads((d / "run.json").read_text()) for n, d in runs.items()}
    assert (records["one"]["num_processes"], records["two"]["num_processes"]) == (1, PROCESSES)
    assert records["two"]["steps"] == records["one"]["steps"] == CASES[case][2]
    for key in ("best_step", "data", "parameters"):
        assert records["two"][key] == records["one"][key], key
    assert [h["step"] for h in records["two"]["history"]] == [h["step"] for h in records["one"]["history"]]
    aucs = {n: [h["val_auc"] for h in r["history"]] for n, r in records.items()}
    _close(aucs["two"], aucs["one"], "validation AUC per epoch")
    _close(records["two"]["threshold"], records["one"]["threshold"], "threshold")
    log = (runs["two"] / "train.log").read_text()
    assert f"x{PROCESSES}" in log and log.count("finished:") == 1  # the main process's log only

    for name in ("best/model.safetensors", "last/model.safetensors"):
        a, b = load_file(runs["two"] / name), load_file(runs["one"] / name)
        assert a.keys() == b.keys() and a
        for key in a:
            _close(a[key], b[key], f"{name}: {key}")
    preds = {n: pd.read_parquet(d / "val_predictions.parquet") for n, d in runs.items()}
    assert preds["two"]["sample_id"].tolist() == preds["one"]["sample_id"].tolist()
    _close(preds["two"]["logit"], preds["one"]["logit"], "validation logits")

    if CASES[case][1]["feature_cache"]:
        # One entry per row set (train, val), each written once, by the main process; nothing left over.
        cache = two_process_runs / case / "two_cache"
        assert sorted(p.suffix for p in cache.rglob("*") if p.is_file()) == [".json", ".json", ".npy", ".npy"]
        assert records["two"]["feature_cache"] == str(cache)
        assert log.count("feature cache miss") == 2


@pytest.mark.parametrize("world", [1, 2, 3])
@pytest.mark.parametrize("n", [1, 2, 7, 12, 37])
def test_sharded_batches_split_each_global_batch_without_repeats(n: int, world: int) -> None:
    batch = 4
    order = list(EpochShuffle(n, seed=3))
    shards = [ShardedBatches(EpochShuffle(n, seed=3), batch, rank, world) for rank in range(world)]
    per_rank = [list(s) for s in shards]
    assert {len(b) for b in per_rank} == {len(shards[0])} == {-(-n // (batch * world))}  # same step count
    for j in range(len(shards[0])):
        counts = [s.rows(j) for s in shards]
        total = counts[0][1]
        assert total == min(batch * world, n - j * batch * world) and {c[1] for c in counts} == {total}
        # The ranks' real rows, in rank order, are exactly one process's global batch j; stand-ins count 0.
        real = [row for rank, (own, _) in enumerate(counts) for row in per_rank[rank][j][:own]]
        assert real == order[j * batch * world : j * batch * world + total]
        assert max(own for own, _ in counts) - min(own for own, _ in counts) <= 1
        assert all(len(per_rank[rank][j]) == max(own, 1) for rank, (own, _) in enumerate(counts))
