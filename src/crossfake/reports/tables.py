"""The report's tables, built from a :class:`~crossfake.reports.collect.Summary` (so from ``metrics.json`` too).

Every function returns :class:`crossfake.evaluation.tables.Table` objects; :func:`crossfake.evaluation.tables.render`
lays them out as text, Markdown or HTML.

Threshold metrics (ACC, balanced accuracy, per-class accuracy, F1) are taken at the method's validation
threshold, or at 0.5 (marked †) when the method has none. Ranking metrics (AUC, EER, AP) do not depend on
the threshold.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import pandas as pd

from crossfake.evaluation.aggregate import ALL
from crossfake.evaluation.tables import MISSING, Table, format_number, format_with_ci, result_tables
from crossfake.reports.collect import HALF, VAL, Summary
from crossfake.runs.experiment import Status

#: Metric key -> (column title, level, metric of the tidy results). Keys usable with ``crossfake compare``.
METRICS: dict[str, tuple[str, str, str]] = {
    "auc": ("frame AUC", "frame", "auc"),
    "eer": ("frame EER", "frame", "eer"),
    "accuracy": ("ACC", "frame", "accuracy"),
    "balanced_accuracy": ("BalAcc", "frame", "balanced_accuracy"),
    "real_acc": ("real-acc", "frame", "real_acc"),
    "fake_acc": ("fake-acc", "frame", "fake_acc"),
    "f1": ("F1", "frame", "f1"),
    "ap": ("AP", "frame", "ap"),
    "video_auc": ("video AUC", "video_mean", "auc"),
    "video_eer": ("video EER", "video_mean", "eer"),
    "video_accuracy": ("video ACC", "video_mean", "accuracy"),
    "video_balanced_accuracy": ("video BalAcc", "video_mean", "balanced_accuracy"),
    "vote_accuracy": ("vote ACC", "video_vote", "accuracy"),
    "vote_f1": ("vote F1", "video_vote", "f1"),
}
DEFAULT_COMPARE_METRICS: tuple[str, ...] = ("auc", "video_auc", "balanced_accuracy")
HEADLINE_HEADER: list[str] = [
    "method", "frame AUC [CI]", "frame EER", "ACC", "BalAcc", "real/fake acc", "F1", "AP",
    "video AUC [CI]", "video EER", "trainable params", "train time",
]
AT_HALF = "†"
HEADLINE_NOTE = (
    "ACC, BalAcc, per-class accuracy (reals called real / fakes called fake) and F1 at the method's "
    f"validation EER threshold ({AT_HALF}: at 0.5, no validation threshold); AUC and AP do not depend on "
    "a threshold. Video level: a video's score is the mean of its frame scores. CIs: bootstrap over videos."
)


def _finite(v: Any) -> float | None:
    """``v`` as a float (numpy numbers included), or None when missing, NaN or not a number."""
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def format_count(n: Any) -> str:
    """``1179648 -> "1,179,648"``; ``-`` when unknown."""
    f = _finite(n)
    return MISSING if f is None else f"{int(f):,}"


def format_percent(pct: Any) -> str:
    """``0.7712 -> "0.77%"``; small shares keep two significant digits (``0.00034%``), not ``0.00%``."""
    pct = _finite(pct)
    if pct is None:
        return MISSING
    return f"{pct:.2f}%" if pct >= 0.01 or pct == 0 else f"{pct:.2g}%"


def format_params(parameters: dict[str, Any]) -> str:
    """Trainable parameters with their share of the total, e.g. ``1,179,648 (0.77%)``."""
    text = format_count(parameters.get("trainable"))
    pct = _finite(parameters.get("trainable_percent"))
    return f"{text} ({format_percent(pct)})" if text != MISSING and pct else text


def format_duration(seconds: Any) -> str:
    """Seconds as ``8.2 s``, ``45 s``, ``2.1 min`` or ``1.3 h``; ``-`` when unknown."""
    seconds = _finite(seconds)
    if seconds is None:
        return MISSING
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.1f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"


class _Lookup:
    """Fast access to one summary's tidy results by (test set, method, threshold, level, group, metric)."""

    def __init__(self, summary: Summary) -> None:
        r = summary.results
        keys = zip(r["test_set"], r["method"], r["threshold"], r["level"], r["group"], r["metric"], strict=True)
        self.rows = dict(zip(keys, r[["value", "ci_low", "ci_high"]].itertuples(index=False), strict=True))
        self.thresholds = set(zip(r["test_set"], r["method"], r["threshold"], strict=True))

    def threshold(self, test_set: str, method: str) -> str | None:
        """The threshold label used for a method's table cells: ``val`` if evaluated, else ``0.5``."""
        for label in (VAL, HALF):
            if (test_set, method, label) in self.thresholds:
                return label
        return None

    def get(self, test_set: str, method: str, key: str, group: str = ALL) -> tuple[float, float, float] | None:
        _, level, metric = METRICS[key]
        label = self.threshold(test_set, method)
        row = self.rows.get((test_set, method, label, level, group, metric))
        return None if row is None else tuple(row)

    def value(self, test_set: str, method: str, key: str) -> float:
        row = self.get(test_set, method, key)
        return math.nan if row is None else row[0]

    def cell(self, test_set: str, method: str, key: str, digits: int = 3, ci: bool = False) -> str:
        row = self.get(test_set, method, key)
        if row is None:
            return MISSING
        return format_with_ci(*row, digits) if ci else format_number(row[0], digits)


