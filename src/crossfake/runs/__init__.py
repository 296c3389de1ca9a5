"""Runs as records: a training run's validated config and directory, and an experiment's record.

This is the contract between the trainer that writes a run (:mod:`crossfake.training`) and everything
that reads one back (:mod:`crossfake.scoring`, ``crossfake evaluate``, ``crossfake detect``, the
experiment runner). It sits below both, so reading a run never imports the trainer.

- :class:`TrainConfig` (``config.py``): the YAML config, validated at parse time;
- ``directory.py``: the run directory's files, :func:`read_run_info` and :func:`load_run` (a run back to a
  detector), and the checkpoints the trainer writes and resumes from;
- ``record.py``: ``run.json``, the record of a finished run (:class:`RunRecord`), which the trainer writes
  and every reader reads typed;
- ``experiment.py``: the experiment run directory's record, ``experiment.json`` (:class:`Experiment` of
  :class:`MethodEntry`, each with a :class:`Status`), which ``crossfake run`` writes and the reports read.
"""

from crossfake.runs.config import TrainConfig, resolve_config_path, shipped_configs
from crossfake.runs.directory import BEST_DIR, LAST_DIR, RunInfo, load_run, read_run_info
from crossfake.runs.experiment import Experiment, MethodEntry, Status, load_experiment, write_experiment
from crossfake.runs.record import RunRecord

__all__ = [
    "BEST_DIR",
    "LAST_DIR",
    "Experiment",
    "MethodEntry",
    "RunInfo",
    "RunRecord",
    "Status",
    "TrainConfig",
    "load_experiment",
    "load_run",
    "read_run_info",
    "write_experiment",
    "resolve_config_path",
    "shipped_configs",
]
