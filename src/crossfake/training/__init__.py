"""Training: one generic loop for every method, and the data it trains on.

- :func:`train` (``loop.py``): AdamW over the detector's trainable parameters, validation AUC, best and
  last checkpoints, resume, ``accelerate`` for multi-GPU;
- ``data.py``: the training and validation rows of a split manifest, pseudo-fakes, the shuffled loader.

The config (:class:`~crossfake.runs.TrainConfig`) and the run directory the loop writes live in
:mod:`crossfake.runs`, below both this package and :mod:`crossfake.scoring`, which the loop scores
validation with.
"""

from crossfake.runs.config import TrainConfig
from crossfake.training.loop import train

__all__ = ["TrainConfig", "train"]
