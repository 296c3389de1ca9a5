"""Everything a report shows, recomputed from an experiment's saved predictions.

:func:`collect` reads the experiment, then for every finished method and test set reads the predictions
and evaluates them with :func:`crossfake.evaluation.evaluate_predictions` twice: at the method's
validation threshold (``val``) and at 0.5. Both evaluations give frame and video level (mean and vote)
with bootstrap CIs; when a test set holds several manipulations, each is also evaluated against all the
reals. Nothing is read from a model or a training log, so a report can be rebuilt anywhere the run
directory is.

The result is a :class:`ReportData`; its :class:`Summary` (the tidy results and one record per method) is
what ``metrics.json`` stores and what :mod:`crossfake.reports.tables` and ``crossfake compare`` read.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from crossfake.data.manifest import REAL, SPLIT_COLUMN, SPLITS, upgrade
from crossfake.data.predictions import PredictionColumns
from crossfake.evaluation.aggregate import RESULT_COLUMNS as EVAL_COLUMNS
from crossfake.evaluation.aggregate import Evaluation, evaluate_predictions, parse_labels
from crossfake.evaluation.metrics import UndefinedMetricWarning, eer
from crossfake.runs.experiment import VAL_PREDICTIONS, Experiment, MethodEntry, Status, relative_name
from crossfake.utils.errors import CrossfakeError
from crossfake.utils.logging import get_logger
from crossfake.utils.provenance import file_sha256

log = get_logger("report")

#: Threshold labels of the tidy results: the method's validation threshold, and 0.5.
VAL, HALF = "val", "0.5"
RESULT_COLUMNS: tuple[str, ...] = ("test_set", "method", "threshold", "threshold_value", *EVAL_COLUMNS)
NO_SPLIT = "none"
#: Whether a test set's manipulations were trained on: all of them, none, or some (or it has no fakes).
SEEN, UNSEEN, PARTLY, NO_FAKES = "seen", "unseen", "partly", "no fakes"
TOTAL = "total"
#: Evaluation settings shared by every evaluation of a report (the threshold differs, so it is left out).
INFO_KEYS: tuple[str, ...] = ("n_boot", "confidence", "seed", "bootstrap", "subgroups", "fpr_targets")


def read_predictions(path: Path, run_dir: Path | None = None) -> pd.DataFrame:
    """A predictions Parquet file, or a CrossfakeError naming the file (relative to ``run_dir`` if given)
    and why it cannot be used. A file written before today's column names (``dataset``, ``method``) is read
    under them (``corpus``, ``manipulation``)."""
    name = path if run_dir is None else relative_name(path, run_dir)
    if not path.is_file():
        raise CrossfakeError(f"predictions file missing: expected {name}")
    try:
        df = upgrade(pd.read_parquet(path))
    except Exception as e:  # pyarrow raises several types for a damaged file
        raise CrossfakeError(f"cannot read predictions {name}: {e}") from None
    missing = [c for c in ("video_id", "label", "score") if c not in df.columns]
    if missing:
        raise CrossfakeError(f"predictions {name} lack column(s) {missing}; columns: {list(df.columns)}")
    return df


@dataclass
class Summary:
    """What ``metrics.json`` holds: enough to print the tables again, or compare runs, without predictions.

    Attributes:
        name, description: the experiment's.
        test_sets: test set names, in the experiment's order.
        methods: entry name -> JSON-ready record (status, error, method, parameters, wall_time_s,
            threshold used and its origin, val_auc, issues, predictions).
        results: tidy metrics, columns :data:`RESULT_COLUMNS`.
        provenance: the experiment's (versions, git state, command line, time).
        run_dir: the experiment run directory, when known.
        seen: test set -> whether the manipulations of its fakes were trained on (``seen``, ``unseen``,
            ``partly`` or ``no fakes``; absent when the split manifest was not readable).
    """

    name: str
    description: str
    test_sets: list[str]
    methods: dict[str, dict[str, Any]]
    results: pd.DataFrame
    provenance: dict[str, Any] = field(default_factory=dict)
    run_dir: Path | None = None
    seen: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: dict[str, Any], run_dir: Path | None = None) -> Summary:
        """Inverse of the ``metrics.json`` record written by :func:`crossfake.reports.build.metrics_record`."""
        results = pd.DataFrame(d["results"], columns=list(RESULT_COLUMNS))
        for col in ("threshold_value", "value", "ci_low", "ci_high"):
            results[col] = results[col].astype(float)
        experiment = d["experiment"]
        methods = {name: _upgraded_record(record) for name, record in d["methods"].items()}
        seen = {r["test_set"]: r["seen"] for r in d.get("test_sets") or [] if r.get("seen")}
        return cls(experiment["name"], experiment.get("description", ""), list(experiment["test_sets"]),
                   methods, results, experiment.get("provenance") or {}, run_dir, seen)


@dataclass
class ReportData:
    """Everything :func:`crossfake.reports.build_report` renders.

    Attributes:
        experiment: the parsed run directory.
        summary: tidy results and method records (see :class:`Summary`).
        evaluations: (test set, method) -> its evaluation at the validation threshold (for the ROC curves).
        split_table: videos, frames and identities per manipulation x split; None without a split manifest.
        split_notes: what the split audit found, or why there is no split table.
        test_set_table: per test set, its split, manipulations and real/fake videos and frames.
        examples: (test set, method) -> a few rows with a VLM explanation (see :class:`Examples`).
        inputs: every file read, with its size in rows and sha256 (rebuilding from the same inputs gives
            the same report).
        info: the evaluation settings (bootstrap, vote rule, subgroup rule).
    """

    experiment: Experiment
    summary: Summary
    evaluations: dict[tuple[str, str], Evaluation] = field(default_factory=dict)
    split_table: pd.DataFrame | None = None
    split_notes: list[str] = field(default_factory=list)
    test_set_table: pd.DataFrame | None = None
    examples: dict[tuple[str, str], Examples] = field(default_factory=dict)
    inputs: list[dict[str, Any]] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)


def _val_threshold(entry: MethodEntry, run_dir: Path) -> tuple[float | None, str, Path | None]:
    """The validation threshold, where it comes from, and the file read for it (if any): experiment.json's,
    else the EER threshold of the method's validation predictions."""
    if entry.threshold is not None:
        return entry.threshold, "experiment.json", None
    path = entry.run_dir / VAL_PREDICTIONS if entry.run_dir else None
    if path is None or not path.is_file():
        return None, "none", None
    try:
        val = read_predictions(path, run_dir)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UndefinedMetricWarning)
            threshold = eer(parse_labels(val["label"]), val["score"].to_numpy(dtype=float)).threshold
    except CrossfakeError as e:
        entry.issues.append(f"no validation threshold: {e}")
        return None, "none", None
    return (threshold, f"EER of {VAL_PREDICTIONS}", path) if math.isfinite(threshold) else (None, "none", None)


