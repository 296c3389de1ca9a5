"""From a predictions table to frame- and video-level metrics, per subgroup, with bootstrap CIs.

A predictions table has one row per frame (or image): a score (higher = more fake), a label and, usually,
the id of the video the frame comes from and a subgroup such as the manipulation.

**Levels.** ``frame``: every row is a sample. ``video_mean``: a video's score is the mean of its frame
scores. ``video_vote``: a video's score is the fraction of its frames predicted fake at the threshold
(``score >= threshold``); the verdict is the majority, fake iff that fraction is > 0.5 (a video split
exactly in half counts as real). Keeping the fraction as the score keeps AUC, EER and AP defined.

**Subgroups** (``group_col``, e.g. ``manipulation``). A test set's fakes of one manipulation cannot be scored
without reals, so:

- a subgroup with fake rows only (a manipulation) is evaluated on its rows **plus every real row** of
  the table, i.e. "this manipulation against all the reals";
- a subgroup with real rows only (``real``) gets the threshold metrics that make sense with one class:
  accuracy and real accuracy (its AUC, EER, AP are not reported);
- a subgroup holding both classes (e.g. ``group_col="corpus"``) is evaluated on its own rows.

The overall group is named ``all``.

**Bootstrap CIs** are percentile intervals over ``n_boot`` resamples drawn with a seeded
``numpy.random.Generator``. Resampling is stratified by class (reals from reals, fakes from fakes), so
every resample has the original class counts and AUC is always defined. At video level the videos are
resampled. At frame level, when a video column is given, **videos are resampled too (cluster
bootstrap)**: frames of one video share the person, the compression and the manipulation, so they are not
independent, and resampling frames one by one would give intervals that are far too narrow. Without a
video column, frames are resampled individually. Every (level, subgroup) draws from a fresh generator
seeded with ``seed`` and the videos sorted by id, so results do not depend on which other subgroups are
evaluated, and frame and video level of one subgroup resample the same videos.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

from crossfake.evaluation.metrics import (
    DEFAULT_FPR_TARGETS,
    UndefinedMetricWarning,
    metric_names,
    metrics_from_counts,
    roc_curve,
    score_counts,
)
from crossfake.utils.errors import CrossfakeError
from crossfake.utils.logging import get_logger

log = get_logger("metrics")

#: Case-insensitive label spellings; "true" means "is fake", as does a boolean True.
LABEL_NAMES: dict[str, int] = {
    "0": 0, "0.0": 0, "real": 0, "false": 0, "pristine": 0, "original": 0, "genuine": 0,
    "1": 1, "1.0": 1, "fake": 1, "true": 1, "manipulated": 1, "deepfake": 1,
}
LEVELS: tuple[str, ...] = ("frame", "video_mean", "video_vote")
ALL = "all"
#: Threshold of the vote level: ">= the next float above 0.5" is exactly "> 0.5", the strict majority.
VOTE_THRESHOLD = float(np.nextafter(0.5, 1.0))
#: Metrics reported for a real-only subgroup.
REAL_ONLY_METRICS: tuple[str, ...] = ("accuracy", "real_acc")
RESULT_COLUMNS: tuple[str, ...] = (
    "level", "group", "metric", "value", "ci_low", "ci_high", "n", "n_real", "n_fake",
)
# Bootstrap batches are sized so one (batch x samples) float array stays near this many elements (~16 MB).
_BATCH_ELEMENTS = 2_000_000


# --- input checking ----------------------------------------------------------------------------------------


def require_columns(df: pd.DataFrame, columns: Sequence[str | None]) -> None:
    """Raise a CrossfakeError naming every missing column and listing the available ones."""
    missing = [c for c in columns if c is not None and c not in df.columns]
    if missing:
        raise CrossfakeError(
            f"column(s) {missing} not found in the predictions table; available columns: {list(df.columns)}"
        )


def _label_value(value: object) -> int | None:
    """0/1 for an accepted spelling of a label, else None."""
    if isinstance(value, bool | np.bool_):
        return int(value)
    if isinstance(value, int | float | np.integer | np.floating):
        return int(value) if value in (0, 1) else None
    if isinstance(value, str):
        return LABEL_NAMES.get(value.strip().lower())
    return None


def parse_labels(values: pd.Series | Sequence[object] | np.ndarray, column: str = "label") -> np.ndarray:
    """Labels as an int8 array of 0 (real) and 1 (fake).

    Accepts 0/1 numbers, booleans (True = fake) and the strings of :data:`LABEL_NAMES`
    (``real``/``fake``, ``0``/``1``, ``true``/``false``, ``pristine``/``manipulated``, ...; case and
    surrounding spaces ignored).

    Raises:
        CrossfakeError: listing every unexpected value (and missing labels) of ``column``.
    """
    codes, uniques = pd.factorize(pd.Series(values, copy=False), use_na_sentinel=True)
    mapped = [_label_value(u) for u in uniques]
    bad = [repr(u) for u, m in zip(uniques, mapped, strict=True) if m is None]
    if (codes < 0).any():
        bad.append(f"{int((codes < 0).sum())} missing")
    if bad:
        raise CrossfakeError(
            f"column {column!r} has unexpected label value(s): {', '.join(bad[:10])}"
            f"{' ...' if len(bad) > 10 else ''}; expected 0/1, true/false or real/fake "
            f"(also {'/'.join(sorted(LABEL_NAMES))}, case-insensitive)"
        )
    return np.asarray(mapped, dtype=np.int8)[codes]


def _row_ids(df: pd.DataFrame, mask: np.ndarray, video_col: str | None, limit: int = 5) -> str:
    """Up to ``limit`` row ids (index labels, and videos when known) of the rows in ``mask``."""
    rows = df.loc[mask].head(limit)
    if video_col is None:
        ids = [str(i) for i in rows.index]
    else:
        ids = [f"{i} (video {v})" for i, v in zip(rows.index, rows[video_col], strict=True)]
    return ", ".join(ids) + (" ..." if mask.sum() > limit else "")


def check_video_labels(df: pd.DataFrame, label_col: str, video_col: str) -> None:
    """Raise a CrossfakeError naming the videos whose frames do not all carry the same (parsed) label."""
    per_video = df.groupby(video_col, sort=True)[label_col].nunique()
    mixed = per_video.index[per_video > 1]
    if len(mixed):
        raise CrossfakeError(
            f"{len(mixed)} video(s) have frames labelled both real and fake in column {label_col!r}, e.g. "
            f"{', '.join(map(repr, mixed[:5]))}; a video has one label"
        )


def clean_predictions(
    df: pd.DataFrame,
    score_col: str = "score",
    label_col: str = "label",
    video_col: str | None = "video_id",
    group_col: str | None = None,
    nan: Literal["error", "drop"] = "error",
) -> tuple[pd.DataFrame, int]:
    """Check a predictions table and return the columns needed, normalised, and how many rows were dropped.

    The result has the given column names: scores as float64, labels as int8 0/1 (see
    :func:`parse_labels`), subgroup values as strings (missing ones become ``"<NA>"``).

    Args:
        df: the predictions table (not modified).
        score_col, label_col, video_col, group_col: column names; ``video_col``/``group_col`` may be None.
        nan: what to do with rows whose score is NaN or infinite: ``"error"`` (default) raises a
            CrossfakeError naming how many and the first few rows; ``"drop"`` drops them and logs the count.

    Raises:
        CrossfakeError: missing column, non-numeric scores, bad labels, bad scores with ``nan="error"``,
            missing video ids, or a video whose frames disagree on the label.
    """
    if nan not in ("error", "drop"):
        raise CrossfakeError(f"nan must be 'error' or 'drop', not {nan!r}")
    require_columns(df, [score_col, label_col, video_col, group_col])
    try:
        scores = pd.to_numeric(df[score_col], errors="raise").to_numpy(dtype=np.float64, na_value=np.nan)
    except (ValueError, TypeError) as e:
        raise CrossfakeError(f"column {score_col!r} must hold numeric scores: {e}") from None
    out = pd.DataFrame({score_col: scores, label_col: parse_labels(df[label_col], label_col)}, index=df.index)
    if video_col is not None:
        no_video = df[video_col].isna().to_numpy()
        if no_video.any():
            raise CrossfakeError(
                f"{int(no_video.sum())} row(s) have no video id in column {video_col!r}: "
                f"rows {_row_ids(df, no_video, None)}"
            )
        out[video_col] = df[video_col]
    if group_col is not None:
        out[group_col] = df[group_col].astype("string").fillna("<NA>").astype(str)
    bad = ~np.isfinite(scores)
    if bad.any():
        if nan == "error":
            raise CrossfakeError(
                f"{int(bad.sum())} row(s) have a NaN or infinite score in column {score_col!r}: rows "
                f"{_row_ids(df, bad, video_col)}; fix them or drop them (--nan drop / nan='drop')"
            )
        log.warning("dropped %d row(s) with a NaN or infinite score in column %r", int(bad.sum()), score_col)
        out = out.loc[~bad]
    if video_col is not None:
        check_video_labels(out, label_col, video_col)
    return out, int(bad.sum())


# --- video level -------------------------------------------------------------------------------------------


def to_video_level(
    df: pd.DataFrame,
    score_col: str = "score",
    label_col: str = "label",
    video_col: str = "video_id",
    how: Literal["mean", "vote"] = "mean",
    threshold: float = 0.5,
) -> pd.DataFrame:
    """One row per video, sorted by video id: ``video_col``, ``score_col``, ``label_col``, ``n_frames``.

    Args:
        df: frame-level predictions with finite scores (see :func:`clean_predictions`).
        how: ``"mean"``: the video's score is the mean of its frame scores. ``"vote"``: the fraction of
            its frames predicted fake (``score >= threshold``); the majority verdict is fake iff the
            fraction is > 0.5, i.e. the fraction is >= :data:`VOTE_THRESHOLD`.
        threshold: frame decision threshold, used by ``"vote"`` only.

    Returns:
        The video table, with labels as int8 0/1.

    Raises:
        CrossfakeError: a missing column, a non-finite score, or a video whose frames disagree on the label.
    """
    if how not in ("mean", "vote"):
        raise CrossfakeError(f"how must be 'mean' or 'vote', not {how!r}")
    require_columns(df, [score_col, label_col, video_col])
    scores = df[score_col].to_numpy(dtype=np.float64)
    if not np.isfinite(scores).all():
        raise CrossfakeError(f"column {score_col!r} has NaN or infinite scores; clean the table first")
    frames = pd.DataFrame({
        video_col: df[video_col].to_numpy(),
        label_col: parse_labels(df[label_col], label_col),
        score_col: (scores >= threshold).astype(np.float64) if how == "vote" else scores,
    })
    check_video_labels(frames, label_col, video_col)
    videos = frames.groupby(video_col, sort=True).agg(
        **{score_col: (score_col, "mean"), label_col: (label_col, "first"), "n_frames": (score_col, "size")}
    )
    return videos.reset_index()


# --- bootstrap ---------------------------------------------------------------------------------------------


def stratified_counts(cluster_labels: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """How often each cluster is drawn in each resample, shape ``(n_boot, n_clusters)``.

    Each resample draws, with replacement, as many real clusters as there are real clusters and as many
    fake clusters as fake ones (stratified by class), so class counts are those of the original sample.
    """
    counts = np.zeros((n_boot, len(cluster_labels)), dtype=np.int32)
    for cls in (0, 1):
        members = np.flatnonzero(cluster_labels == cls)
        k = len(members)
        if k == 0:
            continue
        draws = rng.integers(0, k, size=(n_boot, k))
        # Per-row bincount in one call: offset row b's draws by b * k.
        flat = (draws + np.arange(n_boot)[:, None] * k).ravel()
        counts[:, members] = np.bincount(flat, minlength=n_boot * k).reshape(n_boot, k)
    return counts


def bootstrap_ci(
    y_true: np.ndarray,
    y_score: np.ndarray,
    clusters: np.ndarray | None = None,
    *,
    threshold: float = 0.5,
    fpr_targets: Sequence[float] = DEFAULT_FPR_TARGETS,
    n_boot: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, tuple[float, float]]:
    """Stratified percentile bootstrap interval of every metric of :func:`metric_names`.

    Args:
        y_true: labels 0/1 per sample.
        y_score: finite scores per sample.
        clusters: optional cluster id per sample (the video of a frame). Whole clusters are resampled
            (their samples keep their scores and all move together); clusters are ordered by sorted id.
            A cluster's class is that of its samples, which must agree. Default: each sample alone.
        threshold: decision threshold of the threshold metrics.
        fpr_targets: as in :func:`~crossfake.evaluation.metrics.metrics_from_counts`.
        n_boot: number of resamples.
        confidence: coverage of the interval, e.g. 0.95 for the 2.5th-97.5th percentiles.
        seed: seed of the ``numpy.random.default_rng`` that draws the resamples.

    Returns:
        ``{metric: (low, high)}``; ``(nan, nan)`` for a metric undefined in every resample (e.g. AUC when
        a class is absent).
    """
    if n_boot < 1:
        raise CrossfakeError(f"n_boot must be >= 1, not {n_boot}")
    y = np.asarray(y_true, dtype=np.int8)
    s = np.asarray(y_score, dtype=np.float64)
    if clusters is None:
        codes, cluster_labels = np.arange(len(y)), y
    else:
        codes, uniques = pd.factorize(pd.Series(clusters, copy=False), sort=True)
        cluster_labels = np.zeros(len(uniques), dtype=np.int8)
        cluster_labels[codes] = y
        if (cluster_labels[codes] != y).any():
            raise CrossfakeError("bootstrap clusters mix real and fake samples; a video has one label")
    counts = stratified_counts(cluster_labels, n_boot, np.random.default_rng(seed))
    replicates: dict[str, list[np.ndarray]] = {name: [] for name in metric_names(fpr_targets)}
    batch = max(1, _BATCH_ELEMENTS // max(1, len(y)))
    for start in range(0, n_boot, batch):
        # Each sample weighs as often as its cluster was drawn.
        weights = counts[start : start + batch][:, codes]
        for name, values in metrics_from_counts(*score_counts(y, s, weights), threshold, fpr_targets).items():
            replicates[name].append(values)
    tail = 100 * (1 - confidence) / 2
    intervals = {}
    for name, parts in replicates.items():
        values = np.concatenate(parts)
        # Class totals are fixed by the stratification, so a metric is NaN in every resample or in none.
        values = values[np.isfinite(values)]
        low, high = np.percentile(values, [tail, 100 - tail]) if len(values) else (np.nan, np.nan)
        intervals[name] = (float(low), float(high))
    return intervals


# --- evaluation --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RocCurve:
    """One ROC curve with its AUC and EER, as drawn by :func:`crossfake.evaluation.plots.plot_roc`."""

    label: str
    fpr: np.ndarray
    tpr: np.ndarray
    thresholds: np.ndarray
    auc: float
    eer: float
    eer_threshold: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict; non-finite numbers (the leading +inf threshold) become None."""
        return {
            "label": self.label, "auc": _json_number(self.auc), "eer": _json_number(self.eer),
            "eer_threshold": _json_number(self.eer_threshold),
            "fpr": self.fpr.tolist(), "tpr": self.tpr.tolist(),
            "thresholds": [_json_number(t) for t in self.thresholds.tolist()],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RocCurve:
        """Inverse of :meth:`to_dict` (a None threshold is +inf, the others NaN)."""
        thresholds = [math.inf if (t is None and i == 0) else t for i, t in enumerate(d["thresholds"])]
        return cls(
            label=d["label"], fpr=np.asarray(d["fpr"], dtype=float), tpr=np.asarray(d["tpr"], dtype=float),
            thresholds=np.asarray(thresholds, dtype=float), auc=_float(d["auc"]), eer=_float(d["eer"]),
            eer_threshold=_float(d["eer_threshold"]),
        )


@dataclass
class Evaluation:
    """Results of :func:`evaluate_predictions`.

    Attributes:
        results: tidy table, one row per (level, group, metric), columns :data:`RESULT_COLUMNS`; ``n``,
            ``n_real``, ``n_fake`` count the samples at that level (frames or videos).
        curves: ROC curve per (level, group) for groups with both classes.
        info: the settings and definitions used (threshold, bootstrap, subgroup rule, dropped rows, ...).
    """

    results: pd.DataFrame
    curves: dict[tuple[str, str], RocCurve] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)

    def value(self, level: str, group: str, metric: str) -> float:
        """The point estimate of one metric (KeyError if it was not computed)."""
        r = self.results
        hit = r.loc[(r["level"] == level) & (r["group"] == group) & (r["metric"] == metric), "value"]
        if hit.empty:
            raise KeyError((level, group, metric))
        return float(hit.iloc[0])

    def to_dict(self, curves: bool = True) -> dict[str, Any]:
        """JSON-ready dict (NaN becomes None): ``info``, ``results`` as records and optionally ``curves``."""
        records = [{k: _json_number(v) for k, v in row.items()} for row in self.results.to_dict("records")]
        out: dict[str, Any] = {"info": self.info, "results": records}
        if curves:
            out["curves"] = [{"level": lv, "group": g, **c.to_dict()} for (lv, g), c in self.curves.items()]
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Evaluation:
        """Inverse of :meth:`to_dict`, e.g. to re-plot or re-tabulate a saved ``metrics.json``."""
        results = pd.DataFrame(d["results"], columns=list(RESULT_COLUMNS))
        for col in ("value", "ci_low", "ci_high"):
            results[col] = results[col].astype(float)
        curves = {(c["level"], c["group"]): RocCurve.from_dict(c) for c in d.get("curves", [])}
        return cls(results=results, curves=curves, info=d.get("info", {}))


