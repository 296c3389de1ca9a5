"""Evaluation: metrics of any predictions table, at frame and video level, with bootstrap CIs.

- :mod:`.metrics`: pure numpy metrics (ROC, AUC, EER, AP, TPR@FPR, accuracy, F1, balanced accuracy).
- :mod:`.aggregate`: label parsing, frame -> video aggregation, subgroups, bootstrap,
  :func:`evaluate_predictions`.
- :mod:`.tables`: text and Markdown tables of results.
- :mod:`.plots`: ROC figures (imported on demand, as it loads matplotlib).

Convention everywhere: label 1 = fake = positive; higher score = more fake; predicted fake iff
score >= threshold.
"""

from crossfake.evaluation.aggregate import (
    Evaluation,
    RocCurve,
    bootstrap_ci,
    clean_predictions,
    evaluate_predictions,
    parse_labels,
    to_video_level,
)
from crossfake.evaluation.metrics import (
    EERResult,
    UndefinedMetricWarning,
    average_precision,
    confusion_at,
    eer,
    roc_auc,
    roc_curve,
    tpr_at_fpr,
)
from crossfake.evaluation.tables import format_results

__all__ = [
    "EERResult",
    "Evaluation",
    "RocCurve",
    "UndefinedMetricWarning",
    "average_precision",
    "bootstrap_ci",
    "clean_predictions",
    "confusion_at",
    "eer",
    "evaluate_predictions",
    "format_results",
    "parse_labels",
    "roc_auc",
    "roc_curve",
    "to_video_level",
    "tpr_at_fpr",
]