def _group_col(df: pd.DataFrame) -> str | None:
    """``manipulation`` when the fakes come from several manipulations (each is then evaluated alone)."""
    if "manipulation" not in df.columns:
        return None
    fakes = df.loc[parse_labels(df["label"]) == 1, "manipulation"]
    return "manipulation" if fakes.nunique() > 1 else None


def evaluate_at(
    df: pd.DataFrame, thresholds: dict[str, float], n_boot: int, seed: int, where: str
) -> dict[str, Evaluation]:
    """One :func:`evaluate_predictions` per labelled threshold, warnings of undefined metrics logged once."""
    out = {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UndefinedMetricWarning)
        for label, threshold in thresholds.items():
            out[label] = evaluate_predictions(df, group_col=_group_col(df), threshold=threshold, n_boot=n_boot,
                                              seed=seed)
    for message in sorted({str(w.message) for w in caught}):
        log.warning("%s: %s", where, message)
    return out


@dataclass
class Examples:
    """Example explanations of one method on one test set (a method that declares an explanation column).

    Attributes:
        rows: up to two rows per label (a correct verdict, then a wrong one), columns ``sample_id``,
            ``label``, ``score``, the method's detail columns present, and ``explanation``.
        unparsed: answers that could not be parsed (from the method's ``parsed`` column), None without one.
        total: rows of the predictions.
    """

    rows: pd.DataFrame
    unparsed: int | None
    total: int


