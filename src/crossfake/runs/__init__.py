"""A training run as a record: its validated config and the directory it leaves behind.

This is the contract between the trainer that writes a run (:mod:`crossfake.training`) and everything
that reads one back (:mod:`crossfake.scoring`, ``crossfake evaluate``, ``crossfake detect``, the
experiment runner). It sits below both, so reading a run never imports the trainer.

- :class:`TrainConfig` (``config.py``): the YAML config, validated at parse time;
- ``directory.py``: the run directory's files, :func:`read_run_info` and :func:`load_run` (a run back to a
  detector), and the checkpoints the trainer writes and resumes from.
"""

from crossfake.runs.config import TrainConfig, resolve_config_path, shipped_configs
from crossfake.runs.directory import BEST_DIR, LAST_DIR, RunInfo, load_run, read_run_info

__all__ = [
    "BEST_DIR",
    "LAST_DIR",
    "RunInfo",
    "TrainConfig",
    "load_run",
    "read_run_info",
    "resolve_config_path",
    "shipped_configs",
]
