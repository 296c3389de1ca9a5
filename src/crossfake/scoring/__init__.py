"""Batch scoring: a trained detector over manifest rows, streaming, on the right device and precision.

It sits below :mod:`crossfake.training` (whose validation scoring is this same code, so a loaded run
reproduces its validation scores) and above the methods and the run directory (:mod:`crossfake.runs`);
it imports neither the trainer nor the metrics of :mod:`crossfake.evaluation`.

- :func:`score_run` (``run.py``): score rows with a trained run, the call ``crossfake evaluate``, the
  experiment runner and ``crossfake detect`` (:func:`load_for_scoring`) share, here or in an executor's
  workers (each loads the run once per process: :class:`RunLoader`);
- :func:`predict_manifest` (``predict.py``): the streaming, resumable scorer of any detector;
- :class:`FeatureCache` (``features.py``): frozen features extracted once, for feature-cacheable methods;
- :class:`FaceCropDataset`, :func:`make_loader` (``data.py``): manifest rows as model inputs;
- :func:`resolve_device`, :func:`resolve_precision`, :func:`autocast` (``device.py``).
"""

from crossfake.scoring.data import Collate, CropTransform, FaceCropDataset, load_crop, make_loader
from crossfake.scoring.device import autocast, detector_device, resolve_device, resolve_precision
from crossfake.scoring.features import FeatureCache, cache_key
from crossfake.scoring.predict import predict_manifest, sigmoid
from crossfake.scoring.run import RunLoader, ScoringRun, load_for_scoring, score_run

__all__ = [
    "Collate",
    "CropTransform",
    "FaceCropDataset",
    "FeatureCache",
    "RunLoader",
    "ScoringRun",
    "autocast",
    "cache_key",
    "detector_device",
    "load_crop",
    "load_for_scoring",
    "make_loader",
    "predict_manifest",
    "resolve_device",
    "resolve_precision",
    "score_run",
    "sigmoid",
]