def _examples(df: pd.DataFrame, threshold: float, declared: PredictionColumns) -> Examples | None:
    """Per label, the first row (by sample id) with an explanation whose verdict at ``threshold`` is right
    and the first whose verdict is wrong; None when the method declares no explanation column or the
    predictions lack it."""
    text_col = declared.explanation
    if text_col is None or text_col not in df.columns:
        return None
    parsed = declared.parsed
    unparsed = int((~df[parsed].fillna(False).astype(bool)).sum()) if parsed in df.columns else None
    text = df[text_col].astype("string").str.strip()
    rows = df.loc[(text.notna() & (text != "")).to_numpy()]
    rows = rows.sort_values("sample_id" if "sample_id" in df.columns else "video_id", kind="stable")
    labels = parse_labels(rows["label"]) if len(rows) else np.zeros(0, dtype=np.int8)
    correct = (rows["score"].to_numpy(dtype=float) >= threshold) == (labels == 1)
    picks = []
    for cls in (0, 1):
        for ok in (True, False):
            picks += list(np.flatnonzero((labels == cls) & (correct == ok))[:1])
    columns = [c for c in ("sample_id", "label", "score", *declared.details, text_col) if c in rows.columns]
    chosen = rows.iloc[sorted(picks)][columns].rename(columns={text_col: "explanation"}).reset_index(drop=True)
    return Examples(chosen, unparsed, len(df))


def split_table(manifest: pd.DataFrame) -> pd.DataFrame:
    """Videos, frames and identity groups per manipulation x split, long format, real first.

    The last manipulation, ``total``, counts all rows. Columns: ``manipulation``, ``split`` (train/val/test, others,
    then ``none`` for unassigned rows), ``videos``, ``frames``, ``identities`` (distinct ``identity_group``;
    NaN without that column).
    """
    df = manifest.assign(**{SPLIT_COLUMN: manifest[SPLIT_COLUMN].astype("string").fillna(NO_SPLIT)})
    present = set(df[SPLIT_COLUMN])
    splits = [s for s in SPLITS if s in present] + sorted(present - {*SPLITS, NO_SPLIT})
    splits += [NO_SPLIT] if NO_SPLIT in present else []
    aggs = {"videos": ("video_id", "nunique"), "frames": ("video_id", "size")}
    if "identity_group" in df.columns:
        aggs["identities"] = ("identity_group", "nunique")
    # The total is counted on all rows, not summed: an identity group spans a real video and its fakes.
    counts = pd.concat([df.groupby(["manipulation", SPLIT_COLUMN]).agg(**aggs),
                        df.assign(manipulation=TOTAL).groupby(["manipulation", SPLIT_COLUMN]).agg(**aggs)])
    manipulations = [*sorted(df["manipulation"].unique(), key=lambda m: (m != REAL, m)), TOTAL]
    index = pd.MultiIndex.from_product([manipulations, splits], names=["manipulation", "split"])
    table = counts.reindex(index, fill_value=0).reset_index()
    if "identities" not in table.columns:
        table["identities"] = np.nan
    return table[["manipulation", "split", "videos", "frames", "identities"]]


