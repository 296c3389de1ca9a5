"""Figures written as PNG: ROC curves (frame and video level side by side, several curves per panel) and
heatmaps of one metric over two settings (e.g. LoRA rank x alpha).

Figures are built with :class:`matplotlib.figure.Figure` and saved through the Agg canvas, never through
``pyplot``: no global state, no display needed, and nothing changes the backend of a caller's session.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from crossfake.evaluation.aggregate import ALL, Evaluation, RocCurve
from crossfake.utils.errors import CrossfakeError
from crossfake.utils.io import atomic_path

#: Panel title -> level of an :class:`Evaluation` drawn in it. The video panel shows the mean-score curves:
#: the vote score takes few distinct values, and its numbers are in the tables.
PANELS: dict[str, str] = {"Frame level": "frame", "Video level (mean score)": "video_mean"}


def roc_panels(evaluation: Evaluation) -> dict[str, list[RocCurve]]:
    """The curves of :func:`plot_roc` for an evaluation: per panel, the overall curve then each subgroup's."""
    panels: dict[str, list[RocCurve]] = {}
    for title, level in PANELS.items():
        curves = [c for (lv, _), c in evaluation.curves.items() if lv == level]
        curves.sort(key=lambda c: (c.label != ALL, c.label))
        if curves:
            panels[title] = curves
    return panels


def plot_roc(
    results_or_curves: Evaluation | Mapping[str, Sequence[RocCurve]],
    path: str | os.PathLike,
    title: str | None = None,
) -> Path:
    """Write a PNG of ROC curves, one panel per level side by side.

    Each curve is labelled with its AUC and EER, and its EER point, where FPR = 1 - TPR, is marked; the
    dashed diagonal is chance.

    Args:
        results_or_curves: an :class:`Evaluation` (panels "Frame level" and "Video level (mean score)",
            one curve per group), or ``{panel title: curves}`` to overlay anything, e.g. several models.
        path: the PNG to write (atomically; parent folders are created).
        title: optional figure title.

    Returns:
        ``path`` as a Path.

    Raises:
        CrossfakeError: when there is no curve to draw (e.g. every group has one class only).
    """
    if isinstance(results_or_curves, Evaluation):
        results_or_curves = roc_panels(results_or_curves)
    panels = {name: list(curves) for name, curves in results_or_curves.items() if curves}
    if not panels:
        raise CrossfakeError("no ROC curve to plot: every group lacks real or fake samples")
    fig = Figure(figsize=(5.2 * len(panels), 5.0), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (name, curves) in zip(axes, panels.items(), strict=True):
        _draw_panel(ax, name, curves)
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def _save(fig: Figure, path: str | os.PathLike) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=150)
    return path


def plot_heatmap(
    table: pd.DataFrame,
    row: str,
    col: str,
    value: str,
    path: str | os.PathLike,
    title: str | None = None,
    digits: int = 3,
    cmap: str = "viridis",
) -> Path:
    """Write a PNG heatmap of ``value`` over ``row`` x ``col``, each cell annotated with its number.

    Rows and columns are the sorted distinct values of the two columns (numbers sort numerically); a
    combination absent from ``table`` or with a NaN value is left blank.

    Args:
        table: one row per combination, e.g. one per run of an ablation, with columns ``row``, ``col``
            and ``value`` (numeric).
        row, col: the columns laid out down and across, e.g. ``"rank"`` and ``"alpha"``.
        value: the column coloured and printed, e.g. ``"auc"``.
        path: the PNG to write (atomically; parent folders are created).
        title: optional figure title (default: ``value``).
        digits: decimals printed in the cells.
        cmap: matplotlib colour map.

    Returns:
        ``path`` as a Path.

    Raises:
        CrossfakeError: a missing column, no row at all, a non-numeric ``value``, or two rows for one
            (row, col) combination (filter the table first, e.g. to one dropout, or aggregate it).
    """
    missing = [c for c in (row, col, value) if c not in table.columns]
    if missing:
        raise CrossfakeError(f"heatmap: column(s) {missing} not in the table; columns: {list(table.columns)}")
    if table.empty:
        raise CrossfakeError("heatmap: the table has no rows")
    dup = table.duplicated([row, col], keep=False)
    if dup.any():
        pairs = sorted({(str(a), str(b)) for a, b in table.loc[dup, [row, col]].itertuples(index=False)})[:5]
        raise CrossfakeError(
            f"heatmap: several rows for ({row}, {col}) = {pairs}; filter the table to one value of the other "
            "settings or aggregate it first"
        )
    try:
        values = pd.to_numeric(table[value], errors="raise").astype(float)
    except (TypeError, ValueError):
        raise CrossfakeError(f"heatmap: column {value!r} must be numeric") from None
    grid = pd.DataFrame({row: table[row].to_numpy(), col: table[col].to_numpy(), value: values.to_numpy()})
    grid = grid.pivot(index=row, columns=col, values=value).sort_index().sort_index(axis=1)
    data = grid.to_numpy(dtype=float)

    fig = Figure(figsize=(1.2 * data.shape[1] + 2.6, 0.8 * data.shape[0] + 1.8), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    finite = data[np.isfinite(data)]
    image = ax.imshow(np.ma.masked_invalid(data), cmap=cmap, aspect="auto",
                      vmin=finite.min() if finite.size else None, vmax=finite.max() if finite.size else None)
    fig.colorbar(image, ax=ax, label=value)
    ax.set_xticks(range(data.shape[1]), [str(c) for c in grid.columns])
    ax.set_yticks(range(data.shape[0]), [str(r) for r in grid.index])
    ax.set(xlabel=col, ylabel=row, title=title or value)
    middle = (finite.min() + finite.max()) / 2 if finite.size else 0.0
    for (i, j), v in np.ndenumerate(data):
        if math.isfinite(v):
            ax.text(j, i, f"{v:.{digits}f}", ha="center", va="center", fontsize="small",
                    color="black" if v >= middle else "white")
    return _save(fig, path)


def _draw_panel(ax: Axes, name: str, curves: Sequence[RocCurve]) -> None:
    ax.plot([0, 1], [0, 1], linestyle="--", color="0.6", linewidth=1, label="chance")
    for curve in curves:
        (line,) = ax.plot(curve.fpr, curve.tpr, linewidth=1.6,
                          label=f"{curve.label}: AUC {_fmt(curve.auc)}, EER {_fmt(curve.eer)}")
        if math.isfinite(curve.eer):
            ax.plot([curve.eer], [1 - curve.eer], marker="o", markersize=6, color=line.get_color(),
                    markeredgecolor="black", linestyle="none")
    ax.set(xlim=(0, 1), ylim=(0, 1.005), xlabel="False positive rate (reals called fake)",
           ylabel="True positive rate (fakes called fake)", title=name, aspect="equal")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right", fontsize="small", title="o = EER point")


def _fmt(v: float) -> str:
    return f"{v:.3f}" if math.isfinite(v) else "n/a"
