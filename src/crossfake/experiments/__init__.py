"""Experiments: a study in one YAML file, run end to end into one run directory.

- :mod:`.config`: :class:`ExperimentConfig`, the validated experiment (data, split, methods, test sets).
- :mod:`.runner`: :func:`run_experiment`, resumable and failure-tolerant, and the run directory format.
- :mod:`.studies`: the reports' studies built on it: the LoRA ablation grid and the identity-leakage study.
"""

from crossfake.experiments.config import ExperimentConfig, shipped_experiments
from crossfake.experiments.runner import ExperimentRun, read_experiment, run_experiment

__all__ = ["ExperimentConfig", "ExperimentRun", "read_experiment", "run_experiment", "shipped_experiments"]
