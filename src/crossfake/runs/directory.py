"""The run directory: what a training run leaves behind, and how to load it back.

Layout (format ``crossfake-run/1``)::

    RUN_DIR/
      config.yaml               the resolved config (every default filled in, absolute paths)
      run.json                  provenance and results: versions, git commit, command, manifest sha256,
                                parameter counts, wall time, best step, validation AUC, chosen threshold
      train.log                 the log of every session of this run
      best/model.safetensors    trainable weights of the step with the best validation AUC
      last/model.safetensors    trainable weights after the last finished optimizer step,
      last/training_state.pt    ... the optimizer state and RNG states at that step,
      last/state.json           ... and the trainer's position (step, best so far, history)
      val_predictions.parquet   the best checkpoint's validation scores (the threshold comes from these)

Only *trainable* weights are saved: the frozen backbone is rebuilt from its spec in ``config.yaml``, so a
LoRA run stores megabytes, not the whole CLIP. ``run.json`` is written last; a directory without it is a
run that has not finished (re-running ``crossfake train`` resumes it from ``last/``).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from crossfake.methods import Detector, create_detector
from crossfake.runs.config import TrainConfig
from crossfake.runs.record import RUN_FILE, RUN_FORMAT, RunRecord, check_format
from crossfake.utils.errors import CrossfakeError
from crossfake.utils.io import atomic_path, write_json_atomic
from crossfake.utils.provenance import file_sha256

CONFIG_FILE = "config.yaml"
LOG_FILE = "train.log"
BEST_DIR = "best"
LAST_DIR = "last"
WEIGHTS_FILE = "model.safetensors"
TRAINING_STATE_FILE = "training_state.pt"
STATE_FILE = "state.json"
VAL_PREDICTIONS_FILE = "val_predictions.parquet"


@dataclass(frozen=True)
class RunInfo:
    """A finished run: its folder, resolved config and ``run.json`` record."""

    run_dir: Path
    config: TrainConfig
    record: RunRecord

    @property
    def threshold(self) -> float:
        """The decision threshold chosen on validation predictions (see ``record.threshold_rule``)."""
        return float(self.record.threshold)

    @property
    def val_auc(self) -> float:
        """The best validation AUC (frame level), the one the checkpoint was selected by."""
        return float(self.record.best_val_auc)


@dataclass
class LastCheckpoint:
    """What ``last/`` holds: weights, optimizer state, RNG states and the trainer's position."""

    weights: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    rng: dict[str, Any]
    state: dict[str, Any]


# -- weights --------------------------------------------------------------------------------------------


def save_weights(path: Path, detector: Detector, **metadata: Any) -> None:
    """Write the detector's trainable weights (safetensors, atomically) with string metadata."""
    meta = {
        "format": RUN_FORMAT,
        "method": detector.config.method,
        **{k: str(v) for k, v in metadata.items()},
    }
    with atomic_path(path) as tmp:
        save_file(detector.trainable_state_dict(), str(tmp), metadata=meta)


def load_weights(path: Path) -> dict[str, torch.Tensor]:
    """Read a weights file written by :func:`save_weights` (a CrossfakeError if missing or unreadable)."""
    if not path.is_file():
        raise CrossfakeError(f"missing weights file {path}")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError) as e:
        raise CrossfakeError(f"{path} is not a readable safetensors file: {e}") from e


def apply_weights(detector: Detector, weights: dict[str, torch.Tensor], path: Path) -> None:
    """Load trainable weights into ``detector``; a mismatch is a CrossfakeError naming ``path``, their file."""
    try:
        detector.load_trainable_state_dict(weights)
    except (ValueError, RuntimeError) as e:
        raise CrossfakeError(
            f"{path} does not fit a {detector.config.method!r} detector built from the run's config: {e}"
        ) from None


# -- last/: resuming ------------------------------------------------------------------------------------


def save_last(
    run_dir: Path,
    detector: Detector,
    optimizer: torch.optim.Optimizer,
    rng: dict[str, Any],
    state: dict[str, Any],
) -> None:
    """Replace ``last/`` as a whole: written to a sibling folder, then swapped in by renames."""
    last, tmp, old = run_dir / LAST_DIR, run_dir / f".{LAST_DIR}.tmp", run_dir / f".{LAST_DIR}.old"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_weights(tmp / WEIGHTS_FILE, detector, step=state["step"])
    torch.save({"optimizer": optimizer.state_dict(), "rng": rng}, tmp / TRAINING_STATE_FILE)
    write_json_atomic(tmp / STATE_FILE, {"format": RUN_FORMAT, **state})
    # A crash between these renames leaves `.last.old`, which load_last falls back to.
    if last.exists():
        shutil.rmtree(old, ignore_errors=True)
        last.rename(old)
    tmp.rename(last)
    shutil.rmtree(old, ignore_errors=True)


