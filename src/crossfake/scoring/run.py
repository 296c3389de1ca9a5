"""Score a trained run: the one library call behind ``crossfake evaluate``, the experiment runner and ``detect``.

Loading a run's detector, putting it on the device of :func:`~crossfake.scoring.device.resolve_device`,
taking its batch size, loader processes and feature cache from the run's config, and streaming its scores
(:func:`~crossfake.scoring.predict.predict_manifest`) used to be assembled by each caller; they now differ
only in the options they pass.

With an ``executor`` (:mod:`crossfake.executors`), the rows are scored by its workers: each loads the run
once per process (:class:`RunLoader`) and scores whole batches, the same batches as here, and this process
writes the resumable part files and the predictions file exactly as it does alone (see
:func:`~crossfake.scoring.predict.predict_manifest`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from crossfake.data.manifest import read_manifest
from crossfake.executors.base import Executor
from crossfake.methods.base import Detector
from crossfake.runs.directory import BEST_DIR, RunInfo, load_run
from crossfake.scoring.data import CropTransform
from crossfake.scoring.device import resolve_device, resolve_precision
from crossfake.scoring.features import FeatureCache
from crossfake.scoring.predict import predict_manifest
from crossfake.utils.errors import CrossfakeError


@dataclass(frozen=True)
class ScoringRun:
    """A trained run loaded for scoring: its detector (in eval mode, on ``device``) and its record."""

    detector: Detector
    info: RunInfo
    device: torch.device
    weights: str = BEST_DIR


def load_for_scoring(
    run_dir: str | Path, *, weights: str = BEST_DIR, device: str | torch.device | None = None
) -> ScoringRun:
    """Load a run written by ``crossfake train`` onto the scoring device.

    Args:
        run_dir: the run directory.
        weights: ``best`` (the checkpoint selected on validation AUC) or ``last``.
        device: ``auto``/None (CUDA when visible, else the CPU), ``cpu`` or ``cuda``; asking for CUDA
            without one is an error, raised before the backbone is loaded.

    Raises:
        CrossfakeError: no CUDA device for ``cuda``; the folder is missing, unfinished or of another format.
    """
    target = resolve_device(device)
    detector, info = load_run(run_dir, weights=weights)  # checks the run's format before the backbone loads
    return ScoringRun(detector.to(target), info, target, weights)


#: The run a worker process loaded last, by :meth:`RunLoader.key`: one at a time, so memory stays bounded.
_WORKER_RUN: dict[tuple, Detector] = {}


@dataclass(frozen=True)
class RunLoader:
    """Loads a run in a worker process (of a pool or a Ray cluster), once per process (picklable).

    The loaded detector is kept for the next task while the run directory, the checkpoint, the device and
    the checkpoint's files (size and modification time, so a run trained again is loaded again) are the same.

    Args:
        run_dir: the run directory, absolute (a worker does not run in the caller's folder).
        weights: ``best`` or ``last``.
        device: ``cpu`` or ``cuda`` (a Ray worker sees only the GPUs given to it, as ``cuda:0``...).
    """

    run_dir: str
    weights: str = BEST_DIR
    device: str = "cpu"

    def key(self) -> tuple:
        folder = Path(self.run_dir) / self.weights
        try:
            files = tuple(sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in folder.iterdir()))
        except OSError:  # load_for_scoring says what is wrong
            files = ()
        return (self.run_dir, self.weights, self.device, files)

    def __call__(self) -> Detector:
        key = self.key()
        detector = _WORKER_RUN.get(key)
        if detector is None:
            _WORKER_RUN.clear()  # the previous run's memory first
            detector = load_for_scoring(self.run_dir, weights=self.weights, device=self.device).detector
            _WORKER_RUN[key] = detector
        return detector


def score_run(
    run: str | Path | ScoringRun,
    rows: pd.DataFrame | str | Path,
    out: str | Path | None = None,
    *,
    weights: str = BEST_DIR,
    device: str | torch.device | None = None,
    precision: str | None = None,
    batch_size: int | None = None,
    num_workers: int | None = None,
    feature_cache: bool | FeatureCache | None = None,
    progress: bool = True,
    transform: CropTransform | None = None,
    executor: Executor | None = None,
    part_rows: int = 50_000,
    task_rows: int | None = None,
) -> pd.DataFrame:
    """Score manifest rows with a trained run, streaming (resumable into ``out``).

    Args:
        run: a run directory, or a run already loaded by :func:`load_for_scoring` (to score several row
            sets without loading the backbone again; ``weights`` and ``device`` are then its own).
        rows: manifest rows (crop paths resolve against ``rows.attrs["root"]``, as
            :func:`~crossfake.data.manifest.read_manifest` sets it), or a manifest file or prepared folder
            whose every row is scored.
        out: Parquet file the predictions stream to (resumable); None: only returned.
        weights: ``best`` or ``last`` (with a run directory).
        device: ``auto``/None, ``cpu`` or ``cuda`` (with a run directory), see :func:`load_for_scoring`.
        precision: ``auto`` (bf16 autocast on CUDA, fp32 on the CPU), ``fp32`` or ``bf16``; None: the run's
            ``train.precision`` (an explicit ``fp32``/``bf16`` carries over; ``auto`` resolves for the
            scoring device, so a run validated in bf16 on a GPU is scored in fp32 on the CPU).
        batch_size: images per batch; None: the run's ``train.eval_batch_size`` (else its batch size).
        num_workers: image-loading processes; None: the run's ``train.num_workers`` (else the default).
        feature_cache: None: as the run was trained (``train.feature_cache``, in ``train.cache_dir``);
            False: never; True: in the run's cache folder; or a :class:`FeatureCache` to use.
        progress: show a progress bar.
        transform: applied to each decoded crop (an RGB PIL image, returned as one) before the method's
            own preprocessing, e.g. a perturbation of a robustness study; scoring then bypasses the
            feature cache. Picklable when loader processes are spawned (or the executor's workers run
            elsewhere).
        executor: score in this executor's workers (e.g. a
            :class:`~crossfake.executors.RayExecutor`, with ``num_gpus=1`` for GPU workers); None: here.
            Each worker loads the run once per process, on ``device`` (the run's own device for a loaded
            run), and scores whole batches with the same batch size, precision, transform and feature
            cache; the part files, the resume and the predictions are those of scoring here. This
            process then loads the run only on the CPU, to fingerprint the parts.
        part_rows: rows per resumable part file of ``out``.
        task_rows: with an executor, rows per task (see :func:`~crossfake.scoring.predict.predict_manifest`).

    Returns:
        The predictions (``sample_id, video_id, corpus, manipulation, label, score, logit`` and a method's
        detail columns), one row per input row, in order.
    """
    if batch_size is not None and batch_size < 1:
        raise CrossfakeError(f"batch size must be >= 1, not {batch_size}")
    if not isinstance(rows, pd.DataFrame):
        rows = read_manifest(rows)
    extra: dict[str, Any] = {}
    if executor is None or executor.in_process:
        loaded = run if isinstance(run, ScoringRun) else load_for_scoring(run, weights=weights, device=device)
    else:
        if isinstance(run, ScoringRun):
            loaded, target = run, run.device
        else:
            target = resolve_device(device)  # checked here, before any worker starts
            loaded = load_for_scoring(run, weights=weights, device="cpu")
        # Workers decide nothing: the precision is resolved for their device, here; GPU tasks for CUDA.
        precision = resolve_precision(precision or loaded.info.config.train.precision, target)
        executor = executor.for_device(target.type)
        extra["loader"] = RunLoader(str(loaded.info.run_dir.absolute()), loaded.weights, target.type)
    config = loaded.info.config
    opts = config.train
    if isinstance(feature_cache, FeatureCache):
        cache: FeatureCache | None = feature_cache
    elif feature_cache if feature_cache is not None else opts.feature_cache:
        cache = FeatureCache(opts.cache_dir)
    else:
        cache = None
    return predict_manifest(
        loaded.detector,
        rows,
        batch_size or config.eval_batch_size,
        out=out,
        cache=cache,
        precision=precision or opts.precision,
        num_workers=num_workers if num_workers is not None else opts.num_workers,
        progress=progress,
        crop_transform=transform,
        executor=executor,
        part_rows=part_rows,
        task_rows=task_rows,
        **extra,
    )