def summarise_test_sets(manifest: pd.DataFrame, test_sets: dict[str, dict[str, Any]]) -> pd.DataFrame:
    """Per test set: its split, manipulations, real and fake videos and frames, and whether its fakes'
    manipulations were trained on (``seen`` / ``unseen`` / ``partly``: those with fake rows in the train split).

    ``test_sets``: name -> ``{"split": ..., "manipulations": [...]}`` (as the experiment record holds them).
    """
    train = manifest.loc[(manifest[SPLIT_COLUMN] == "train").fillna(False).to_numpy()]
    trained_on = set(train.loc[parse_labels(train["label"]) == 1, "manipulation"]) if len(train) else set()
    rows = []
    for name, spec in test_sets.items():
        split, chosen = spec.get("split", "test"), spec.get("manipulations")
        part = manifest.loc[(manifest[SPLIT_COLUMN] == split).fillna(False).to_numpy()]
        if chosen:
            part = part.loc[part["manipulation"].isin(chosen)]
        labels = parse_labels(part["label"]) if len(part) else np.zeros(0, dtype=np.int8)
        real, fake = part.loc[labels == 0], part.loc[labels == 1]
        manipulations = set(fake["manipulation"])
        trained = manipulations & trained_on
        rows.append({
            "test_set": name, "split": split,
            "manipulations": ", ".join(chosen or sorted(part["manipulation"].unique())),
            "real_videos": real["video_id"].nunique(), "real_frames": len(real),
            "fake_videos": fake["video_id"].nunique(), "fake_frames": len(fake),
            "seen": NO_FAKES if not manipulations else SEEN if trained == manipulations else PARTLY if trained
            else UNSEEN,
        })
    return pd.DataFrame(rows)


def _split_section(data: ReportData) -> None:
    """Fill the split table, the test set table and the audit notes from the split manifest, if readable."""
    path = data.experiment.split_path
    if not path.is_file():
        data.split_notes.append(f"no split manifest at {relative_name(path, data.experiment.run_dir)}: "
                                "the split table is missing")
        return
    try:
        manifest = upgrade(pd.read_parquet(path))
    except Exception as e:  # pyarrow raises several types for a damaged file
        name = relative_name(path, data.experiment.run_dir)
        data.split_notes.append(f"cannot read the split manifest {name}: {e}")
        return
    data.inputs.append(_input(data.experiment.run_dir, path, len(manifest)))
    missing = [c for c in ("video_id", "manipulation", "label", SPLIT_COLUMN) if c not in manifest.columns]
    if missing:
        data.split_notes.append(f"the split manifest lacks column(s) {missing}: no split table")
        return
    data.split_table = split_table(manifest)
    data.test_set_table = summarise_test_sets(manifest, data.experiment.test_sets)
    data.summary.seen = dict(zip(data.test_set_table["test_set"], data.test_set_table["seen"], strict=True))
    try:
        from crossfake.data.audit import audit_split

        audit = audit_split(manifest)
    except (CrossfakeError, KeyError) as e:  # KeyError: a manifest without person ids
        data.split_notes.append(f"identity audit not possible: {e}")
        return
    shared = audit.overlaps[["pair", "people", "groups", "videos"]]
    if audit.leaks:
        pairs = "; ".join(f"{r.pair}: {r.people} people, {r.groups} groups, {r.videos} videos"
                          for r in shared.itertuples() if r.people or r.groups or r.videos)
        data.split_notes.append(f"LEAK: identities are shared between splits ({pairs})")
    else:
        data.split_notes.append("identity audit: no person, identity group or video is shared between splits")
    for r in audit.test_seen_in_train.itertuples():
        if r.seen:
            data.split_notes.append(
                f"{r.seen} of {r.videos} {r.manipulation} test videos show a person seen in training")


def _upgraded_record(record: dict[str, Any]) -> dict[str, Any]:
    """A method record of a ``metrics.json`` written before ``threshold_source`` became ``threshold_origin``."""
    if "threshold_source" in record and "threshold_origin" not in record:
        record = {("threshold_origin" if k == "threshold_source" else k): v for k, v in record.items()}
    return record


def _input(run_dir: Path, path: Path, rows: int | None) -> dict[str, Any]:
    return {"file": relative_name(path, run_dir), "rows": rows, "sha256": file_sha256(path)}


