"""Training: one generic loop for every method, its config, data, feature cache and run directories.

- :class:`TrainConfig` (``config.py``): the YAML config, validated at parse time;
- :func:`train` (``loop.py``): AdamW over the detector's trainable parameters, validation AUC, best and
  last checkpoints, resume, ``accelerate`` for multi-GPU;
- :func:`load_run` (``checkpoint.py``): a run directory back to a detector;
- :class:`FeatureCache` (``features.py``): frozen features extracted once, for feature-cacheable methods;
- :class:`FaceCropDataset` (``data.py``): manifest rows as model inputs.

Names are imported on first use: ``crossfake.evaluation.predict`` builds on the data and cache modules
here while the loop builds on it, and lazy imports keep that from being a cycle.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "FaceCropDataset": "crossfake.training.data",
    "FeatureCache": "crossfake.training.features",
    "RunInfo": "crossfake.training.checkpoint",
    "TrainConfig": "crossfake.training.config",
    "load_run": "crossfake.training.checkpoint",
    "make_loader": "crossfake.training.data",
    "read_run_info": "crossfake.training.checkpoint",
    "shipped_configs": "crossfake.training.config",
    "train": "crossfake.training.loop",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
