"""Build an experiment's report from its saved predictions: RUN/report/{report.md, report.html, metrics.csv,
metrics.json, figures/*.png}.

The whole folder is written into a temporary sibling and swapped in at the end, so RUN/report is always
a complete report (the previous one until the new one is ready), never a mix of two builds or a stale
figure of a method that has since been renamed. Apart from ``metrics.json``'s ``report_provenance``
(when and by whom it was built), the output depends only on the inputs: rebuilding from the same
predictions with the same bootstrap settings gives identical files.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import tempfile
import uuid
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pandas as pd

from crossfake.evaluation.aggregate import ALL
from crossfake.evaluation.tables import MISSING, Format, Table, render_titled
from crossfake.reports import tables
from crossfake.reports.collect import ReportData, Summary, collect
from crossfake.reports.document import (
    Block,
    Bullets,
    Code,
    Heading,
    Image,
    Para,
    TableBlock,
    to_html,
    to_markdown,
)
from crossfake.runs.experiment import EXPERIMENT_JSON, REPORT_DIR, load_experiment
from crossfake.runs.record import RUN_FILE, RunRecord
from crossfake.utils.errors import CrossfakeError
from crossfake.utils.io import write_json_atomic, write_table_atomic, write_text_atomic
from crossfake.utils.logging import get_logger
from crossfake.utils.provenance import file_sha256, provenance

log = get_logger("report")

REPORT_FORMAT = "crossfake-report/1"
FIGURES = "figures"
EXPLANATION_CHARS = 400


@dataclass(frozen=True)
class ReportPaths:
    """The files of a built report (all inside ``root`` = RUN/report)."""

    root: Path
    markdown: Path
    html: Path
    metrics_csv: Path
    metrics_json: Path
    figures: list[Path] = field(default_factory=list)


def file_slug(text: str) -> str:
    """``text`` reduced to a safe file-name part (a test set or method name in a figure's file name)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "x"


def _json(v: Any) -> Any:
    return None if isinstance(v, float) and not math.isfinite(v) else v


def _records(df: pd.DataFrame | None) -> list[dict[str, Any]]:
    if df is None:
        return []
    return [{k: _json(v) for k, v in row.items()} for row in df.to_dict("records")]


# --- figures -----------------------------------------------------------------------------------------------


def draw_figures(data: ReportData, root: Path) -> dict[tuple[str, str | None], str]:
    """Per (test set, method) the frame|video ROC figure, per (test set, None) the overlay of every method.

    Returns:
        The figures drawn, as paths relative to ``root``. A method without any curve (one class only) gets
        no figure, with a warning.
    """
    from crossfake.evaluation.plots import PANELS, plot_roc  # matplotlib: only when drawing

    figures: dict[tuple[str, str | None], str] = {}
    for test_set in data.summary.test_sets:
        overlay: dict[str, list] = {title: [] for title in PANELS}
        for method in data.summary.methods:
            evaluation = data.evaluations.get((test_set, method))
            if evaluation is None:
                continue
            rel = f"{FIGURES}/roc_{file_slug(test_set)}__{file_slug(method)}.png"
            try:
                plot_roc(evaluation, root / rel, title=f"{method} on {test_set}")
            except CrossfakeError as e:
                log.warning("%s on %s: no ROC figure: %s", method, test_set, e)
                continue
            figures[(test_set, method)] = rel
            for title, level in PANELS.items():
                curve = evaluation.curves.get((level, ALL))
                if curve is not None:
                    overlay[title].append(replace(curve, label=method))
        if any(overlay.values()):
            rel = f"{FIGURES}/roc_{file_slug(test_set)}__all_methods.png"
            plot_roc(overlay, root / rel, title=f"All methods on {test_set}")
            figures[(test_set, None)] = rel
    return figures


def copy_training_figures(data: ReportData, root: Path) -> dict[str, str]:
    """Method entry -> its run's example figure of pseudo-fakes (``run.json``: ``pseudo_fakes.examples``),
    copied into the report's figures as a path relative to ``root``."""
    copied: dict[str, str] = {}
    for entry in data.experiment.methods.values():
        record = _read_run_record(entry.run_dir)
        name = ((record.pseudo_fakes if record else None) or {}).get("examples")
        if not name or not (entry.run_dir / name).is_file():
            continue
        rel = f"{FIGURES}/pseudo_fakes__{file_slug(entry.name)}.png"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(entry.run_dir / name, root / rel)
        copied[entry.name] = rel
    return copied


def _read_run_record(run_dir: Path | None) -> RunRecord | None:
    """The entry's ``run.json``; None when it has none or it cannot be read (the report shows what it can)."""
    if run_dir is None:
        return None
    path = run_dir / RUN_FILE
    try:
        return RunRecord.from_json(json.loads(path.read_text(encoding="utf-8")), path)
    except (OSError, ValueError, CrossfakeError):
        return None


# --- document ----------------------------------------------------------------------------------------------


def _overview(data: ReportData) -> list[Block]:
    exp, summary = data.experiment, data.summary
    prov = exp.provenance
    statuses = [r["status"] for r in summary.methods.values()]
    counts = ", ".join(f"{statuses.count(s)} {s}" for s in dict.fromkeys(statuses))
    git = prov.get("git") or {}
    items = [
        f"Run directory: `{exp.run_dir.name}`; methods: {len(statuses)} ({counts}); test sets: "
        + ", ".join(f"`{t}`" for t in summary.test_sets),
        f"Split: {exp.split.get('spec', MISSING)}",
        f"Created: {prov.get('created_utc', MISSING)} with crossfake {prov.get('crossfake_version', MISSING)}, "
        f"git {git.get('commit') or MISSING}{' (uncommitted changes)' if git.get('dirty') else ''}",
    ]
    info = data.info
    if info.get("n_boot"):
        items.append(f"Confidence intervals: {100 * info['confidence']:g}% {info['bootstrap']}, "
                     f"{info['n_boot']} resamples, seed {info['seed']}")
    else:
        items.append("Confidence intervals: none (bootstrap disabled)")
    blocks: list[Block] = [Heading(f"Experiment report: {exp.name}", 1)]
    if exp.description:
        blocks.append(Para(exp.description))
    return [*blocks, Bullets(items)]


def _results(data: ReportData, figures: dict[tuple[str, str | None], str]) -> list[Block]:
    blocks: list[Block] = [Heading("Results"), TableBlock(tables.generalisation_table(data.summary)),
                           Para(tables.GENERALISATION_NOTE), Para(tables.HEADLINE_NOTE)]
    for test_set in data.summary.test_sets:
        blocks.append(TableBlock(tables.headline_table(data.summary, test_set)))
        if (test_set, None) in figures:
            blocks.append(Image(figures[(test_set, None)], f"ROC curves of every method on {test_set}: "
                                "frame level (left) and video level, mean score (right); o = EER point"))
    blocks.append(Heading("ROC curves per method"))
    blocks.append(Para("Frame level on the left, video level (a video's score is the mean of its frame scores) "
                       "on the right; with several manipulations in a test set, each is also drawn against "
                       "all the reals."))
    for test_set in data.summary.test_sets:
        blocks.append(Heading(f"Test set {test_set}", 3))
        blocks += [Image(figures[(test_set, m)], f"{m} on {test_set}") for m in data.summary.methods
                   if (test_set, m) in figures]
    return blocks


def _methods(data: ReportData, training_figures: dict[str, str]) -> list[Block]:
    blocks: list[Block] = [Heading("Methods"), TableBlock(tables.methods_table(data.summary), titled=False)]
    for name, rel in training_figures.items():
        blocks.append(Image(rel, f"{name}: training pseudo-fakes made from real crops (real, pseudo-fake, blend "
                                 "mask, difference x4)"))
    rules = {r.get("threshold_rule") for r in data.summary.methods.values()} - {None}
    if rules:
        blocks.append(Bullets([f"Threshold rule: {rule}" for rule in sorted(rules)]))
    issues = tables.issues_table(data.summary)
    if issues is not None:
        blocks += [Heading("Failed or missing methods"), TableBlock(issues, titled=False)]
    return blocks


def _split(data: ReportData) -> list[Block]:
    blocks: list[Block] = [Heading("Data split")]
    if data.test_set_table is not None:
        blocks.append(TableBlock(tables.test_sets_table(data.test_set_table)))
    if data.split_table is not None:
        blocks.append(TableBlock(tables.split_counts_table(data.split_table),
                                 note="Rows without a split (`none`) are in the manifest but used by no set."))
    if data.split_notes:
        blocks.append(Bullets(data.split_notes))
    return blocks


def _details(data: ReportData) -> list[Block]:
    blocks: list[Block] = [
        Heading("Detailed metrics"),
        Para("Every level, at the validation threshold (`val`, its value in brackets) and at 0.5. EER (thr): "
             "the EER and the score threshold where it is reached. Video (vote): a video's score is the "
             "fraction of its frames called fake, the verdict the majority. A manipulation group is that "
             "manipulation against all the reals; the `real` group has accuracy only."),
    ]
    for test_set in data.summary.test_sets:
        level_tables = tables.detail_tables(data.summary, test_set)
        if level_tables:
            blocks.append(Heading(f"Test set {test_set}", 3))
            blocks += [TableBlock(t) for t in level_tables]
    return blocks


def _examples(data: ReportData) -> list[Block]:
    blocks: list[Block] = []
    for (test_set, method), examples in data.examples.items():
        title = f"{method} on {test_set}"
        if examples.unparsed:
            blocks.append(Para(f"{title}: {examples.unparsed} of {examples.total} answers could not be parsed."))
        if examples.rows.empty:
            continue
        rows = []
        for record in examples.rows.to_dict("records"):
            cells = []
            for col, v in record.items():
                if col == "score":
                    cells.append(f"{v:.3f}")
                elif col == "label":
                    cells.append("fake" if int(v) == 1 else "real")
                else:
                    text = MISSING if v is None or (isinstance(v, float) and math.isnan(v)) else str(v)
                    cells.append(text[:EXPLANATION_CHARS] + ("…" if len(text) > EXPLANATION_CHARS else ""))
            rows.append(cells)
        header = list(examples.rows.columns)
        blocks.append(TableBlock(Table(title, header, rows, "l" * len(header))))
    if not blocks:
        return []
    return [Heading("Example explanations"),
            Para("A few test answers of the vision-language methods: per class one the method got right and "
                 "one it got wrong (at its threshold), where available."), *blocks]


def _config(data: ReportData) -> list[Block]:
    exp = data.experiment
    blocks: list[Block] = [Heading("Configuration")]
    if exp.config_text is None:
        blocks.append(Para("`experiment.yaml` is missing from the run directory."))
    else:
        blocks += [Para("`experiment.yaml`, as resolved by the run:"), Code(exp.config_text)]
    prov = exp.provenance
    git = prov.get("git") or {}
    packages = prov.get("packages") or {}
    rows = [
        ["crossfake", str(prov.get("crossfake_version", MISSING))],
        ["created (UTC)", str(prov.get("created_utc", MISSING))],
        ["command", " ".join(map(str, prov.get("command") or [])) or MISSING],
        ["python", str(prov.get("python", MISSING))],
        ["platform", str(prov.get("platform", MISSING))],
        ["git commit", f"{git.get('commit') or MISSING}{' (dirty)' if git.get('dirty') else ''}"],
        ["packages", ", ".join(f"{k} {v}" for k, v in packages.items() if v) or MISSING],
    ]
    rows += [[k, str(v)] for k, v in prov.items()
             if k not in {"crossfake_version", "created_utc", "command", "python", "platform", "git", "packages"}]
    inputs = [[i["file"], tables.format_count(i["rows"]), i["sha256"][:16]] for i in data.inputs]
    blocks += [
        Heading("Provenance"),
        TableBlock(Table("Run", ["field", "value"], rows, "ll"), titled=False),
        TableBlock(Table("Inputs of this report", ["file", "rows", "sha256 (first 16)"], inputs, "lrl"),
                   note="Rebuild this report from these files alone with `crossfake report RUN`."),
    ]
    return blocks


def report_blocks(
    data: ReportData, figures: dict[tuple[str, str | None], str], training_figures: dict[str, str] | None = None
) -> list[Block]:
    """The whole report, in order: overview, results, methods, split, details, examples, config, provenance.

    ``training_figures``: method entry -> a figure its training wrote (see :func:`copy_training_figures`).
    """
    return [*_overview(data), *_results(data, figures), *_methods(data, training_figures or {}), *_split(data),
            *_details(data), *_examples(data), *_config(data)]


# --- files -------------------------------------------------------------------------------------------------


def metrics_record(data: ReportData) -> dict[str, Any]:
    """The content of ``metrics.json`` (see :class:`~crossfake.reports.collect.Summary`)."""
    exp = data.experiment
    return {
        "format": REPORT_FORMAT,
        "experiment": {"name": exp.name, "description": exp.description, "test_sets": exp.test_sets,
                       "split": exp.split, "provenance": exp.provenance},
        "evaluation": data.info,
        "methods": data.summary.methods,
        "results": _records(data.summary.results),
        "split_table": _records(data.split_table),
        "test_sets": _records(data.test_set_table),
        "inputs": data.inputs,
        "report_provenance": provenance(),
    }


def _swap_in(tmp: Path, final: Path) -> None:
    """Replace ``final`` (a folder, if any) by ``tmp``; only the two renames are not atomic together."""
    old = final.with_name(f".{final.name}.old.{uuid.uuid4().hex[:8]}") if final.exists() else None
    if old is not None:
        final.rename(old)
    tmp.rename(final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def build_report(run_dir: Path, *, n_boot: int = 1000, seed: int = 0, allow_empty: bool = False) -> ReportPaths:
    """Recompute every metric of an experiment from its saved predictions and write RUN/report.

    Args:
        run_dir: an experiment run directory (format ``crossfake-experiment/1``, see
            :mod:`crossfake.runs.experiment`).
        n_boot: bootstrap resamples of the confidence intervals (0: none).
        seed: bootstrap seed.
        allow_empty: write a report (methods and their failures only) even when no method has usable
            predictions, e.g. at the end of an experiment whose every method failed.

    Returns:
        The paths of the report's files.

    Raises:
        CrossfakeError: the run directory or its experiment.json is missing or malformed, or no method has
            usable predictions (unless ``allow_empty``). A method whose predictions are missing is shown as
            such instead.
    """
    experiment = load_experiment(run_dir)
    data = collect(experiment, n_boot=n_boot, seed=seed, allow_empty=allow_empty)
    data.inputs.insert(0, {"file": EXPERIMENT_JSON, "rows": None,
                           "sha256": file_sha256(experiment.run_dir / EXPERIMENT_JSON)})
    final = experiment.report_dir
    tmp = Path(tempfile.mkdtemp(prefix=f".{REPORT_DIR}.", suffix=".tmp", dir=experiment.run_dir))
    try:
        figures = draw_figures(data, tmp)
        blocks = report_blocks(data, figures, copy_training_figures(data, tmp))
        write_text_atomic(tmp / "report.md", to_markdown(blocks))
        write_text_atomic(tmp / "report.html", to_html(blocks, f"crossfake report: {experiment.name}", tmp))
        write_table_atomic(tmp / "metrics.csv", data.summary.results)
        write_json_atomic(tmp / "metrics.json", metrics_record(data))
        _swap_in(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    log.info("wrote the report of %s to %s", experiment.name, final)
    return ReportPaths(root=final, markdown=final / "report.md", html=final / "report.html",
                       metrics_csv=final / "metrics.csv", metrics_json=final / "metrics.json",
                       figures=[final / rel for rel in figures.values()])


# --- reading a built report --------------------------------------------------------------------------------


def _is_current(record: dict[str, Any], run_dir: Path) -> bool:
    """Whether every input recorded in ``metrics.json`` is still there with the same content."""
    for item in record.get("inputs") or []:
        path = run_dir / item["file"]
        if not path.is_file() or file_sha256(path) != item["sha256"]:
            return False
    return bool(record.get("inputs"))


def load_summary(run_dir: Path, *, n_boot: int = 1000, seed: int = 0, rebuild: str = "stale") -> Summary:
    """The :class:`Summary` of an experiment, from RUN/report/metrics.json.

    Args:
        run_dir: the experiment run directory.
        n_boot, seed: bootstrap settings if the report has to be (re)built.
        rebuild: ``"stale"`` (default): build the report when metrics.json is missing, of another format,
            or older than its inputs (a predictions file or experiment.json changed); ``"never"``: raise
            instead; ``"always"``.
    """
    if rebuild not in ("stale", "never", "always"):
        raise CrossfakeError(f"rebuild must be 'stale', 'never' or 'always', not {rebuild!r}")
    run_dir = Path(run_dir)
    path = run_dir / REPORT_DIR / "metrics.json"
    record = None
    if path.is_file() and rebuild != "always":
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            record = None
        if not isinstance(record, dict) or record.get("format") != REPORT_FORMAT or not _is_current(record, run_dir):
            record = None
    if record is None:
        if rebuild == "never":
            raise CrossfakeError(f"no current report at {path}; build it with `crossfake report {run_dir}`")
        load_experiment(run_dir)  # a clear error for a directory that is not an experiment
        log.info("building the report of %s", run_dir)
        build_report(run_dir, n_boot=n_boot, seed=seed)
        record = json.loads(path.read_text(encoding="utf-8"))
    return Summary.from_dict(record, run_dir)


def headline_text(run_dir: Path | Summary, fmt: Format = "text") -> str:
    """The headline table of every test set (method, AUC with CI, EER, ACC, BalAcc, F1, AP, video AUC and
    EER, trainable parameters, train time), e.g. for a terminal; reads (or builds) RUN/report."""
    summary = run_dir if isinstance(run_dir, Summary) else load_summary(run_dir)
    blocks = [render_titled(tables.headline_table(summary, test_set), fmt) for test_set in summary.test_sets]
    blocks += [tables.HEADLINE_NOTE, render_titled(tables.generalisation_table(summary), fmt),
               tables.GENERALISATION_NOTE]
    return "\n\n".join(blocks)