def _status(summary: Summary, lookup: _Lookup, test_set: str, method: str) -> str | None:
    """Why a method has no numbers on a test set, or None when it has."""
    status = summary.methods[method]["status"]
    if status != Status.done:
        return status
    return None if lookup.threshold(test_set, method) else "missing"


def headline_table(summary: Summary, test_set: str, digits: int = 3) -> Table:
    """method | frame AUC [CI] | frame EER | ACC | BalAcc | real/fake acc | F1 | AP | video AUC [CI] |
    video EER | trainable params | train time, one row per method of the experiment."""
    lookup = _Lookup(summary)
    rows = []
    for method, record in summary.methods.items():
        cost = [format_params(record.get("parameters") or {}),
                format_duration((record.get("wall_time_s") or {}).get("train"))]
        status = _status(summary, lookup, test_set, method)
        if status is not None:
            rows.append([method, f"({status})", *[MISSING] * (len(HEADLINE_HEADER) - 4), *cost])
            continue

        def c(key: str, ci: bool = False, m: str = method) -> str:
            return lookup.cell(test_set, m, key, digits, ci)

        mark = "" if lookup.threshold(test_set, method) == VAL else AT_HALF
        per_class = f"{c('real_acc')}/{c('fake_acc')}"
        rows.append([
            method, c("auc", ci=True), c("eer"), c("accuracy") + mark, c("balanced_accuracy") + mark,
            per_class + mark, c("f1") + mark, c("ap"), c("video_auc", ci=True), c("video_eer"), *cost,
        ])
    return Table(f"Test set {test_set}", list(HEADLINE_HEADER), rows, "l" + "r" * (len(HEADLINE_HEADER) - 1))


def detail_tables(summary: Summary, test_set: str, digits: int = 3) -> list[Table]:
    """Every level (frame, video mean, video vote) x method x threshold (val, 0.5) x group of one test set."""
    part = summary.results.loc[summary.results["test_set"] == test_set]
    if part.empty:
        return []
    labels = {VAL: "val ({:.3f})", HALF: "0.5"}
    part = part.assign(threshold=[labels[t].format(v) for t, v in zip(part["threshold"], part["threshold_value"],
                                                                         strict=True)])
    return result_tables(part, row_keys=("method", "threshold", "group"), digits=digits)


def methods_table(summary: Summary, digits: int = 3) -> Table:
    """Per method: class, status, parameters, run times, validation AUC and the threshold used."""
    header = ["method", "class", "status", "trainable", "total", "share", "train time", "test time",
              "val AUC", "threshold (origin)"]
    rows = []
    for method, r in summary.methods.items():
        params, times = r.get("parameters") or {}, r.get("wall_time_s") or {}
        threshold = r.get("threshold")
        rows.append([
            method, r.get("method") or MISSING, r["status"], format_count(params.get("trainable")),
            format_count(params.get("total")),
            format_percent(params.get("trainable_percent")),
            format_duration(times.get("train")), format_duration(times.get("test")),
            format_number(r.get("val_auc"), digits),
            MISSING if threshold is None else f"{threshold:.{digits}f} ({r.get('threshold_origin')})",
        ])
    return Table("Methods", header, rows, "lll" + "r" * (len(header) - 3))


def issues_table(summary: Summary) -> Table | None:
    """Failed, pending and missing methods with their error or problem, one row per message; None if all ran."""
    rows = []
    for method, r in summary.methods.items():
        if r["status"] == Status.failed:
            rows.append([method, "failed", r.get("error") or "(no error message recorded)"])
        elif r["status"] == Status.pending:
            rows.append([method, "pending", "not run (yet)"])
        rows += [[method, r["status"], issue] for issue in r.get("issues") or []]
    return Table("Failed or missing methods", ["method", "status", "problem"], rows, "lll") if rows else None