def _json_number(v: Any) -> Any:
    return None if isinstance(v, float) and not math.isfinite(v) else v


def _float(v: float | None) -> float:
    return math.nan if v is None else float(v)


def _require_both_classes(labels: np.ndarray, raw_labels: pd.Series, label_col: str) -> None:
    n_fake = int(labels.sum())
    if n_fake == 0 or n_fake == len(labels):
        found = "real" if n_fake == 0 else "fake"
        values = sorted(map(str, raw_labels.dropna().unique()))[:10]
        raise CrossfakeError(
            f"the predictions have {found} samples only ({len(labels)} rows; values of {label_col!r}: "
            f"{values}); AUC, EER and AP need both real (0) and fake (1) samples"
        )


def _subgroups(
    df: pd.DataFrame, label_col: str, group_col: str | None
) -> Iterator[tuple[str, pd.DataFrame, bool]]:
    """(group name, its rows, whether ranking metrics apply), following the module's subgroup rule."""
    yield ALL, df, True
    if group_col is None:
        return
    reals = df.loc[df[label_col] == 0]
    for name, rows in df.groupby(group_col, sort=True):
        classes = set(rows[label_col].unique().tolist())
        if classes == {0}:
            yield str(name), rows, False
        elif classes == {1}:
            yield str(name), pd.concat([reals, rows]), True
        else:
            yield str(name), rows, True


