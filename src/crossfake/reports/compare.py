"""Several experiment runs side by side: per test set, one row per method and one column per run × metric,
and a heatmap of the first metric over method × run.

Each run's numbers come from its RUN/report/metrics.json, which is built (or rebuilt, when a predictions
file or experiment.json changed since) first, so comparing never reads a stale report.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from crossfake.evaluation.plots import plot_heatmap
from crossfake.evaluation.tables import MISSING, Format, Table, render_titled
from crossfake.reports import tables
from crossfake.reports.build import FIGURES, file_slug, load_summary
from crossfake.reports.collect import Summary
from crossfake.reports.document import Block, Heading, Image, Para, TableBlock, to_html, to_markdown
from crossfake.utils.errors import CrossfakeError
from crossfake.utils.io import write_table_atomic, write_text_atomic
from crossfake.utils.logging import get_logger

log = get_logger("compare")


@dataclass(frozen=True)
class ComparePaths:
    """The files written by :func:`compare_runs`."""

    root: Path
    markdown: Path
    html: Path
    csv: Path


def check_metrics(metrics: Sequence[str]) -> list[str]:
    """The metric keys, checked against :data:`crossfake.reports.tables.METRICS`."""
    unknown = [m for m in metrics if m not in tables.METRICS]
    if unknown or not metrics:
        raise CrossfakeError(f"unknown metric(s) {unknown or '(none given)'}; choose from {list(tables.METRICS)}")
    return list(metrics)


def load_runs(run_dirs: Sequence[Path], *, n_boot: int = 1000, seed: int = 0) -> dict[str, Summary]:
    """label -> :class:`Summary` per run; a label is the experiment's name, or its folder when names repeat."""
    if not run_dirs:
        raise CrossfakeError("compare needs at least one experiment run directory")
    summaries = [(Path(d), load_summary(Path(d), n_boot=n_boot, seed=seed)) for d in run_dirs]
    names = [s.name for _, s in summaries]
    labels: dict[str, Summary] = {}
    for (path, summary), name in zip(summaries, names, strict=True):
        label = name if names.count(name) == 1 else f"{name} ({path.name})"
        while label in labels:  # the same folder given twice, or two folders of one name
            label += "'"
        labels[label] = summary
    return labels


def _runs_table(summaries: dict[str, Summary]) -> Table:
    rows = []
    for label, s in summaries.items():
        git = s.provenance.get("git") or {}
        rows.append([label, str(s.run_dir) if s.run_dir else MISSING, s.description or MISSING,
                     str(s.provenance.get("created_utc", MISSING)),
                     (git.get("commit") or MISSING)[:12] + (" (dirty)" if git.get("dirty") else "")])
    return Table("Runs", ["run", "directory", "description", "created (UTC)", "git"], rows, "lllll")


def _note(metrics: Sequence[str]) -> str:
    return ("Columns: " + ", ".join(tables.METRICS[m][0] for m in metrics) + ". Threshold metrics at each "
            "method's validation threshold (0.5 where it has none); (status): no numbers for that method in "
            "that run; (absent): not part of that run.")


def _draw_figures(records: pd.DataFrame, metric: str, out: Path) -> dict[str, str]:
    """One heatmap per test set of ``metric`` over method x run; test set -> path relative to ``out``."""
    figures = {}
    for test_set, part in records.loc[records["metric"] == metric].groupby("test_set", sort=False):
        if part["value"].notna().any():
            rel = f"{FIGURES}/{metric}_{file_slug(str(test_set))}.png"
            name = tables.METRICS[metric][0]
            plot_heatmap(part.rename(columns={"value": name}), "method", "run", name, out / rel,
                         title=f"{name} on {test_set}")
            figures[str(test_set)] = rel
    return figures


def compare_text(
    summaries: dict[str, Summary], metrics: Sequence[str] = tables.DEFAULT_COMPARE_METRICS, fmt: Format = "text"
) -> str:
    """The comparison tables rendered as ``fmt`` (text for a terminal, by default)."""
    metrics = check_metrics(metrics)
    out = [render_titled(t, fmt) for t in [_runs_table(summaries), *tables.compare_tables(summaries, metrics)]]
    return "\n\n".join(out) + f"\n\n{_note(metrics)}"


def write_comparison(
    summaries: dict[str, Summary], out: Path, metrics: Sequence[str] = tables.DEFAULT_COMPARE_METRICS
) -> ComparePaths:
    """Write OUT/compare.md, OUT/compare.html (self-contained), OUT/compare.csv (tidy numbers) and a heatmap
    of the first metric per test set (OUT/figures/) for runs loaded with :func:`load_runs`."""
    metrics = check_metrics(metrics)
    out = Path(out)
    records = tables.compare_records(summaries, metrics)
    figures = _draw_figures(records, metrics[0], out)
    blocks: list[Block] = [
        Heading("Comparison of experiment runs", 1),
        TableBlock(_runs_table(summaries), titled=False),
        Heading("Results"),
        Para(_note(metrics)),
    ]
    test_sets = tables.compare_test_sets(summaries)
    for table, test_set in zip(tables.compare_tables(summaries, metrics), test_sets, strict=True):
        blocks.append(TableBlock(table))
        if test_set in figures:
            blocks.append(Image(figures[test_set], f"{tables.METRICS[metrics[0]][0]} per method and run on "
                                f"{test_set} (blank: no number)"))
    paths = ComparePaths(out, out / "compare.md", out / "compare.html", out / "compare.csv")
    write_text_atomic(paths.markdown, to_markdown(blocks))
    write_text_atomic(paths.html, to_html(blocks, "crossfake comparison", out))
    write_table_atomic(paths.csv, records)
    log.info("wrote the comparison of %d runs to %s", len(summaries), out)
    return paths


def compare_runs(
    run_dirs: Sequence[Path],
    out: Path,
    *,
    metrics: Sequence[str] = tables.DEFAULT_COMPARE_METRICS,
    n_boot: int = 1000,
    seed: int = 0,
) -> ComparePaths:
    """Load the runs (building their reports where missing or stale) and write the comparison into ``out``.

    Args:
        run_dirs: experiment run directories.
        out: output folder for compare.md, compare.html and compare.csv.
        metrics: keys of :data:`crossfake.reports.tables.METRICS`, e.g. ``("auc", "video_auc")``.
        n_boot, seed: bootstrap settings of reports that have to be built.
    """
    metrics = check_metrics(metrics)
    return write_comparison(load_runs(run_dirs, n_boot=n_boot, seed=seed), out, metrics)