def _method_record(entry: MethodEntry, threshold: float | None, origin: str, run_dir: Path) -> dict[str, Any]:
    return {
        "status": str(entry.status), "error": entry.error, "method": entry.method,
        "parameters": entry.parameters, "wall_time_s": entry.wall_time_s,
        "threshold": threshold, "threshold_origin": origin, "threshold_rule": entry.threshold_rule,
        "val_auc": entry.val_auc, "issues": entry.issues,
        "predictions": {t: relative_name(p, run_dir) for t, p in entry.predictions.items()},
    }


def _evaluate_method(data: ReportData, entry: MethodEntry, n_boot: int, seed: int) -> list[pd.DataFrame]:
    """Evaluate one method on every test set; record its summary, curves, examples and inputs in ``data``.

    Returns:
        The tidy results, one frame per (test set, threshold) evaluated.
    """
    run_dir = data.experiment.run_dir
    done = entry.status == Status.done
    threshold, origin, val_path = _val_threshold(entry, run_dir) if done else (None, "none", None)
    if val_path is not None:
        data.inputs.append(_input(run_dir, val_path, None))
    thresholds = {HALF: 0.5} if threshold is None else {VAL: threshold, HALF: 0.5}
    frames = []
    for test_set in data.experiment.test_sets if done else ():
        path = entry.predictions.get(test_set)
        if path is None:
            entry.issues.append(f"{test_set}: no predictions file listed in experiment.json")
            continue
        try:
            df = read_predictions(path, run_dir)
            evaluations = evaluate_at(df, thresholds, n_boot, seed, where=f"{entry.name} on {test_set}")
        except CrossfakeError as e:
            entry.issues.append(f"{test_set}: {e}")
            continue
        data.inputs.append(_input(run_dir, path, len(df)))
        for label, evaluation in evaluations.items():
            frames.append(evaluation.results.assign(
                test_set=test_set, method=entry.name, threshold=label, threshold_value=thresholds[label]))
        # The first threshold is the validation one when there is one: curves do not depend on it.
        first = next(iter(evaluations))
        data.evaluations[(test_set, entry.name)] = evaluations[first]
        data.info = {k: v for k, v in evaluations[first].info.items() if k in INFO_KEYS}
        examples = _examples(df, thresholds[first], entry.columns)
        if examples is not None:
            data.examples[(test_set, entry.name)] = examples
    record = _method_record(entry, threshold, origin, run_dir)
    if done and not frames:
        record["status"] = "missing"
    data.summary.methods[entry.name] = record
    return frames


def collect(experiment: Experiment, n_boot: int = 1000, seed: int = 0, allow_empty: bool = False) -> ReportData:
    """Evaluate every finished method on every test set of ``experiment`` (see the module docstring).

    A method marked done whose predictions are missing or unusable gets an issue per test set, and the
    status ``missing`` when no test set could be evaluated; it is never an error.

    Raises:
        CrossfakeError: no method of the experiment has any usable predictions (nothing to report), unless
            ``allow_empty`` (then the report lists the methods and their failures only).
    """
    summary = Summary(experiment.name, experiment.description, list(experiment.test_sets), {},
                      pd.DataFrame(columns=list(RESULT_COLUMNS)), experiment.provenance, experiment.run_dir)
    data = ReportData(experiment, summary)
    frames = [f for entry in experiment.methods.values() for f in _evaluate_method(data, entry, n_boot, seed)]
    if not frames and not allow_empty:
        expected = [str(p) for e in experiment.methods.values() for p in e.predictions.values()][:3]
        problems = [f"{e.name}: {i}" for e in experiment.methods.values() for i in e.issues][:3]
        raise CrossfakeError(
            f"{experiment.run_dir}: no method has usable test predictions, so there is nothing to report; "
            f"expected predictions files such as {expected or 'methods/<entry>/predictions_<test set>.parquet'}"
            + (f" ({'; '.join(problems)})" if problems else "")
        )
    if frames:
        data.summary.results = pd.concat(frames, ignore_index=True)[list(RESULT_COLUMNS)]
    _split_section(data)
    return data