def _level_samples(
    df: pd.DataFrame,
    score_col: str,
    label_col: str,
    video_col: str | None,
    levels: Sequence[str],
    threshold: float,
) -> Iterator[tuple[str, np.ndarray, np.ndarray, np.ndarray | None, float]]:
    """(level, labels, scores, clusters for the bootstrap, decision threshold) for each requested level."""
    if "frame" in levels:
        clusters = None if video_col is None else df[video_col].to_numpy()
        yield "frame", df[label_col].to_numpy(), df[score_col].to_numpy(), clusters, threshold
    if "video" in levels:
        for how, level, thr in (("mean", "video_mean", threshold), ("vote", "video_vote", VOTE_THRESHOLD)):
            videos = to_video_level(df, score_col, label_col, video_col, how=how, threshold=threshold)
            yield level, videos[label_col].to_numpy(), videos[score_col].to_numpy(), None, thr


def _evaluate_sample(
    y: np.ndarray,
    s: np.ndarray,
    clusters: np.ndarray | None,
    threshold: float,
    ranked: bool,
    label: str,
    *,
    fpr_targets: Sequence[float],
    n_boot: int,
    confidence: float,
    seed: int,
) -> tuple[list[dict[str, Any]], RocCurve | None]:
    """Result rows (metric, value, CI, sizes) of one sample, and its ROC curve when both classes are there.

    ``ranked=False`` (a real-only subgroup) keeps only :data:`REAL_ONLY_METRICS`; ``label`` names the curve.
    """
    n_fake = int(y.sum())
    sizes = {"n": len(y), "n_real": len(y) - n_fake, "n_fake": n_fake}
    point = metrics_from_counts(*score_counts(y, s), threshold, fpr_targets)
    ci = (
        bootstrap_ci(y, s, clusters, threshold=threshold, fpr_targets=fpr_targets, n_boot=n_boot,
                     confidence=confidence, seed=seed)
        if n_boot > 0 else {}
    )
    rows = []
    for name in metric_names(fpr_targets) if ranked else REAL_ONLY_METRICS:
        low, high = ci.get(name, (math.nan, math.nan))
        rows.append({"metric": name, "value": float(point[name]), "ci_low": low, "ci_high": high, **sizes})
    if not ranked or min(sizes["n_real"], sizes["n_fake"]) == 0:
        return rows, None
    fpr, tpr, thresholds = roc_curve(y, s)
    auc, rate, eer_threshold = (float(point[k]) for k in ("auc", "eer", "eer_threshold"))
    return rows, RocCurve(label, fpr, tpr, thresholds, auc, rate, eer_threshold)


