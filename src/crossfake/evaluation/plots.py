"""ROC figures: frame and video level side by side, several curves per panel, written as PNG.

Figures are built with :class:`matplotlib.figure.Figure` and saved through the Agg canvas, never through
``pyplot``: no global state, no display needed, and nothing changes the backend of a caller's session.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

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
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=150)
    return path


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
