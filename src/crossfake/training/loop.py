"""The one trainer, for every method: ``train(config) -> RunInfo``.

It knows detectors only through :class:`~crossfake.methods.base.Detector`: ``training_step`` gives the
loss, ``trainable_parameters`` what AdamW updates, ``predict`` the validation logits. The single
method-dependent decision is generic: a detector that ``supports_feature_cache`` (and keeps the default
loss) has its frozen features extracted once through :class:`FeatureCache`, and only its ``head`` is
trained, on the cached tensors.

The rules that make results trustworthy:

- only train and val rows are loaded (:func:`training_rows`); test labels are never read;
- the checkpoint kept as ``best/`` is the one with the highest *validation* AUC (frame level);
- the decision threshold is chosen on validation predictions: the EER threshold, where the false
  positive and false negative rates cross, which balances the two kinds of error whatever the class
  ratio (report 1's tests are 1 real : 10 fake, where a 0.5 threshold or F1 reward calling everything fake);
- a detector with no trainable parameters (a prompted VLM) is not optimised at all: its run is the
  scoring of the validation rows and the threshold chosen on them, with an empty ``best/`` weights file,
  so ``crossfake evaluate`` treats it like any other run;
- everything random is seeded, and shuffling is a pure function of (seed, epoch), so an interrupted run
  resumed from ``last/`` ends with the same weights as an uninterrupted one.

Multi-GPU: ``accelerate launch -m crossfake.cli.main train cfg.yaml`` (or ``torchrun``) runs this same code in
every process. :class:`~crossfake.training.data.ShardedBatches` gives each process its part of every global
batch (``batch_size`` rows per process), each step's loss weighs every row alike however they are split,
DDP averages the gradients, and only the main process writes files: a run on N processes ends with the
weights of one process with N times the batch, up to float rounding (``tests/test_distributed_training.py``).
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, fields
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from accelerate import Accelerator
from accelerate.utils import InitProcessGroupKwargs, send_to_device, set_seed
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from tqdm.auto import tqdm

from crossfake.data.preprocess.run import crop_spec_of_manifest
from crossfake.evaluation.metrics import eer, roc_auc
from crossfake.methods import Detector, create_detector
from crossfake.runs.config import TrainConfig
from crossfake.runs.directory import (
    BEST_DIR,
    CONFIG_FILE,
    LAST_DIR,
    LOG_FILE,
    VAL_PREDICTIONS_FILE,
    WEIGHTS_FILE,
    RunInfo,
    apply_weights,
    config_changes,
    load_last,
    load_weights,
    read_run_info,
    rng_state,
    save_last,
    save_weights,
    set_rng_state,
    write_run_record,
)
from crossfake.runs.record import RunRecord
from crossfake.scoring.data import Collate, FaceCropDataset, make_loader
from crossfake.scoring.device import autocast, resolve_precision
from crossfake.scoring.features import FeatureCache
from crossfake.scoring.predict import predict_manifest, sigmoid
from crossfake.training.data import (
    PseudoFakeDataset,
    ShardedBatches,
    read_training_manifest,
    shard_loader,
    shuffled_loader,
    training_dataset,
    training_rows,
    write_examples,
)
from crossfake.utils.errors import CrossfakeError
from crossfake.utils.io import write_text_atomic
from crossfake.utils.logging import LOGGER_NAME, get_logger
from crossfake.utils.provenance import file_sha256, provenance
from crossfake.utils.workers import default_workers

log = get_logger("train")

THRESHOLD_RULE = (
    "EER threshold of the validation predictions of the best checkpoint: predicted fake iff "
    "p(fake) >= threshold, where the validation FPR and FNR cross"
)


class TrainStep(nn.Module):
    """One training step's forward, as the module ``accelerate`` wraps.

    Under DDP, gradients are averaged only for computations that run through the wrapped module's
    ``forward``; routing ``training_step`` through here is what makes every method's custom loss
    multi-GPU-safe without the trainer knowing the method.
    """

    def __init__(self, detector: Detector, on_features: bool) -> None:
        super().__init__()
        self.detector = detector
        self.on_features = on_features

    def forward(self, inputs: Any, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.on_features:
            logits = self.detector.head(inputs)
            loss = nn.functional.binary_cross_entropy_with_logits(logits.float(), labels.float())
            return {"loss": loss, "logits": logits}
        return self.detector.training_step(inputs, labels)


@dataclass
class _Data:
    """What the loop and the final scoring need to know about the rows, once they are loaded."""

    train_rows: pd.DataFrame
    val_rows: pd.DataFrame
    train_loader: DataLoader
    val_loader: DataLoader
    on_features: bool  # training the head on cached features instead of the whole detector on images
    cache: FeatureCache | None
    pseudo_fakes: dict[str, Any] | None = None  # what run.json records about them (data.pseudo_fakes)


def train(
    config: TrainConfig, *, on_step: Callable[[int], None] | None = None, progress: bool = True
) -> RunInfo:
    """Train ``config.method`` on ``config.data`` into the run directory ``config.out``.

    Re-running with the same config resumes from ``out/last`` (a finished run is only re-finalised).

    Args:
        config: the validated training config; ``config.out`` must be set.
        on_step: called with the global step number after every optimizer step (progress hooks, tests);
            an exception raised there stops the run like Ctrl-C, keeping ``last/`` for a resume.
        progress: show progress bars.

    Returns:
        The finished run, as :func:`~crossfake.runs.directory.read_run_info` reads it back.
    """
    # The other processes wait while the main one scores the validation set and writes the run (below);
    # torch's default process-group time-out (10 min with NCCL) is shorter than that takes for a large
    # validation set with a 7B model, so every collective may wait `train.wait_hours`.
    wait = InitProcessGroupKwargs(timeout=timedelta(hours=config.train.wait_hours))
    accelerator = Accelerator(cpu=config.train.device == "cpu", kwargs_handlers=[wait])
    if config.train.device == "cuda" and accelerator.device.type != "cuda":
        raise CrossfakeError("train.device is 'cuda' but no CUDA device is visible")
    # The main process checks the folder and writes config.yaml before the others look at it: a process
    # looking while the file is being written would see a foreign file in a non-empty folder.
    with accelerator.main_process_first():
        run_dir = _prepare_run_dir(config, accelerator.is_main_process)
    with _logging(run_dir / LOG_FILE, accelerator.is_main_process):
        _train(config, run_dir, accelerator, on_step, progress and accelerator.is_main_process)
    # The main process finalises the run (val predictions, run.json); the others wait for it so that every
    # process returns the same finished run.
    accelerator.wait_for_everyone()
    return read_run_info(run_dir)


@dataclass
class _TrainState:
    """The loop's position: what ``last/state.json`` holds (besides ``format``) and a resume restores."""

    step: int = 0
    best_val_auc: float | None = None
    best_step: int | None = None
    history: list[dict[str, Any]] = field(default_factory=list)  # one {step, epoch, val_auc} per validation
    wall_time_s: float = 0.0  # over every session of the run, up to the last checkpoint

    def to_json(self) -> dict[str, Any]:
        """The keys of ``last/state.json``, in its order; :func:`save_last` adds ``format``."""
        return {
            "step": self.step,
            "best_val_auc": self.best_val_auc,
            "best_step": self.best_step,
            "history": self.history,
            "wall_time_s": self.wall_time_s,
        }

    @classmethod
    def from_json(cls, record: dict[str, Any]) -> _TrainState:
        """Read back what :meth:`to_json` wrote; ``format`` is ignored, a missing key keeps its default."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in record.items() if k in names})


@dataclass
class _Session:
    """What every step of one training session shares: the run, the detector, its data and where it runs."""

    config: TrainConfig
    run_dir: Path
    accelerator: Accelerator
    detector: Detector
    data: _Data
    precision: str
    progress: bool  # show progress bars (main process only)
    trainable: int  # parameter counts, as run.json records them
    total: int
    start: float  # time.perf_counter() when the session began

    @property
    def device(self) -> torch.device:
        return self.accelerator.device

    @property
    def is_main(self) -> bool:
        return self.accelerator.is_main_process

    def elapsed(self) -> float:
        """Seconds since the session began."""
        return time.perf_counter() - self.start


def _train(
    config: TrainConfig,
    run_dir: Path,
    accelerator: Accelerator,
    on_step: Callable[[int], None] | None,
    progress: bool,
) -> None:
    session = _open_session(config, run_dir, accelerator, progress)
    if not session.detector.trainable_parameters():
        _score_only(session)
        return
    loop = _Loop(session)
    loop.resume()
    loop.run(on_step)
    if session.is_main:
        loop.clock()
        _finalize(session, loop.state)


def _open_session(config: TrainConfig, run_dir: Path, accelerator: Accelerator, progress: bool) -> _Session:
    """Build the detector (seeded) and load its data; write the pseudo-fake examples when there are any."""
    start = time.perf_counter()
    opts = config.train
    device = accelerator.device
    precision = resolve_precision(opts.precision, device)
    # Seed before the detector is built: the head's random initialisation is part of what `seed` fixes.
    set_seed(opts.seed)
    detector = create_detector(config.method).to(device)
    trainable, total = detector.parameter_counts()
    log.info(
        "method %s: %s trainable of %s parameters (%.4f%%); lr %g, %s, %s x%d",
        config.method.method,
        f"{trainable:,}",
        f"{total:,}",
        _percent(trainable, total),
        config.lr,
        precision,
        device,
        accelerator.num_processes,
    )
    data = _load_data(config, detector, accelerator, precision, progress)
    if data.pseudo_fakes is not None and accelerator.is_main_process:
        _pseudo_fake_examples(data, run_dir)
    return _Session(
        config, run_dir, accelerator, detector, data, precision, progress, trainable, total, start
    )


class _Loop:
    """One session's optimisation: AdamW on the trainable parameters, validation, ``last/`` and ``best/``."""

    def __init__(self, session: _Session) -> None:
        self.session = session
        config, detector, data = session.config, session.detector, session.data
        self.opts = opts = config.train
        self.optimizer = torch.optim.AdamW(
            detector.trainable_parameters(), lr=config.lr, weight_decay=opts.weight_decay
        )
        # The training loader is not accelerate's to shard: its default pads the last, short global batch
        # with repeated rows, which then count twice in that step. ShardedBatches (see `_load_data`) already
        # gives each process its own part of every global batch, without repeats; its batches go to the
        # device in `_step`.
        self.model, self.optimizer, self.val_loader = session.accelerator.prepare(
            TrainStep(detector, data.on_features), self.optimizer, data.val_loader
        )
        self.train_loader = data.train_loader
        self.shards: ShardedBatches = self.train_loader.batch_sampler
        self.steps_per_epoch = math.ceil(len(self.train_loader) / opts.grad_accum)
        self.total_steps = opts.epochs * self.steps_per_epoch
        if opts.max_steps is not None:
            self.total_steps = min(self.total_steps, opts.max_steps)
        self.state = _TrainState()
        self.prior_wall = 0.0  # wall time of the run's earlier sessions
        self.val_labels = data.val_rows["label"].to_numpy()
        # The RNG right after the last finished step: what a resume must restore (set by `resume`).
        self.boundary_rng: dict[str, Any] = {}

    def resume(self) -> None:
        """Continue from ``last/`` if there is one; validate a due step stopped before its validation."""
        session, state = self.session, self.state
        last = load_last(session.run_dir)
        if last is not None:
            apply_weights(session.detector, last.weights, session.run_dir / LAST_DIR / WEIGHTS_FILE)
            self.optimizer.load_state_dict(last.optimizer)
            set_rng_state(last.rng)
            self.state = state = _TrainState.from_json(last.state)
            log.info(
                "resuming from step %d of %d (%s)", state.step, self.total_steps, session.run_dir / LAST_DIR
            )
        self.prior_wall = float(state.wall_time_s)
        self.boundary_rng = rng_state()
        validated = state.history[-1]["step"] if state.history else 0
        if state.step > validated and self.due(state.step):
            self.validate()  # the run was stopped between a due step and its validation
            self.checkpoint()

    def due(self, step: int) -> bool:
        """Validate and save last/ after this step? Every eval_every steps (else per epoch) and at the end."""
        every = self.opts.eval_every or self.steps_per_epoch
        return step % every == 0 or step == self.total_steps

    def clock(self) -> None:
        """Bring the state's wall time up to now."""
        self.state.wall_time_s = self.prior_wall + self.session.elapsed()

    def checkpoint(self) -> None:
        """Save ``last/`` at the last finished step (main process)."""
        self.clock()
        session = self.session
        if session.is_main:
            save_last(
                session.run_dir, session.detector, self.optimizer, self.boundary_rng, self.state.to_json()
            )

    def validate(self) -> None:
        """Score val, record the AUC in the history, and save ``best/`` when it improved."""
        session, state = self.session, self.state
        logits = _val_logits(session, self.val_loader, len(self.val_labels))
        if not np.isfinite(logits).all():
            raise CrossfakeError(
                f"validation logits are NaN or infinite at step {state.step}: training "
                f"diverged; lower the learning rate (now {session.config.lr:g})"
            )
        auc = roc_auc(self.val_labels, sigmoid(logits))
        # Selection by validation AUC only, never by anything measured on test.
        improved = state.best_val_auc is None or auc > state.best_val_auc
        if improved:
            state.best_val_auc, state.best_step = auc, state.step
            if session.is_main:
                best = session.run_dir / BEST_DIR / WEIGHTS_FILE
                save_weights(best, session.detector, step=state.step, val_auc=auc)
        state.history.append({"step": state.step, "epoch": state.step / self.steps_per_epoch, "val_auc": auc})
        log.info(
            "step %d: val AUC %.4f%s (best %.4f at step %d)",
            state.step,
            auc,
            " *" if improved else "",
            state.best_val_auc,
            state.best_step,
        )

    def run(self, on_step: Callable[[int], None] | None) -> None:
        """Take the steps left, validating and saving ``last/`` when due; a stop saves ``last/`` first."""
        session, state = self.session, self.state
        self.model.train()
        bar = tqdm(
            total=self.total_steps,
            initial=state.step,
            desc="training",
            unit="step",
            disable=not session.progress,
        )
        meter = _Meter(session.device)
        try:
            while state.step < self.total_steps:
                epoch, done = divmod(state.step, self.steps_per_epoch)
                self.shards.set_epoch(epoch)
                # Shuffling depends only on (seed, epoch): skipping the batches of the steps already taken
                # replays an interrupted epoch exactly where it stopped.
                loader = (
                    session.accelerator.skip_first_batches(self.train_loader, done * self.opts.grad_accum)
                    if done
                    else self.train_loader
                )
                batches = iter(loader)
                end = min(self.steps_per_epoch, done + self.total_steps - state.step)
                for local_step in range(done, end):
                    self._step(batches, local_step, meter)
                    bar.update()
                    if state.step % self.opts.log_every == 0 or state.step == self.total_steps:
                        mean_loss, rate = meter.report(session.accelerator)
                        bar.set_postfix(loss=f"{mean_loss:.4f}", img_s=f"{rate:.1f}")
                        log.info(
                            "step %d/%d (epoch %d): loss %.4f, %.1f img/s",
                            state.step,
                            self.total_steps,
                            epoch + 1,
                            mean_loss,
                            rate,
                        )
                    if on_step is not None:
                        on_step(state.step)
                    if self.due(state.step):
                        self.validate()
                        self.checkpoint()
        except BaseException:
            # Keep the finished steps (Ctrl-C, a failing hook, an error); re-running resumes from them.
            self.checkpoint()
            log.warning(
                "stopped at step %d; re-run the same command to resume from %s",
                state.step,
                session.run_dir / LAST_DIR,
            )
            raise
        finally:
            bar.close()

    def _step(self, batches: Iterator[Any], local_step: int, meter: _Meter) -> None:
        """One optimizer step: its micro-batches' forward and backward passes, then the update."""
        accelerator, device, precision = self.session.accelerator, self.session.device, self.session.precision
        opts, state = self.opts, self.state
        if accelerator.num_processes > 1:
            # Each process its own dropout stream, a pure function of (seed, process, step): one seed
            # for all would give every process the same masks, and only the main process's RNG
            # state is saved in last/, so a resume could not restore the others' streams.
            torch.manual_seed(_seed_of(opts.seed, accelerator.process_index, state.step))
        first = local_step * opts.grad_accum
        n_micro = min(opts.grad_accum, len(self.train_loader) - first)
        rows = [self.shards.rows(first + micro) for micro in range(n_micro)]
        step_rows = sum(total for _, total in rows)
        for micro in range(n_micro):
            inputs, labels, _ = send_to_device(next(batches), device)
            # The step's loss is the mean over all its rows, however they are split into processes and
            # micro-batches: a micro-batch's mean loss weighs by its share of the step's rows (0 for a
            # stand-in row), times the number of processes as the all-reduce averages the gradients.
            weight = rows[micro][0] * accelerator.num_processes / step_rows
            # Gradients are averaged across processes once per step, on its last micro-batch.
            sync = accelerator.no_sync(self.model) if micro < n_micro - 1 else contextlib.nullcontext()
            with sync, autocast(device, precision):
                loss = self.model(inputs, labels)["loss"] * weight
            accelerator.backward(loss)
            meter.add(loss.detach(), rows[micro][0])
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        state.step += 1
        self.boundary_rng = rng_state()
        meter.step()


