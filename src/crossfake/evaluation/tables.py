"""Readable tables of results: fixed-width text for a terminal, Markdown for reports. No dependencies.

:func:`render` lays out any header and rows; :func:`format_results` turns the tidy results of
:func:`crossfake.evaluation.aggregate.evaluate_predictions` into one table per level with a row per
group. A report comparing models can add a ``model`` column to the tidy table and pass
``row_keys=("model", "group")``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Literal

import pandas as pd

Format = Literal["text", "markdown"]

LEVEL_TITLES: dict[str, str] = {
    "frame": "Frame level",
    "video_mean": "Video level (score = mean of frame scores)",
    "video_vote": "Video level (majority vote of frame verdicts; score = fraction of frames flagged)",
}
MISSING = "-"


def render(
    header: Sequence[str], rows: Sequence[Sequence[str]], fmt: Format = "text", align: str | None = None
) -> str:
    """Lay out a table.

    Args:
        header: column titles.
        rows: cells as strings, one sequence per row.
        fmt: ``"text"`` (columns padded to a fixed width, a rule under the header) or ``"markdown"``.
        align: one ``l`` or ``r`` per column; default: first column left, the others right (numbers).

    Returns:
        The table, without a trailing newline.
    """
    align = align or "l" + "r" * (len(header) - 1)
    if fmt == "markdown":
        lines = [header, ["---" if a == "l" else "---:" for a in align], *rows]
        return "\n".join("| " + " | ".join(cells) + " |" for cells in lines)
    widths = [max(map(len, col)) for col in zip(header, *rows, strict=True)]

    def line(cells: Sequence[str]) -> str:
        cols = zip(cells, widths, align, strict=True)
        padded = (c.rjust(w) if a == "r" else c.ljust(w) for c, w, a in cols)
        return "  ".join(padded).rstrip()

    return "\n".join([line(header), "  ".join("-" * w for w in widths), *map(line, rows)])


def _number(v: float, digits: int) -> str:
    return MISSING if v is None or not math.isfinite(v) else f"{v:.{digits}f}"


def _with_ci(values: dict[str, pd.Series], metric: str, digits: int) -> str:
    if metric not in values:
        return MISSING
    row = values[metric]
    low, high = row["ci_low"], row["ci_high"]
    if not (math.isfinite(low) and math.isfinite(high)):
        return _number(row["value"], digits)
    return f"{_number(row['value'], digits)} [{_number(low, digits)}, {_number(high, digits)}]"


def _eer_with_threshold(values: dict[str, pd.Series], digits: int) -> str:
    if "eer" not in values:
        return MISSING
    return f"{_number(values['eer']['value'], digits)} ({_number(values['eer_threshold']['value'], digits)})"


def _plain(metric: str) -> Callable[[dict[str, pd.Series], int], str]:
    return lambda values, digits: _number(values[metric]["value"], digits) if metric in values else MISSING


#: (header, cell) per column after the row keys; a cell gets {metric: its result row} and the digits.
RESULT_COLUMNS: list[tuple[str, Callable[[dict[str, pd.Series], int], str]]] = [
    ("AUC [CI]", lambda values, digits: _with_ci(values, "auc", digits)),
    ("EER (thr)", _eer_with_threshold),
    ("ACC", _plain("accuracy")),
    ("BalAcc", _plain("balanced_accuracy")),
    ("F1", _plain("f1")),
    ("AP", _plain("ap")),
    ("real-acc", _plain("real_acc")),
    ("fake-acc", _plain("fake_acc")),
]


def format_results(
    results: pd.DataFrame,
    fmt: Format = "text",
    row_keys: Sequence[str] = ("group",),
    section_key: str = "level",
    digits: int = 3,
) -> str:
    """One table per level (or other ``section_key``) with a row per group (or other ``row_keys``).

    Columns: AUC with its CI, EER with its threshold, accuracy, balanced accuracy, F1, AP, real and fake
    accuracy, and n as ``real/fake``. A metric that was not computed (e.g. AUC of a real-only group)
    shows as ``-``.

    Args:
        results: tidy results with columns ``metric``, ``value``, ``ci_low``, ``ci_high``, ``n_real``,
            ``n_fake``, ``section_key`` and ``row_keys``.
        fmt: ``"text"`` or ``"markdown"``.
        row_keys: columns identifying a row, in order of first appearance.
        section_key: column splitting the tables; titles come from :data:`LEVEL_TITLES` when known.
        digits: decimals shown.
    """
    blocks = []
    for section, part in results.groupby(section_key, sort=False):
        body = []
        for keys, rows in part.groupby(list(row_keys), sort=False):
            values = {r["metric"]: r for _, r in rows.iterrows()}
            first = rows.iloc[0]
            n = f"{int(first['n_real'])}/{int(first['n_fake'])}"
            body.append([*map(str, keys), *(cell(values, digits) for _, cell in RESULT_COLUMNS), n])
        header = [*row_keys, *(h for h, _ in RESULT_COLUMNS), "n real/fake"]
        align = "l" * len(row_keys) + "r" * (len(header) - len(row_keys))
        title = LEVEL_TITLES.get(str(section), str(section))
        heading = f"### {title}" if fmt == "markdown" else title
        blocks.append(f"{heading}\n\n{render(header, body, fmt, align)}")
    return "\n\n".join(blocks)