def load_last(run_dir: Path) -> LastCheckpoint | None:
    """The resumable state in ``run_dir/last`` (or its interrupted swap), None when there is none."""
    folder = run_dir / LAST_DIR
    if not folder.is_dir() and (run_dir / f".{LAST_DIR}.old").is_dir():
        (run_dir / f".{LAST_DIR}.old").rename(folder)
    if not folder.is_dir():
        return None
    state = _read_json(folder / STATE_FILE)
    check_format(state, folder / STATE_FILE)
    try:
        saved = torch.load(folder / TRAINING_STATE_FILE, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError) as e:
        raise CrossfakeError(
            f"{folder / TRAINING_STATE_FILE} is unreadable ({e}); delete {folder} to restart "
            "the run from scratch"
        ) from e
    return LastCheckpoint(load_weights(folder / WEIGHTS_FILE), saved["optimizer"], saved["rng"], state)


def rng_state() -> dict[str, Any]:
    """The torch RNG states that training consumes (dropout, random init): CPU and every CUDA device."""
    return {
        "cpu": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` captured."""
    torch.set_rng_state(state["cpu"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# -- the whole run --------------------------------------------------------------------------------------


def write_run_record(run_dir: Path, record: RunRecord) -> None:
    """Write ``run.json``, the marker of a finished run."""
    write_json_atomic(run_dir / RUN_FILE, record.to_json())


def config_changes(config: TrainConfig) -> list[str]:
    """The keys in which ``config`` differs from the run already in ``config.out`` (empty: none there yet,
    or the same run, which resumes); a run's outcome never depends on the keys of ``RUN_CONTROL_KEYS``.

    A finished run also records its manifest's sha256: the same path with other contents (re-split, rows
    added) is a change too, ``data.manifest (its contents)``; re-finalising the run on it would choose the
    threshold on other validation rows.
    """
    if config.out is None:
        raise CrossfakeError("no run directory: set `out:` in the config or pass --out")
    saved = config.out / CONFIG_FILE
    if not saved.is_file():
        return []
    changed = config.resolved().differences(TrainConfig.from_yaml(saved, check_paths=False))
    record, manifest = config.out / RUN_FILE, config.data.manifest
    if not changed and record.is_file() and manifest.is_file():
        try:
            recorded = RunRecord.from_json(_read_json(record), record).manifest_sha256
        except CrossfakeError:  # an unreadable record is rewritten when the run is finalised again
            recorded = None
        if recorded is not None and recorded != file_sha256(manifest):
            changed.append("data.manifest (its contents)")
    return changed


def read_run_info(run_dir: str | Path) -> RunInfo:
    """The config and ``run.json`` of a finished run, checked for completeness and format."""
    run_dir = Path(run_dir).expanduser()
    if not run_dir.is_dir():
        raise CrossfakeError(f"no run directory at {run_dir}")
    if not (run_dir / CONFIG_FILE).is_file():
        raise CrossfakeError(f"{run_dir} is not a crossfake run directory (no {CONFIG_FILE})")
    if not (run_dir / RUN_FILE).is_file():
        raise CrossfakeError(
            f"{run_dir} has no {RUN_FILE}: its training has not finished; run `crossfake train` "
            f"with the same config and --out {run_dir} to resume it"
        )
    record = RunRecord.from_json(_read_json(run_dir / RUN_FILE), run_dir / RUN_FILE)
    config = TrainConfig.from_yaml(run_dir / CONFIG_FILE, check_paths=False)
    return RunInfo(run_dir, config, record)


def load_run(run_dir: str | Path, weights: str = BEST_DIR) -> tuple[Detector, RunInfo]:
    """Rebuild a run's detector from its ``config.yaml`` and load its trained weights.

    Args:
        run_dir: a run directory written by :func:`crossfake.training.train`.
        weights: ``"best"`` (the checkpoint selected by validation AUC) or ``"last"``.

    Returns:
        ``(detector, info)``: the detector in eval mode on the CPU, and the run's :class:`RunInfo`.

    Raises:
        CrossfakeError: the folder is missing, unfinished, of another format, or its weights do not fit.
    """
    if weights not in (BEST_DIR, LAST_DIR):
        raise CrossfakeError(f"weights must be {BEST_DIR!r} or {LAST_DIR!r}, not {weights!r}")
    info = read_run_info(run_dir)
    path = info.run_dir / weights / WEIGHTS_FILE
    state = load_weights(path)
    detector = create_detector(info.config.method)
    apply_weights(detector, state, path)
    return detector.eval(), info


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise CrossfakeError(f"missing file {path}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise CrossfakeError(f"{path} is not readable JSON: {e}") from e
    if not isinstance(data, dict):
        raise CrossfakeError(f"{path}: expected a JSON object")
    return data
