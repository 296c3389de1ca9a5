"""Binary detection metrics as pure numpy functions: ROC, AUC, EER, AP, TPR@FPR and threshold metrics.

Conventions, for every function here:

- label 1 = fake = the positive class, label 0 = real;
- a higher score means "more likely fake";
- a sample is predicted fake iff ``score >= threshold``.

Every metric is computed from one sufficient statistic (:func:`score_counts`): for each distinct score,
in decreasing order, the (possibly weighted) number of fake and of real samples with that score. Tied
samples therefore enter the ROC curve together as one diagonal step, exactly as in scikit-learn.
:func:`metrics_from_counts` evaluates all metrics on a *batch* of such counts at once, which is what makes
the bootstrap of :mod:`crossfake.evaluation.aggregate` fast; the single-sample functions are thin
wrappers over the same code, so a point estimate and its bootstrap replicates cannot disagree in method.

Degenerate inputs:

- one class only: the ROC curve's missing rate, AUC, EER, AP and TPR@FPR are NaN, with an
  :class:`UndefinedMetricWarning`;
- precision with no sample predicted fake, recall with no fake sample and F1 with no fake sample and
  none predicted fake are 0 (scikit-learn's ``zero_division=0``; ``fake_acc``, the same rate as recall,
  is NaN there, see next);
- the per-class accuracy of an absent class is NaN (it is undefined, not bad), and balanced accuracy is
  then the accuracy of the class that is present (as scikit-learn's ``balanced_accuracy_score``).

Inputs are never modified.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike

from crossfake.utils.errors import CrossfakeError

DEFAULT_FPR_TARGETS: tuple[float, ...] = (0.01, 0.05, 0.1)

#: Metrics that need both classes (ranking metrics); the rest are threshold metrics.
RANKING_METRICS: tuple[str, ...] = ("auc", "eer", "eer_threshold", "ap")
THRESHOLD_METRICS: tuple[str, ...] = (
    "accuracy", "balanced_accuracy", "precision", "recall", "f1", "real_acc", "fake_acc",
)


class UndefinedMetricWarning(UserWarning):
    """A metric is undefined for the given data (e.g. AUC with one class only) and was set to NaN."""


class EERResult(NamedTuple):
    """Equal error rate and the decision threshold nearest to it (see :func:`eer`)."""

    eer: float
    threshold: float


def tpr_metric_name(fpr_target: float) -> str:
    """Name of the TPR@FPR metric for ``fpr_target``, e.g. ``0.01 -> "tpr@fpr=0.01"``."""
    return f"tpr@fpr={fpr_target:g}"


def metric_names(fpr_targets: Sequence[float] = DEFAULT_FPR_TARGETS) -> list[str]:
    """The keys of :func:`metrics_from_counts`, in its order."""
    return [*RANKING_METRICS, *map(tpr_metric_name, fpr_targets), *THRESHOLD_METRICS]


def _check_inputs(y_true: ArrayLike, y_score: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Validate and convert to (labels as float 0/1, scores as float64), both 1-D of equal length."""
    y = np.asarray(y_true)
    s = np.asarray(y_score, dtype=np.float64)
    if y.ndim != 1 or s.ndim != 1 or len(y) != len(s):
        raise CrossfakeError(f"y_true and y_score must be 1-D of equal length; got {y.shape} and {s.shape}")
    if not np.isin(y, (0, 1)).all():
        bad = np.unique(y[~np.isin(y, (0, 1))])[:5]
        raise CrossfakeError(f"y_true must hold 0 (real) and 1 (fake) only; found {bad.tolist()}")
    if not np.isfinite(s).all():
        raise CrossfakeError(f"y_score has {int((~np.isfinite(s)).sum())} NaN or infinite value(s)")
    return y.astype(np.float64), s


