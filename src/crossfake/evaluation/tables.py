"""Readable tables of results: fixed-width text for a terminal, Markdown and HTML for reports.

:func:`render` lays out any header and rows; :func:`result_tables` turns the tidy results of
:func:`crossfake.evaluation.aggregate.evaluate_predictions` into one table per level with a row per
group, and :func:`format_results` renders them. A report comparing models can add a ``model`` column to
the tidy table and pass ``row_keys=("model", "group")``.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Sequence
from typing import Literal, NamedTuple

import pandas as pd

Format = Literal["text", "markdown", "html"]

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
        fmt: ``"text"`` (columns padded to a fixed width, a rule under the header), ``"markdown"`` or
            ``"html"`` (a ``<table>``, cells escaped, right-aligned cells of class ``num``).
        align: one ``l`` or ``r`` per column; default: first column left, the others right (numbers).

    Returns:
        The table, without a trailing newline.
    """
    align = align or "l" + "r" * (len(header) - 1)
    if fmt == "html":
        return _html_table(header, rows, align)
    if fmt == "markdown":
        lines = [header, ["---" if a == "l" else "---:" for a in align], *rows]
        return "\n".join("| " + " | ".join(cells) + " |" for cells in lines)
    widths = [max(map(len, col)) for col in zip(header, *rows, strict=True)]

    def line(cells: Sequence[str]) -> str:
        cols = zip(cells, widths, align, strict=True)
        padded = (c.rjust(w) if a == "r" else c.ljust(w) for c, w, a in cols)
        return "  ".join(padded).rstrip()

    return "\n".join([line(header), "  ".join("-" * w for w in widths), *map(line, rows)])


def _html_table(header: Sequence[str], rows: Sequence[Sequence[str]], align: str) -> str:
    def line(cells: Sequence[str], tag: str) -> str:
        opening = {"l": f"<{tag}>", "r": f'<{tag} class="num">'}
        return "<tr>" + "".join(
            f"{opening[a]}{html.escape(c)}</{tag}>" for c, a in zip(cells, align, strict=True)
        ) + "</tr>"

    body = "\n".join(line(r, "td") for r in rows)
    return f"<table>\n<thead>{line(header, 'th')}</thead>\n<tbody>\n{body}\n</tbody>\n</table>"


def format_number(v: float | None, digits: int = 3) -> str:
    """``v`` with ``digits`` decimals, or :data:`MISSING` for None, NaN and infinity."""
    return MISSING if v is None or not math.isfinite(v) else f"{v:.{digits}f}"


def format_with_ci(value: float | None, low: float | None, high: float | None, digits: int = 3) -> str:
    """``value [low, high]``, or the value alone when the interval is missing (e.g. no bootstrap)."""
    if low is None or high is None or not (math.isfinite(low) and math.isfinite(high)):
        return format_number(value, digits)
    return f"{format_number(value, digits)} [{format_number(low, digits)}, {format_number(high, digits)}]"


def _with_ci(values: dict[str, pd.Series], metric: str, digits: int) -> str:
    if metric not in values:
        return MISSING
    row = values[metric]
    return format_with_ci(row["value"], row["ci_low"], row["ci_high"], digits)


def _eer_with_threshold(values: dict[str, pd.Series], digits: int) -> str:
    if "eer" not in values:
        return MISSING
    rate, threshold = values["eer"]["value"], values["eer_threshold"]["value"]
    return f"{format_number(rate, digits)} ({format_number(threshold, digits)})"


def _plain(metric: str) -> Callable[[dict[str, pd.Series], int], str]:
    def cell(values: dict[str, pd.Series], digits: int) -> str:
        return format_number(values[metric]["value"], digits) if metric in values else MISSING

    return cell


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


class Table(NamedTuple):
    """A titled table ready for :func:`render`."""

    title: str
    header: list[str]
    rows: list[list[str]]
    align: str


def result_tables(
    results: pd.DataFrame,
    row_keys: Sequence[str] = ("group",),
    section_key: str = "level",
    digits: int = 3,
) -> list[Table]:
    """One :class:`Table` per level (or other ``section_key``) with a row per group (or other ``row_keys``).

    Columns: AUC with its CI, EER with its threshold, accuracy, balanced accuracy, F1, AP, real and fake
    accuracy, and n as ``real/fake``. A metric that was not computed (e.g. AUC of a real-only group)
    shows as ``-``.

    Args:
        results: tidy results with columns ``metric``, ``value``, ``ci_low``, ``ci_high``, ``n_real``,
            ``n_fake``, ``section_key`` and ``row_keys``.
        row_keys: columns identifying a row, in order of first appearance.
        section_key: column splitting the tables; titles come from :data:`LEVEL_TITLES` when known.
        digits: decimals shown.
    """
    tables = []
    for section, part in results.groupby(section_key, sort=False):
        body = []
        for keys, rows in part.groupby(list(row_keys), sort=False):
            values = {r["metric"]: r for _, r in rows.iterrows()}
            first = rows.iloc[0]
            n = f"{int(first['n_real'])}/{int(first['n_fake'])}"
            body.append([*map(str, keys), *(cell(values, digits) for _, cell in RESULT_COLUMNS), n])
        header = [*row_keys, *(h for h, _ in RESULT_COLUMNS), "n real/fake"]
        align = "l" * len(row_keys) + "r" * (len(header) - len(row_keys))
        tables.append(Table(LEVEL_TITLES.get(str(section), str(section)), header, body, align))
    return tables


def format_results(
    results: pd.DataFrame,
    fmt: Format = "text",
    row_keys: Sequence[str] = ("group",),
    section_key: str = "level",
    digits: int = 3,
) -> str:
    """The tables of :func:`result_tables` under their titles, as ``fmt`` (text, Markdown or HTML)."""
    return "\n\n".join(render_titled(t, fmt) for t in result_tables(results, row_keys, section_key, digits))


def render_titled(table: Table, fmt: Format = "text") -> str:
    """A :class:`Table` under its title (a level-3 heading in Markdown and HTML)."""
    heading = {"markdown": f"### {table.title}", "html": f"<h3>{html.escape(table.title)}</h3>"}
    return f"{heading.get(fmt, table.title)}\n\n{render(table.header, table.rows, fmt, table.align)}"
