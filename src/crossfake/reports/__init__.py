"""Experiment reports: Markdown and a self-contained HTML page rebuilt from an experiment's saved predictions.

The experiment run directory and its record (``crossfake-experiment/1``) are
:mod:`crossfake.runs.experiment`, which ``crossfake run`` writes and these modules read.

- :mod:`.collect`: every metric recomputed with :func:`crossfake.evaluation.evaluate_predictions` from the
  predictions files (:func:`~.collect.read_predictions`).
- :mod:`.tables`: the headline, methods, split, detail and comparison tables.
- :mod:`.document`: blocks rendered to Markdown or one HTML page with embedded figures.
- :mod:`.build`: :func:`build_report`, :func:`headline_text`, :func:`load_summary`.
- :mod:`.compare`: :func:`compare_runs`, several experiments side by side.
"""

from crossfake.reports.build import ReportPaths, build_report, headline_text, load_summary
from crossfake.reports.collect import ReportData, Summary, collect
from crossfake.reports.compare import ComparePaths, compare_runs, compare_text, load_runs, write_comparison
from crossfake.runs.experiment import Experiment, MethodEntry, Status, load_experiment

__all__ = [
    "ComparePaths",
    "Experiment",
    "MethodEntry",
    "ReportData",
    "ReportPaths",
    "Status",
    "Summary",
    "build_report",
    "collect",
    "compare_runs",
    "compare_text",
    "headline_text",
    "load_experiment",
    "load_runs",
    "load_summary",
    "write_comparison",
]