def score_counts(
    y_true: ArrayLike, y_score: ArrayLike, weights: ArrayLike | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Weighted counts of fake and real samples per distinct score, scores in decreasing order.

    Args:
        y_true: labels, shape ``(n,)``; 1 = fake, 0 = real.
        y_score: scores, shape ``(n,)``; higher = more fake.
        weights: optional sample weights, shape ``(n,)`` or ``(b, n)`` for a batch of ``b`` weightings
            (the bootstrap passes how often each sample was drawn). Default: all 1.

    Returns:
        ``(scores, pos, neg)``: the distinct scores, decreasing, shape ``(g,)``; the summed weight of
        fake (``pos``) and real (``neg``) samples at each score, shape ``(g,)`` or ``(b, g)``.
    """
    y, s = _check_inputs(y_true, y_score)
    w = np.ones_like(s) if weights is None else np.asarray(weights, dtype=np.float64)
    if w.shape[-1] != len(s) or w.ndim > 2:
        raise CrossfakeError(f"weights must have shape (n,) or (b, n) with n={len(s)}; got {w.shape}")
    if len(s) == 0:
        empty = np.zeros(w.shape[:-1] + (0,))
        return np.zeros(0), empty, empty.copy()
    order = np.argsort(s)[::-1]
    s_sorted = s[order]
    starts = np.flatnonzero(np.r_[True, s_sorted[1:] != s_sorted[:-1]])
    w_sorted, y_sorted = w[..., order], y[order]
    pos = np.add.reduceat(w_sorted * y_sorted, starts, axis=-1)
    neg = np.add.reduceat(w_sorted * (1.0 - y_sorted), starts, axis=-1)
    return s_sorted[starts], pos, neg


# --- batch kernels -----------------------------------------------------------------------------------------
# Each takes cumulative counts of a batch, shape (b, g + 1): column k holds the weight of fakes (tps) and of
# reals (fps) among the k highest distinct scores, so column 0 (nothing flagged, threshold +inf) is 0. They
# return one value per batch row and run under np.errstate: a class with zero weight gives NaN rates,
# which they propagate on purpose.


def _cumulative(pos: np.ndarray, neg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(tps, fps) with a leading 0 column from per-score counts of shape (b, g)."""
    zero = np.zeros((pos.shape[0], 1))
    return np.hstack([zero, np.cumsum(pos, axis=1)]), np.hstack([zero, np.cumsum(neg, axis=1)])


def _rates(tps: np.ndarray, fps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ROC points (fpr, tpr), starting at (0, 0)."""
    return fps / fps[:, -1:], tps / tps[:, -1:]


def _auc(fpr: np.ndarray, tpr: np.ndarray) -> np.ndarray:
    # Trapezoids: a run of tied scores is one diagonal step, which counts a tied fake/real pair as 1/2.
    return np.sum(np.diff(fpr, axis=1) * (tpr[:, 1:] + tpr[:, :-1]) / 2.0, axis=1)


def _average_precision(tps: np.ndarray, fps: np.ndarray) -> np.ndarray:
    # AP = sum over thresholds of (recall increase) x (precision there), as scikit-learn (no interpolation).
    tp, flagged = tps[:, 1:], tps[:, 1:] + fps[:, 1:]
    precision = np.divide(tp, flagged, out=np.zeros_like(tp), where=flagged > 0)
    ap = np.sum(np.diff(tps, axis=1) * precision, axis=1) / tps[:, -1]
    # Without reals the AP is trivially 1; NaN instead, like every ranking metric with one class.
    return np.where(fps[:, -1] > 0, ap, np.nan)


def _eer(fpr: np.ndarray, tpr: np.ndarray, thresholds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """EER and threshold per row; see :func:`eer` for the definition. ``thresholds`` has shape (g + 1,)."""
    d = fpr - (1.0 - tpr)  # FPR - FNR: -1 at the first point, +1 at the last, never decreasing
    defined = np.isfinite(d).all(axis=1)
    i = np.argmax(d >= 0, axis=1)  # first point at or past the crossing; >= 1 on defined rows
    i = np.where(defined, np.maximum(i, 1), 1)
    rows = np.arange(len(d))
    d0, d1 = d[rows, i - 1], d[rows, i]
    f0, f1 = fpr[rows, i - 1], fpr[rows, i]
    # Fraction of the segment (i-1 -> i) where FPR - FNR, linear along the segment, reaches 0.
    t = d0 / (d0 - d1)
    rate = f0 + t * (f1 - f0)
    # The threshold of the bracketing ROC point nearer the crossing (point i on a tie, so never +inf).
    nearest = np.where(np.abs(d1) <= np.abs(d0), i, i - 1)
    threshold = thresholds[nearest]
    return np.where(defined, rate, np.nan), np.where(defined, threshold, np.nan)


def _tpr_at_fpr(fpr: np.ndarray, tpr: np.ndarray, fpr_target: float) -> np.ndarray:
    # Best TPR over the ROC points (real thresholds, no interpolation) whose FPR does not exceed the target.
    # Both rates never decrease along a row, so that is the TPR of the last such point.
    last = np.sum(fpr <= fpr_target, axis=1) - 1  # >= 0: the first point has FPR 0
    best = np.take_along_axis(tpr, np.maximum(last, 0)[:, None], axis=1)[:, 0]
    return np.where(np.isfinite(fpr[:, -1]) & np.isfinite(tpr[:, -1]), best, np.nan)


def _threshold_metrics(
    scores: np.ndarray, tps: np.ndarray, fps: np.ndarray, threshold: float
) -> dict[str, np.ndarray]:
    # scores decrease, so the samples predicted fake (score >= threshold) are the first k distinct scores.
    k = int(np.searchsorted(-scores, -threshold, side="right"))
    n_pos, n_neg = tps[:, -1], fps[:, -1]
    tp, fp = tps[:, k], fps[:, k]
    tn, fn = n_neg - fp, n_pos - tp
    real_acc = tn / n_neg  # NaN when no real sample
    fake_acc = tp / n_pos  # NaN when no fake sample
    both = np.stack([real_acc, fake_acc])
    n_defined = np.isfinite(both).sum(axis=0)
    return {
        "accuracy": (tp + tn) / (n_pos + n_neg),
        "balanced_accuracy": np.nansum(both, axis=0) / np.where(n_defined > 0, n_defined, np.nan),
        "precision": np.divide(tp, tp + fp, out=np.zeros_like(tp), where=tp + fp > 0),
        "recall": np.divide(tp, n_pos, out=np.zeros_like(tp), where=n_pos > 0),
        "f1": np.divide(2 * tp, 2 * tp + fp + fn, out=np.zeros_like(tp), where=2 * tp + fp + fn > 0),
        "real_acc": real_acc,
        "fake_acc": fake_acc,
    }


def metrics_from_counts(
    scores: ArrayLike,
    pos: ArrayLike,
    neg: ArrayLike,
    threshold: float = 0.5,
    fpr_targets: Sequence[float] = DEFAULT_FPR_TARGETS,
) -> dict[str, np.ndarray]:
    """Every metric of this module from the output of :func:`score_counts`, for one sample or a batch.

    Undefined values are NaN without a warning (the single-sample functions warn).

    Args:
        scores: distinct scores in decreasing order, shape ``(g,)``.
        pos: weight of fake samples per score, shape ``(g,)`` or ``(b, g)``.
        neg: weight of real samples per score, same shape as ``pos``.
        threshold: decision threshold of the threshold metrics (predicted fake iff score >= threshold).
        fpr_targets: false positive rates at which to report the TPR.

    Returns:
        ``{name: values}`` in the order of :func:`metric_names`; each value has shape ``pos.shape[:-1]``
        (a 0-d array for one sample).
    """
    scores = np.asarray(scores, dtype=np.float64)
    pos_arr, neg_arr = np.asarray(pos, dtype=np.float64), np.asarray(neg, dtype=np.float64)
    batch_shape = pos_arr.shape[:-1]
    p, n = pos_arr.reshape(-1, len(scores)), neg_arr.reshape(-1, len(scores))
    tps, fps = _cumulative(p, n)
    with np.errstate(divide="ignore", invalid="ignore"):
        fpr, tpr = _rates(tps, fps)
        rate, eer_threshold = _eer(fpr, tpr, np.r_[np.inf, scores])
        out = {"auc": _auc(fpr, tpr), "eer": rate, "eer_threshold": eer_threshold}
        out["ap"] = _average_precision(tps, fps)
        out |= {tpr_metric_name(t): _tpr_at_fpr(fpr, tpr, t) for t in fpr_targets}
        out |= _threshold_metrics(scores, tps, fps, threshold)
    return {k: v.reshape(batch_shape) for k, v in out.items()}


# --- single-sample functions ------------------------------------------------------------------------------


def _cumulative_1(
    y_true: ArrayLike, y_score: ArrayLike, what: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(scores, tps, fps) as a batch of one, warning when ``what`` is undefined because a class is missing."""
    scores, pos, neg = score_counts(y_true, y_score)
    if pos.sum() == 0 or neg.sum() == 0:
        found = "no samples" if len(scores) == 0 else f"only {'fake' if neg.sum() == 0 else 'real'} samples"
        warnings.warn(f"{what} is undefined with {found}; it is NaN", UndefinedMetricWarning, stacklevel=3)
    return scores, *_cumulative(pos[None, :], neg[None, :])


def roc_curve(y_true: ArrayLike, y_score: ArrayLike) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ROC curve at every distinct score, as ``sklearn.metrics.roc_curve(..., drop_intermediate=False)``.

    Args:
        y_true: labels, 1 = fake, 0 = real.
        y_score: scores, higher = more fake.

    Returns:
        ``(fpr, tpr, thresholds)``, each of length (distinct scores + 1). ``thresholds`` decreases and
        starts with ``+inf`` (nothing predicted fake, the point (0, 0)); point k is the operating point of
        predicting fake iff ``score >= thresholds[k]``. Tied scores form one point. With one class only,
        the rate of the missing class is NaN (with a warning).
    """
    scores, tps, fps = _cumulative_1(y_true, y_score, "the ROC curve")
    with np.errstate(divide="ignore", invalid="ignore"):
        fpr, tpr = _rates(tps, fps)
    return fpr[0], tpr[0], np.r_[np.inf, scores]


def roc_auc(y_true: ArrayLike, y_score: ArrayLike) -> float:
    """Area under the ROC curve; a tied fake/real pair counts 1/2 (= ``sklearn.metrics.roc_auc_score``).

    NaN, with a warning, when only one class is present.
    """
    _, tps, fps = _cumulative_1(y_true, y_score, "ROC AUC")
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(_auc(*_rates(tps, fps))[0])


def eer(y_true: ArrayLike, y_score: ArrayLike) -> EERResult:
    """Equal error rate: where the false positive rate equals the false negative rate (1 - TPR).

    Definition, on the ROC points of :func:`roc_curve`: FPR - FNR never decreases along the curve; it is
    -1 at the first point (nothing predicted fake) and +1 at the last (everything predicted fake). Let
    point i be the first with FPR >= FNR. The EER is where the straight segment from point i-1 to point i
    crosses FPR = FNR, both rates interpolated linearly by the same fraction; it is the error rate a
    classifier randomising between those two thresholds achieves, and it is exact when a point lies on
    the line FPR = FNR.

    No single threshold lies between two ROC points, so the threshold returned is that of whichever of
    points i-1 and i is nearer the crossing (smaller |FPR - FNR|; point i on a tie). Applying it (predict
    fake iff score >= threshold) gives an FPR and an FNR each within one ROC step of the EER.

    Perfect separation gives EER 0 with the lowest fake score as threshold; perfectly inverted scores give
    EER 1; scores all tied give 0.5. NaN (both fields), with a warning, when only one class is present.

    Returns:
        ``EERResult(eer, threshold)``.
    """
    scores, tps, fps = _cumulative_1(y_true, y_score, "the EER")
    with np.errstate(divide="ignore", invalid="ignore"):
        rate, threshold = _eer(*_rates(tps, fps), np.r_[np.inf, scores])
    return EERResult(float(rate[0]), float(threshold[0]))


def average_precision(y_true: ArrayLike, y_score: ArrayLike) -> float:
    """Average precision, sum over thresholds of (recall increase) x precision (= sklearn's, incl. ties).

    NaN, with a warning, when only one class is present (without reals it would trivially be 1;
    scikit-learn returns 1 there, and 0 with a warning without fakes).
    """
    _, tps, fps = _cumulative_1(y_true, y_score, "average precision")
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(_average_precision(tps, fps)[0])


def tpr_at_fpr(y_true: ArrayLike, y_score: ArrayLike, fpr_target: float) -> float:
    """The highest TPR of any threshold whose FPR is at most ``fpr_target`` (e.g. 0.01 for 1%).

    Only real thresholds count (ROC points, no interpolation), so the value is achievable on this data.
    NaN, with a warning, when only one class is present.
    """
    _, tps, fps = _cumulative_1(y_true, y_score, "TPR at FPR")
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(_tpr_at_fpr(*_rates(tps, fps), fpr_target)[0])


def confusion_at(y_true: ArrayLike, y_score: ArrayLike, threshold: float = 0.5) -> dict[str, float]:
    """Confusion counts and threshold metrics, predicting fake iff ``score >= threshold``.

    Returns:
        ``tp``, ``fp``, ``tn``, ``fn`` (counts, fake = positive) and ``accuracy``, ``balanced_accuracy``,
        ``precision``, ``recall``, ``f1``, ``real_acc`` (TNR: reals called real) and ``fake_acc`` (TPR:
        fakes called fake). Zero-division and absent-class rules are in the module docstring; no warning
        is emitted, since these metrics stay meaningful with one class.
    """
    scores, pos, neg = score_counts(y_true, y_score)
    k = int(np.searchsorted(-scores, -threshold, side="right"))
    counts = {"tp": pos[:k].sum(), "fp": neg[:k].sum(), "tn": neg[k:].sum(), "fn": pos[k:].sum()}
    with np.errstate(divide="ignore", invalid="ignore"):
        rates = _threshold_metrics(scores, *_cumulative(pos[None, :], neg[None, :]), threshold)
    return {**{c: int(v) for c, v in counts.items()}, **{m: float(v[0]) for m, v in rates.items()}}