def evaluate_predictions(
    df: pd.DataFrame,
    score_col: str = "score",
    label_col: str = "label",
    video_col: str | None = "video_id",
    group_col: str | None = None,
    threshold: float = 0.5,
    levels: Sequence[str] = ("frame", "video"),
    n_boot: int = 1000,
    seed: int = 0,
    fpr_targets: Sequence[float] = DEFAULT_FPR_TARGETS,
    confidence: float = 0.95,
    nan: Literal["error", "drop"] = "error",
    require_both_classes: bool = False,
) -> Evaluation:
    """Frame- and video-level metrics with bootstrap CIs, overall and per subgroup.

    See the module docstring for the levels, the subgroup rule and the bootstrap.

    Args:
        df: predictions, one row per frame (not modified).
        score_col, label_col: score (higher = more fake) and label (see :func:`parse_labels`) columns.
        video_col: video id column, needed for the video levels and the cluster bootstrap; None for a
            frame-only evaluation with frames resampled individually.
        group_col: optional subgroup column (e.g. ``manipulation``).
        threshold: frame decision threshold (predicted fake iff score >= threshold); the video_mean
            level applies it to the mean score; the video_vote level uses it to flag frames.
        levels: any of ``"frame"`` and ``"video"`` (the latter gives ``video_mean`` and ``video_vote``).
        n_boot: bootstrap resamples; 0 disables the CIs (they are NaN).
        seed: bootstrap seed.
        fpr_targets: false positive rates at which the TPR is reported.
        confidence: CI coverage.
        nan: policy for non-finite scores, see :func:`clean_predictions`.
        require_both_classes: raise a CrossfakeError, rather than warn, when the table (after dropping
            rows) lacks real or fake samples.

    Returns:
        An :class:`Evaluation`. A group with one class only (e.g. no reals at all) gets NaN ranking
        metrics and an :class:`UndefinedMetricWarning`.
    """
    unknown = set(levels) - {"frame", "video"}
    if unknown or not levels:
        raise CrossfakeError(f"levels must be a non-empty subset of ('frame', 'video'); got {list(levels)}")
    if "video" in levels and video_col is None:
        raise CrossfakeError("video-level metrics need a video column; pass levels=('frame',) without one")
    if n_boot < 0:
        raise CrossfakeError(f"n_boot must be >= 0, not {n_boot}")
    clean, n_dropped = clean_predictions(df, score_col, label_col, video_col, group_col, nan)
    if group_col is not None and (clean[group_col] == ALL).any():
        raise CrossfakeError(f"column {group_col!r} has a group named {ALL!r}, the name of the overall group")
    if require_both_classes:
        _require_both_classes(clean[label_col].to_numpy(), df[label_col], label_col)
    rows: list[dict[str, Any]] = []
    curves: dict[tuple[str, str], RocCurve] = {}
    bootstrap = {"fpr_targets": fpr_targets, "n_boot": n_boot, "confidence": confidence, "seed": seed}
    for group, subset, ranked in _subgroups(clean, label_col, group_col):
        samples = _level_samples(subset, score_col, label_col, video_col, levels, threshold)
        for level, y, s, clusters, thr in samples:
            sample_rows, curve = _evaluate_sample(y, s, clusters, thr, ranked, group, **bootstrap)
            rows += [{"level": level, "group": group, **r} for r in sample_rows]
            if curve is not None:
                curves[(level, group)] = curve
            elif ranked:
                found = "fake" if y.any() else "real"
                warnings.warn(
                    f"{level} level, group {group!r}: only {found} samples, so AUC, EER and AP are NaN",
                    UndefinedMetricWarning, stacklevel=2,
                )
    info = {
        "score_col": score_col, "label_col": label_col, "video_col": video_col, "group_col": group_col,
        "threshold": threshold, "levels": [lv for lv in LEVELS if lv.split("_")[0] in levels],
        "vote_rule": f"video score = fraction of frames with score >= {threshold}; fake iff fraction > 0.5",
        "n_boot": n_boot, "confidence": confidence, "seed": seed, "fpr_targets": list(fpr_targets),
        "bootstrap": "percentile, stratified by class, resampling "
        + ("videos (frame level: cluster bootstrap)" if video_col else "frames"),
        "subgroups": "fake-only group: its rows + all real rows; real-only group: accuracy only; "
        "mixed group: its own rows",
        "nan_policy": nan, "n_dropped_nan": n_dropped,
    }
    results = pd.DataFrame(rows, columns=list(RESULT_COLUMNS))
    return Evaluation(results=results, curves=curves, info=info)