def _seed_of(*parts: int) -> int:
    return int(np.random.SeedSequence(list(parts)).generate_state(1)[0])


def _percent(part: int, whole: int) -> float:
    # A detector whose model runs on a server has no local parameters at all.
    return 100 * part / whole if whole else 0.0


def _score_only(session: _Session) -> None:
    """Finish a run with nothing to optimise: save the (empty) weights, then score val and choose the threshold.

    The empty ``best/`` file keeps the run directory the same shape for ``load_run``; no ``last/`` is
    written because there is no optimizer state to resume. An interrupted validation scoring resumes
    through :func:`predict_manifest`'s own part files.
    """
    log.info("nothing to train: scoring the validation rows and choosing the threshold on them")
    if not session.is_main:
        return
    save_weights(session.run_dir / BEST_DIR / WEIGHTS_FILE, session.detector, step=0)
    # Validation AUC and step 0 stand in for the "best checkpoint", as there is only one model.
    _finalize(session, _TrainState(best_step=0, wall_time_s=session.elapsed()))


class _Meter:
    """Mean training loss and images/s since the last report."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self._reset()

    def _reset(self) -> None:
        # The loss sum stays on the device: reading it back is a sync point, paid only per report.
        self.loss = torch.zeros((), device=self.device)
        self.steps = self.images = 0
        self.start = time.perf_counter()

    def add(self, loss: torch.Tensor, images: int) -> None:
        """Count one micro-batch."""
        self.loss += loss
        self.images += images

    def step(self) -> None:
        """Count one optimizer step."""
        self.steps += 1

    def report(self, accelerator: Accelerator) -> tuple[float, float]:
        """(mean loss per step, images per second) over all processes, then start a new interval."""
        # Each process holds its weighted share of every step's loss (see the loop): their sum is the loss.
        loss, images = accelerator.reduce(torch.stack([self.loss, self.loss.new_tensor(self.images)]), "sum")
        mean, rate = loss.item() / max(self.steps, 1), images.item() / (time.perf_counter() - self.start)
        self._reset()
        return mean, rate


def _load_data(
    config: TrainConfig, detector: Detector, accelerator: Accelerator, precision: str, progress: bool
) -> _Data:
    """Read the train and val rows (only those) and build their loaders, on cached features when possible."""
    opts = config.train
    train_rows, val_rows = training_rows(read_training_manifest(config.data), config.data, opts.seed)
    log.info(
        "data: %d train rows (%d videos), %d val rows (%d videos) from %s",
        len(train_rows),
        train_rows["video_id"].nunique(),
        len(val_rows),
        val_rows["video_id"].nunique(),
        config.data.manifest,
    )
    workers = default_workers(gpu=accelerator.device.type == "cuda") if opts.num_workers is None else opts.num_workers

    # Decided by the detector's declared capability, never by its name. A detector that overrides
    # training_step has a loss of its own, which training the head with BCE would silently replace.
    on_features = opts.feature_cache and detector.supports_feature_cache
    if on_features and config.data.pseudo_fakes is not None:
        # A cached feature stands for one fixed image; pseudo-fakes are new images every epoch.
        log.info("data.pseudo_fakes: training on images, not on cached features (pseudo-fakes change every epoch)")
        on_features = False
    if on_features and type(detector).training_step is not Detector.training_step:
        log.warning(
            "%s overrides training_step: training on images, not on cached features", type(detector).__name__
        )
        on_features = False
    cache = FeatureCache(opts.cache_dir) if on_features else None
    if cache is not None:
        # The main process extracts (or finds) the features; the others then read them from the cache.
        with accelerator.main_process_first():
            sets = [
                _feature_dataset(cache, detector, rows, config.eval_batch_size, precision, workers, progress)
                for rows in (train_rows, val_rows)
            ]
        collate, workers = None, 0  # in-memory tensors: loader processes would only add overhead
    else:
        sets = [
            training_dataset(train_rows, detector.transform, config.data, opts.seed),
            FaceCropDataset(val_rows, detector.transform),
        ]
        collate = Collate(detector.collate)
    pseudo = None
    if isinstance(sets[0], PseudoFakeDataset):
        pseudo = sets[0].describe()
        log.info("%s", sets[0].summary())
    train_loader = shard_loader(
        shuffled_loader(sets[0], opts.batch_size, collate, seed=opts.seed, num_workers=workers),
        accelerator.process_index,
        accelerator.num_processes,
    )
    val_loader = make_loader(sets[1], config.eval_batch_size, collate, num_workers=workers)
    return _Data(train_rows, val_rows, train_loader, val_loader, on_features, cache, pseudo)


def _pseudo_fake_examples(data: _Data, run_dir: Path) -> None:
    """Draw a few of the first epoch's pseudo-fakes into the run directory; record the file's name."""
    assert data.pseudo_fakes is not None
    name = f"{data.pseudo_fakes['kind']}_examples.png"
    dataset = data.train_loader.dataset
    assert isinstance(dataset, PseudoFakeDataset)
    write_examples(dataset, run_dir / name)
    data.pseudo_fakes["examples"] = name
    log.info("pseudo-fake examples: %s", run_dir / name)


def _finalize(session: _Session, state: _TrainState) -> None:
    """Score val with the best weights, choose the threshold, write val_predictions.parquet and run.json."""
    config, run_dir, detector, data = session.config, session.run_dir, session.detector, session.data
    precision, trainable, total = session.precision, session.trainable, session.total
    best = run_dir / BEST_DIR / WEIGHTS_FILE
    apply_weights(detector, load_weights(best), best)
    # The function `crossfake evaluate` uses, with the same batches: a loaded run reproduces these scores.
    preds = predict_manifest(
        detector,
        data.val_rows,
        config.eval_batch_size,
        out=run_dir / VAL_PREDICTIONS_FILE,
        cache=data.cache,
        precision=precision,
        num_workers=config.train.num_workers,
        progress=session.progress,
    )
    labels, scores = preds["label"].to_numpy(), preds["score"].to_numpy()
    val_eer = eer(labels, scores)
    val_auc = roc_auc(labels, scores)
    if state.best_val_auc is None:  # nothing was trained: the one model's validation AUC
        state.best_val_auc = val_auc
    # The crops' specification travels with the run, so `crossfake detect` crops a suspect's faces alike.
    crop = crop_spec_of_manifest(config.data.manifest)
    record = RunRecord(
        method=config.method.method,
        config=config.to_dict(),
        manifest=str(config.data.manifest),
        manifest_sha256=file_sha256(config.data.manifest),
        crop=crop[0].model_dump(mode="json") if crop else None,
        data={name: _describe_rows(rows) for name, rows in (("train", data.train_rows), ("val", data.val_rows))},
        parameters={"trainable": trainable, "total": total, "trainable_percent": _percent(trainable, total)},
        lr=config.lr,
        precision=precision,
        device=str(session.device),
        num_processes=session.accelerator.num_processes,
        feature_cache=str(data.cache.root) if data.cache is not None else None,
        pseudo_fakes=data.pseudo_fakes,
        steps=state.step,
        best_step=state.best_step,
        best_val_auc=state.best_val_auc,
        val_metrics={"auc": val_auc, "eer": val_eer.eer},
        threshold=val_eer.threshold,
        threshold_rule=THRESHOLD_RULE,
        threshold_name="validation EER threshold",
        prediction_columns=type(detector).prediction_columns,
        history=state.history,
        wall_time_s=round(state.wall_time_s, 3),
        provenance=provenance(),
    )
    write_run_record(run_dir, record)
    log.info(
        "finished: best val AUC %.4f at step %d, threshold %.4f; %s",
        state.best_val_auc,
        state.best_step,
        val_eer.threshold,
        run_dir,
    )


def _describe_rows(rows: pd.DataFrame) -> dict[str, Any]:
    by_manipulation = rows["manipulation"].value_counts().sort_index()
    return {
        "rows": len(rows),
        "videos": int(rows["video_id"].nunique()),
        "rows_by_manipulation": {str(k): int(v) for k, v in by_manipulation.items()},
    }


def _feature_dataset(
    cache: FeatureCache,
    detector: Detector,
    rows: pd.DataFrame,
    batch_size: int,
    precision: str,
    workers: int,
    progress: bool,
) -> TensorDataset:
    features = cache.get(
        detector, rows, batch_size=batch_size, precision=precision, num_workers=workers, progress=progress
    )
    labels = torch.from_numpy(rows["label"].to_numpy(np.float32))
    return TensorDataset(torch.from_numpy(np.array(features)), labels, torch.arange(len(rows)))


@torch.no_grad()
def _val_logits(session: _Session, loader: DataLoader, n: int) -> np.ndarray:
    """Validation logits in row order; each process scores its shard and the results are gathered."""
    detector, accelerator, on_features = session.detector, session.accelerator, session.data.on_features
    detector.eval()
    logits = np.full(n, np.nan, dtype=np.float32)
    for inputs, _, rows in loader:
        with autocast(accelerator.device, session.precision):
            out = detector.head(inputs) if on_features else detector.predict(inputs)
        out, rows = accelerator.gather_for_metrics((out.float(), rows))
        logits[rows.cpu().numpy()] = out.cpu().numpy()
    detector.train()
    return logits


def _prepare_run_dir(config: TrainConfig, is_main: bool) -> Path:
    """Check that ``config.out`` is new or holds this same run, and write the resolved ``config.yaml``."""
    changed = config_changes(config)
    run_dir, saved = config.out, config.out / CONFIG_FILE
    if changed:
        raise CrossfakeError(
            f"{run_dir} holds a run with a different config (changed: {', '.join(changed)}); "
            "choose another --out, or delete the folder to start over"
        )
    if not saved.is_file() and run_dir.exists() and any(run_dir.iterdir()):
        raise CrossfakeError(f"{run_dir} exists and is not a crossfake run directory; choose another --out")
    if is_main:
        write_text_atomic(saved, config.resolved().to_yaml())
    return run_dir


@contextlib.contextmanager
def _logging(path: Path, is_main: bool) -> Iterator[None]:
    """The main process appends crossfake's log to ``train.log``; the others log warnings only."""
    logger = logging.getLogger(LOGGER_NAME)
    level = logger.level
    handler = None
    if not is_main:
        logger.setLevel(logging.WARNING)
    else:
        handler = logging.FileHandler(path, encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
        logger.addHandler(handler)
        if level == logging.NOTSET or level > logging.INFO:  # library use, without setup_logging
            logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        if handler is not None:
            logger.removeHandler(handler)
            handler.close()
        logger.setLevel(level)
