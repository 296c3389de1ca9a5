"""Experiment reports: Markdown and a self-contained HTML page rebuilt from an experiment's saved predictions.

- :mod:`.experiment`: reading an experiment run directory (``crossfake-experiment/1``); its record is
  :mod:`crossfake.runs.experiment`, re-exported.
- :mod:`.collect`: every metric recomputed with :func:`crossfake.evaluation.evaluate_predictions`.
- :mod:`.tables`: the headline, methods, split, detail and comparison tables.
- :mod:`.document`: blocks rendered to Markdown or one HTML page with embedded figures.
- :mod:`.build`: :func:`build_report`, :func:`headline_text`, :func:`load_summary`.
- :mod:`.compare`: :func:`compare_runs`, several experiments side by side.
"""

from crossfake.reports.build import ReportPaths, build_report, headline_text, load_summary
from crossfake.reports.collect import ReportData, Summary, collect
from crossfake.reports.compare import ComparePaths, compare_runs, compare_text, load_runs, write_comparison
from crossfake.reports.experiment import Experiment, MethodEntry, Status, load_experiment

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
