"""crossfake: cross-manipulation deepfake detection with vision-language foundation models.

The packages, from the bottom layer up (a package imports only those above it in this list):

- :mod:`crossfake.utils`: errors, logging, atomic I/O, validated YAML, registries, provenance, model files.
- :mod:`crossfake.executors`: where parallel work runs (local processes or a Ray cluster).
- :mod:`crossfake.evaluation`: metrics of any predictions table (frame and video level, bootstrap CIs,
  ROC figures, tables); numpy and pandas only.
- :mod:`crossfake.data`: corpora (``corpora``: one adapter per layout) to face crops and a Parquet
  manifest (``preprocess``), identity groups, identity-disjoint splits and their audit, the synthetic FaceForensics++ (``synth``),
  SBI pseudo-fakes.
- :mod:`crossfake.models`: the foundation models (CLIP, Qwen2.5-VL) by spec, and synth-tiny's pretraining.
- :mod:`crossfake.vlm`: prompts, XML answers, verdict scoring and the local and HTTP backends.
- :mod:`crossfake.methods`: the detection methods behind one :class:`~crossfake.methods.Detector` contract.
- :mod:`crossfake.runs`: the training config and the run directory (written by training, read by scoring).
- :mod:`crossfake.scoring`: batch scoring of a manifest with a detector or a trained run (crop loading,
  precision, the feature cache, streaming resumable predictions).
- :mod:`crossfake.training`: the one trainer.
- :mod:`crossfake.reports`: Markdown and HTML reports rebuilt from saved predictions.
- :mod:`crossfake.inference`: judge one file (faces, tracks, verdict, explanation), the web page.
- :mod:`crossfake.experiments`: experiments and studies (ablation, leakage, ...) as resumable runs.
- :mod:`crossfake.cli`: one module per ``crossfake`` command, thin over the above.

The names below are the library's public entry points; they load on first use, so ``import crossfake``
stays light (no torch)::

    import crossfake
    detector = crossfake.create_detector("lora", backbone="tiny", r=8)
    crossfake.score_run("runs/lora", "prepared/split_report1.parquet", "predictions.parquet")
    table = crossfake.evaluate_predictions(predictions)
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

#: Public name -> the module that defines it.
_API = {
    "create_detector": "crossfake.methods",
    "list_methods": "crossfake.methods",
    "Detector": "crossfake.methods",
    "build_clip": "crossfake.models.backbones.clip",
    "build_qwen_vl": "crossfake.models.backbones.qwen_vl",
    "read_manifest": "crossfake.data.manifest",
    "load_spec": "crossfake.data.splits",
    "assign_splits": "crossfake.data.splits",
    "score_run": "crossfake.scoring",
    "train": "crossfake.training",
    "evaluate_predictions": "crossfake.evaluation",
    "run_experiment": "crossfake.experiments",
    "DetectPipeline": "crossfake.inference.detect",
}

__all__ = ["__version__", *_API]


def __getattr__(name: str) -> Any:
    if name not in _API:
        raise AttributeError(f"module 'crossfake' has no attribute {name!r}")
    value = getattr(importlib.import_module(_API[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