def split_counts_table(table: pd.DataFrame) -> Table:
    """Manipulation x split (as :func:`crossfake.reports.collect.split_table`), cells
    ``videos / frames / identities``."""
    splits = list(dict.fromkeys(table["split"]))
    rows = []
    for manipulation, part in table.groupby("manipulation", sort=False):
        by_split = {r.split: f"{format_count(r.videos)} / {format_count(r.frames)} / {format_count(r.identities)}"
                    for r in part.itertuples()}
        rows.append([str(manipulation), *(by_split[s] for s in splits)])
    return Table("Split: videos / frames / identity groups per manipulation × split", ["manipulation", *splits],
                 rows, "l" + "r" * len(splits))


def test_sets_table(table: pd.DataFrame) -> Table:
    """Per test set: its split, its manipulations, its real and fake videos and frames, and whether its
    manipulations were trained on."""
    header = ["test set", "split", "manipulations", "real videos", "real frames", "fake videos", "fake frames",
              "in training"]
    rows = [[r.test_set, str(r.split), r.manipulations, format_count(r.real_videos), format_count(r.real_frames),
             format_count(r.fake_videos), format_count(r.fake_frames), r.seen]
            for r in table.itertuples()]
    return Table("Test sets", header, rows, "lll" + "r" * 4 + "l")


GENERALISATION_NOTE = (
    "Frame AUC [CI] of every method on every test set. A test set is seen when its manipulations were in "
    "the training data and unseen when they were not: the gap between the two is the cross-manipulation "
    "drop. val AUC: on the validation split, where the checkpoint was chosen."
)


def generalisation_table(summary: Summary, digits: int = 3) -> Table:
    """method | val AUC | frame AUC [CI] per test set (its title says whether it was seen in training)."""
    lookup = _Lookup(summary)
    header = ["method", "val AUC"] + [
        f"{t} ({summary.seen[t]})" if t in summary.seen else t for t in summary.test_sets]
    rows = []
    for method, record in summary.methods.items():
        cells = []
        for test_set in summary.test_sets:
            status = _status(summary, lookup, test_set, method)
            cells.append(f"({status})" if status else lookup.cell(test_set, method, "auc", digits, ci=True))
        rows.append([method, format_number(record.get("val_auc"), digits), *cells])
    return Table("Frame AUC across test sets", header, rows, "l" + "r" * (len(header) - 1))


def compare_test_sets(summaries: dict[str, Summary]) -> list[str]:
    """Every run's test sets, in first-seen order: the order of :func:`compare_tables`."""
    return list(dict.fromkeys(t for s in summaries.values() for t in s.test_sets))


def compare_tables(
    summaries: dict[str, Summary], metrics: Sequence[str] = DEFAULT_COMPARE_METRICS, digits: int = 3
) -> list[Table]:
    """Per test set (of any run), one row per method (of any run), one column per run × metric."""
    lookups = {label: _Lookup(s) for label, s in summaries.items()}
    test_sets = compare_test_sets(summaries)
    methods = list(dict.fromkeys(m for s in summaries.values() for m in s.methods))
    header = ["method", *(f"{label}: {METRICS[k][0]}" for label in summaries for k in metrics)]
    tables = []
    for test_set in test_sets:
        rows = []
        for method in methods:
            cells = []
            for label, summary in summaries.items():
                present = method in summary.methods and test_set in summary.test_sets
                status = _status(summary, lookups[label], test_set, method) if present else "absent"
                cells += [f"({status})" if status else lookups[label].cell(test_set, method, k, digits)
                          for k in metrics]
            rows.append([method, *cells])
        tables.append(Table(f"Test set {test_set}", header, rows, "l" + "r" * (len(header) - 1)))
    return tables


def compare_records(summaries: dict[str, Summary], metrics: Sequence[str] = DEFAULT_COMPARE_METRICS) -> pd.DataFrame:
    """The numbers of :func:`compare_tables` as a tidy table: run, test_set, method, metric, value."""
    rows = []
    for label, summary in summaries.items():
        lookup = _Lookup(summary)
        for test_set in summary.test_sets:
            for method in summary.methods:
                for key in metrics:
                    rows.append({"run": label, "test_set": test_set, "method": method, "metric": key,
                                 "value": lookup.value(test_set, method, key),
                                 "threshold": lookup.threshold(test_set, method)})
    return pd.DataFrame(rows, columns=["run", "test_set", "method", "metric", "value", "threshold"])
