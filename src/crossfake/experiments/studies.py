"""The reports' two studies, each an experiment (or two) built from a base experiment.

**Ablation** (``crossfake ablate``): one method entry of the base experiment, trained once per cell of a
grid (every combination of ``grid``'s values, e.g. LoRA rank x alpha x dropout) plus one run per value of
each ``sweeps`` key at the base setting (e.g. the train fraction). All cells are method entries of one
experiment run, so the grid resumes cell by cell and shares the prepared data and the split. The table
ranks cells by validation AUC (the selection a user may make) and shows the test metrics beside it.

**Leakage** (``crossfake leakage``): the same methods on the same data, split four ways (the *arms*),
each run once per seed, so the table shows how much each kind of leakage flatters a detector:

- ``frames-all``: the reports' leaky split. Frames of every video of every manipulation, the test
  manipulation's included, go at random to train, val and test: people, videos and the test
  manipulation itself are seen in training.
- ``frames``: frames at random, each manipulation by its own shares, so a test-only manipulation stays out
  of training: people and videos leak, the manipulation does not.
- ``videos``: each manipulation's videos cut by its shares (``literal``, report 1's video-level split): no
  video is on two sides, but the test fakes show people whose real videos train.
- ``identity``: identity groups, each on one side (crossfake's default): the reference.

Reports each arm's test AUC (frame and video, bootstrap CIs over videos), its gap to the reference arm,
and its audit of the test set: people, videos and test-manipulation frames shared with training.

Both are configured in YAML (``configs/studies/``) and validated like experiments.

**Cross-dataset** (``crossfake run cross-dataset --corpus NAME=ROOT ...``): an experiment with ``corpora``
(see :mod:`.config`) trains on one corpus (FF++) and tests on the others, each cropped with the same
settings; :func:`run_cross_dataset` runs it and writes the papers' table, rows methods and columns corpora
+ their average, frame and video AUC with bootstrap CIs.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping
from enum import StrEnum
from pathlib import Path
from typing import Any

import pandas as pd
import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from crossfake.data.audit import audit_test_set
from crossfake.data.manifest import read_manifest
from crossfake.data.splits import SplitMode, SplitSpec
from crossfake.data.synth import synthesize
from crossfake.evaluation.aggregate import ALL, evaluate_predictions
from crossfake.executors.base import Executor
from crossfake.experiments.config import ExperimentConfig, deep_merge, resolve_experiment_path
from crossfake.experiments.runner import ExperimentRun, read_experiment, run_experiment
from crossfake.reports.collect import read_predictions
from crossfake.runs.experiment import SPLIT_FILE, MethodEntry, Status
from crossfake.utils.config import apply_overrides, read_yaml, validate_config
from crossfake.utils.errors import CrossfakeError
from crossfake.utils.io import json_safe, write_json_atomic, write_table_atomic, write_text_atomic
from crossfake.utils.logging import get_logger
from crossfake.utils.shipped import resolve_shipped

log = get_logger("studies")

#: Metrics of the study tables: (level, metric) as evaluate_predictions names them.
TABLE_METRICS = (("frame", "auc"), ("frame", "eer"), ("video_mean", "auc"))


class StudyConfig(BaseModel):
    """What every study shares: a base experiment, the method entry studied and the test set reported."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, pattern=r"^[\w.-]+$")
    description: str = ""
    experiment: str | dict[str, Any] = Field(description="base experiment: shipped name, YAML path or mapping")
    experiment_overrides: dict[str, Any] = Field(
        default_factory=dict, description="laid over the base experiment (e.g. data.root, defaults.train)"
    )
    method: str | list[str] = Field(description="the base experiment's method entry (or entries) studied")
    test: str | list[str] = Field(description="the base experiment's test set (or sets) of the tables")

    def entries(self) -> list[str]:
        """The studied method entries, in the order given."""
        return [self.method] if isinstance(self.method, str) else list(dict.fromkeys(self.method))

    def test_sets(self) -> list[str]:
        """The test sets of the tables, in the order given."""
        return [self.test] if isinstance(self.test, str) else list(dict.fromkeys(self.test))

    def base(self) -> ExperimentConfig:
        """The base experiment with ``experiment_overrides`` applied, reduced to the studied method."""
        if isinstance(self.experiment, Mapping):
            data = dict(self.experiment)
        else:
            data = read_yaml(resolve_experiment_path(self.experiment))
        data = deep_merge(data, self.experiment_overrides)
        base = ExperimentConfig.parse(data, where=f"experiment {self.experiment if isinstance(self.experiment, str) else ''}")
        missing = [m for m in self.entries() if m not in base.methods]
        if missing or not self.entries():
            raise CrossfakeError(f"study {self.name}: method {', '.join(map(repr, missing)) or '(none)'} is not an "
                                 f"entry of experiment {base.name} (entries: {', '.join(base.methods)})")
        unknown = [t for t in self.test_sets() if t not in base.tests]
        if unknown or not self.test_sets():
            raise CrossfakeError(f"study {self.name}: test set {', '.join(map(repr, unknown)) or '(none)'} is not in "
                                 f"experiment {base.name} "
                                 f"(test sets: {', '.join(base.tests)})")
        return base

    @model_validator(mode="after")
    def _check_base(self) -> StudyConfig:
        try:
            self.base()
        except CrossfakeError as e:
            raise ValueError(str(e)) from None
        return self

    @classmethod
    def parse(cls, data: Any, where: str, overrides: Iterable[str] = ()) -> StudyConfig:
        return validate_config(cls, data, where, overrides, expected="name:, experiment:, method:, test:")

    @classmethod
    def from_yaml(cls, name_or_path: str | Path, overrides: Iterable[str] = ()) -> StudyConfig:
        path = resolve_study_path(name_or_path)
        return cls.parse(read_yaml(path), where=str(path), overrides=overrides)


class AblationConfig(StudyConfig):
    """A grid of option values (every combination) plus one-at-a-time sweeps, for one method entry."""

    grid: dict[str, list[Any]] = Field(default_factory=dict, description="dotted training key -> values")
    sweeps: dict[str, list[Any]] = Field(default_factory=dict, description="dotted key -> values, one at a time")

    @model_validator(mode="after")
    def _some_cells(self) -> AblationConfig:
        if not isinstance(self.method, str):
            raise ValueError(f"method: an ablation studies one method entry, got {self.method}")
        if not isinstance(self.test, str):
            raise ValueError(f"test: an ablation ranks its cells on one test set, got {self.test}")
        if not self.grid and not self.sweeps:
            raise ValueError("an ablation needs `grid:` or `sweeps:` values")
        empty = [k for k, v in {**self.grid, **self.sweeps}.items() if not v]
        if empty:
            raise ValueError(f"no values for {empty}")
        return self

    def cells(self) -> dict[str, dict[str, Any]]:
        """Cell name -> the dotted settings it changes (grid combinations first, then the sweeps)."""
        cells: dict[str, dict[str, Any]] = {}
        keys = list(self.grid)
        for values in itertools.product(*(self.grid[k] for k in keys)):
            settings = dict(zip(keys, values, strict=True))
            cells[_cell_name(settings)] = settings
        for key, values in self.sweeps.items():
            for value in values:
                cells.setdefault(_cell_name({key: value}), {key: value})
        return cells

    def to_experiment(self) -> ExperimentConfig:
        """The base experiment with one method entry per cell."""
        base = self.base()
        entry = base.methods[self.method]
        methods = {}
        for name, settings in self.cells().items():
            methods[name] = deep_merge(entry, apply_overrides({}, [f"{k}={_yaml(v)}" for k, v in settings.items()]))
            methods[name].setdefault("config", entry.get("config", self.method))
        data = base.to_dict() | {"name": self.name, "description": self.description or base.description,
                                 "methods": methods, "tests": {self.test: base.tests[self.test].model_dump()}}
        return ExperimentConfig.parse(data, where=f"ablation {self.name}")


class LeakageArm(StrEnum):
    """How an arm of the leakage study splits the data (see the module docstring)."""

    frames_all = "frames-all"
    frames = "frames"
    videos = "videos"
    identity = "identity"


#: arm -> (how it splits the data, what its test set shares with training by construction)
ARMS: dict[LeakageArm, tuple[str, str]] = {
    LeakageArm.frames_all: ("frames of every video of every manipulation at random, the test manipulation's "
                            "included (the reports' leaky split)", "people, videos, the test manipulation"),
    LeakageArm.frames: ("frames at random, each manipulation by its own shares (the test manipulation only "
                        "in test)", "people, videos"),
    LeakageArm.videos: ("videos cut per manipulation by its shares (`literal`: report 1's video-level split)",
                        "people"),
    LeakageArm.identity: ("identity groups, each on one side (crossfake's default)", "nothing"),
}


class LeakageConfig(StudyConfig):
    """The same method entries on the same data, split by each arm, once per seed."""

    arms: list[LeakageArm] = Field(default_factory=lambda: list(LeakageArm), min_length=2,
                                   description="the splits compared (frames-all, frames, videos, identity)")
    reference: LeakageArm = Field(LeakageArm.identity, description="the arm every gap is measured against")
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1,
                             description="each seed sets the split's seed and every method's training seed")

    @model_validator(mode="after")
    def _arms_and_seeds(self) -> LeakageConfig:
        if len(set(self.arms)) < len(self.arms):
            raise ValueError(f"arms: each arm once, got {[a.value for a in self.arms]}")
        if self.reference not in self.arms:
            raise ValueError(f"reference: {self.reference.value!r} is not one of the arms "
                             f"({', '.join(a.value for a in self.arms)})")
        if len(set(self.seeds)) < len(self.seeds) or min(self.seeds) < 0:
            raise ValueError(f"seeds: distinct non-negative integers, got {self.seeds}")
        return self

    def manipulations(self, base: ExperimentConfig | None = None) -> list[str]:
        """The manipulations every arm splits: those that train or validate in the base split, and the test
        sets'."""
        base = base or self.base()
        spec = base.split_spec()
        trained = [m for m, shares in spec.manipulations.items() if shares.train > 0 or shares.val > 0]
        return list(dict.fromkeys([*trained, *(m for t in self.test_sets() for m in base.tests[t].manipulations)]))

    def arm_spec(self, arm: LeakageArm, seed: int, base: ExperimentConfig | None = None) -> SplitSpec:
        """The base experiment's split spec as ``arm`` splits it, with ``seed``."""
        base = base or self.base()
        spec, manipulations = base.split_spec(), self.manipulations(base)
        if arm == LeakageArm.frames_all:
            return spec.pooled(manipulations).model_copy(update={"seed": seed})
        mode = {LeakageArm.frames: SplitMode.frame, LeakageArm.videos: SplitMode.literal,
                LeakageArm.identity: SplitMode.identity}[arm]
        data = spec.model_dump(mode="json") | {
            "name": f"{spec.name}-{arm.value}", "mode": mode.value, "seed": seed,
            "manipulations": {m: spec.manipulations[m].model_dump() for m in manipulations},
        }
        return SplitSpec.parse(data, where=f"leakage {self.name}: the {arm.value} split of {spec.name}")

    def experiments(self, run_dir: str | Path) -> dict[tuple[LeakageArm, int], ExperimentConfig]:
        """One experiment per (arm, seed): the base reduced to the studied entries and test set.

        Every arm reads the same corpus and shares one crop cache: the base's, or ``run_dir/prepared``;
        a base without a corpus root gets the synthetic FF++ that :func:`run_leakage` writes into
        ``run_dir/data``.
        """
        run_dir = Path(run_dir).absolute()
        base = self.base()
        shared = base.to_dict()
        if base.data.root is None:
            shared["data"]["root"] = str(run_dir / "data")
        shared["prepare"]["cache"] = str(base.prepare.cache or run_dir / "prepared")
        out = {}
        for seed in self.seeds:
            methods = {name: deep_merge(base.methods[name], {"train": {"seed": seed}}) for name in self.entries()}
            for arm in self.arms:
                data = shared | {
                    "name": f"{self.name}-{arm.value}-seed{seed}",
                    "description": f"{self.name}, arm {arm.value}: {ARMS[arm][0]}",
                    "split": self.arm_spec(arm, seed, base).model_dump(mode="json"),
                    "methods": methods,
                    "tests": {t: base.tests[t].model_dump() for t in self.test_sets()},
                }
                out[arm, seed] = ExperimentConfig.parse(data, where=f"leakage {self.name} ({arm.value}, seed {seed})")
        return out

    @staticmethod
    def arm_dir(run_dir: str | Path, arm: LeakageArm, seed: int) -> Path:
        """Where the experiment of ``arm`` and ``seed`` runs."""
        return Path(run_dir).absolute() / arm.value / f"seed{seed}"


# -- running ------------------------------------------------------------------------------------------


def run_ablation(config: AblationConfig, run_dir: str | Path, *, progress: bool = True,
                 executor: Executor | None = None) -> pd.DataFrame:
    """Run every cell (resuming finished ones), then write ``ablation.{csv,md,json}`` and heatmaps.

    ``executor``: where preparation and scoring run (see :func:`run_experiment`)."""
    run_dir = Path(run_dir)
    experiment = config.to_experiment()
    result = run_experiment(experiment, run_dir, progress=progress, executor=executor)
    keys = [*config.grid, *config.sweeps]
    settings = {}
    for name in config.cells():  # every studied key's value in force, the base's included
        resolved = experiment.train_config(name, manifest=run_dir, out=run_dir, check_paths=False).to_dict()
        settings[name] = {key: _lookup(resolved, key) for key in keys}
    table = study_table(result, config.test, settings)
    table = table.sort_values("val_auc", ascending=False, na_position="last").reset_index(drop=True)
    write_table_atomic(run_dir / "ablation.csv", table)
    write_json_atomic(run_dir / "ablation.json", {"study": config.model_dump(mode="json"),
                                                   "cells": table.to_dict(orient="records")})
    figures = _heatmaps(config, table, run_dir / "figures")
    write_text_atomic(run_dir / "ablation.md", _ablation_markdown(config, table, figures, run_dir))
    return table


def run_leakage(config: LeakageConfig, run_dir: str | Path, *, progress: bool = True,
                executor: Executor | None = None) -> pd.DataFrame:
    """Run every arm and seed (resuming finished ones), then write ``leakage.{csv,md,json}``.

    Returns one row per (method, arm, seed): status, validation AUC, test AUC frame and video with their
    bootstrap CIs, the gap to the reference arm, and the test set's audit (:func:`audit_test_set`). A
    method that fails in one arm is recorded (its status and error; the arm's run keeps the traceback)
    and the others go on. ``executor``: where preparation and scoring run (see :func:`run_experiment`).
    """
    run_dir = Path(run_dir).absolute()
    base = config.base()
    experiments = config.experiments(run_dir)  # validated before anything is written
    if base.data.root is None:
        synthesize(run_dir / "data", base.data.synth.synth_config(), progress=progress)
    rows = []
    for (arm, seed), experiment in experiments.items():
        log.info("leakage %s: arm %s, seed %d", config.name, arm.value, seed)
        result = run_experiment(experiment, config.arm_dir(run_dir, arm, seed), progress=progress, report=False,
                                executor=executor)
        rows += _arm_rows(config, experiment, result, arm, seed)
    table = _with_gaps(pd.DataFrame(rows), config.reference)
    summary = leakage_summary(table, config)
    methods = {name: describe_entry(base, name) for name in config.entries()}
    write_table_atomic(run_dir / "leakage.csv", table)
    write_json_atomic(run_dir / "leakage.json", {
        "study": config.model_dump(mode="json"), "methods": methods, "manipulations": config.manipulations(base),
        "arms": {arm.value: {"split": ARMS[arm][0], "shared": ARMS[arm][1]} for arm in config.arms},
        "rows": _records(table), "summary": _records(summary),
    })
    write_text_atomic(run_dir / "leakage.md", leakage_markdown(config, base, table, summary, methods))
    return table


def _arm_rows(config: LeakageConfig, experiment: ExperimentConfig, result: ExperimentRun, arm: LeakageArm,
              seed: int) -> list[dict[str, Any]]:
    split = read_manifest(result.run_dir / SPLIT_FILE)
    rows = []
    for test_name, name in itertools.product(config.test_sets(), config.entries()):
        test = experiment.tests[test_name]
        audit = audit_test_set(split, test.manipulations, test=test.split)
        entry = result.entries.get(name)
        row: dict[str, Any] = {"test": test_name, "method": name, "arm": arm.value, "seed": seed,
                               "status": _status(entry), "error": entry.error if entry else None}
        if entry is not None and entry.status == Status.done:
            preds = read_predictions(entry.predictions[test_name])
            ev = evaluate_predictions(preds, threshold=entry.threshold, n_boot=experiment.bootstrap)
            row["val_auc"] = entry.val_auc
            for level, key in (("frame", "frame"), ("video_mean", "video")):
                r = ev.results
                hit = r[(r["level"] == level) & (r["group"] == ALL) & (r["metric"] == "auc")].iloc[0]
                row[f"{key}_auc"], row[f"{key}_low"], row[f"{key}_high"] = hit["value"], hit["ci_low"], hit["ci_high"]
            row["test_frames"], row["test_videos"] = len(preds), preds["video_id"].nunique()
            row["train_s"] = entry.wall_time_s["train"]
        rows.append(row | audit)
    return rows


def _status(entry: MethodEntry | None) -> str | None:
    """An entry's status as a plain string for a table (None: the experiment has no such entry)."""
    return None if entry is None else str(entry.status)


def _with_gaps(table: pd.DataFrame, reference: LeakageArm) -> pd.DataFrame:
    """Each row's AUC minus the reference arm's (same test set, method and seed), and whether the reference
    AUC lies below the row's CI (the arm's inflation is larger than its uncertainty)."""
    table = table.copy()
    keys = ["test", "method", "seed"]
    for key in ("frame", "video"):
        if f"{key}_auc" not in table:
            table[[f"{key}_auc", f"{key}_low", f"{key}_high"]] = math.nan
        ref = table[(table["arm"] == reference.value) & (table["status"] == Status.done)].set_index(keys)[f"{key}_auc"]
        ref_auc = pd.Series(list(table[keys].itertuples(index=False, name=None))).map(ref.to_dict()).to_numpy()
        table[f"{key}_gap"] = table[f"{key}_auc"] - ref_auc
        table[f"{key}_ref_below_ci"] = ref_auc < table[f"{key}_low"]
    return table


def leakage_summary(table: pd.DataFrame, config: LeakageConfig) -> pd.DataFrame:
    """One row per (test set, method, arm) over the seeds: mean and sd of the AUCs and gaps, and in how many
    seeds the reference AUC lies below the arm's frame and video CIs."""
    rows = []
    for test, name, arm in itertools.product(config.test_sets(), config.entries(), config.arms):
        part = table[(table["test"] == test) & (table["method"] == name) & (table["arm"] == arm.value)
                     & (table["status"] == Status.done)]
        row: dict[str, Any] = {"test": test, "method": name, "arm": arm.value, "seeds": len(part)}
        for col in ("frame_auc", "video_auc", "frame_gap", "video_gap"):
            row[f"{col}_mean"] = part[col].mean() if len(part) else math.nan
            row[f"{col}_sd"] = part[col].std(ddof=1) if len(part) > 1 else math.nan
        for key in ("frame", "video"):
            row[f"{key}_ref_below_ci"] = int(part[f"{key}_ref_below_ci"].sum())
        for col in AUDIT_COLUMNS:
            row[col] = part[col].mean() if len(part) else math.nan
        rows.append(row)
    return pd.DataFrame(rows)


def study_table(result: ExperimentRun, test: str, cells: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """One row per cell: its settings, validation AUC, test metrics, parameters and train time."""
    rows = []
    for name, settings in cells.items():
        entry = result.entries.get(name)
        row: dict[str, Any] = {"cell": name, **{k.rsplit(".", 1)[-1]: v for k, v in settings.items()}}
        row["status"] = _status(entry)
        if entry is not None and entry.status == Status.done:
            preds = read_predictions(entry.predictions[test])
            ev = evaluate_predictions(preds, threshold=entry.threshold, n_boot=0)
            row["val_auc"] = entry.val_auc
            for level, metric in TABLE_METRICS:
                row[f"{level}_{metric}"] = ev.value(level, "all", metric)
            row["trainable"] = entry.parameters["trainable"]
            row["train_s"] = entry.wall_time_s["train"]
        rows.append(row)
    return pd.DataFrame(rows)


def _heatmaps(config: AblationConfig, table: pd.DataFrame, folder: Path) -> list[Path]:
    """Test and validation AUC over the grid's first two keys, one figure per value of the others."""
    from crossfake.evaluation.plots import plot_heatmap

    keys = [k.rsplit(".", 1)[-1] for k in config.grid]
    if len(keys) < 2 or "val_auc" not in table:
        return []
    row, col, rest = keys[0], keys[1], keys[2:]
    grid_cells = [name for name, settings in config.cells().items() if set(settings) == set(config.grid)]
    grid = table[table["cell"].isin(grid_cells)]
    paths = []
    for values, part in grid.groupby(rest, dropna=False) if rest else [((), grid)]:
        values = values if isinstance(values, tuple) else (values,)
        suffix = " ".join(f"{k}={v}" for k, v in zip(rest, values, strict=True))
        for metric, label in (("frame_auc", f"{config.test} frame AUC"), ("val_auc", "validation AUC")):
            path = folder / f"{metric}{'_' + _slug(suffix) if suffix else ''}.png"
            plot_heatmap(part, row, col, metric, path, title=f"{label} {suffix}".strip())
            paths.append(path)
    return paths


def _ablation_markdown(config: AblationConfig, table: pd.DataFrame, figures: list[Path], run_dir: Path) -> str:
    from crossfake.evaluation.tables import render

    done = table[table["status"] == Status.done]
    lines = [f"# Ablation {config.name}", "", config.description or "", "",
             f"Method entry `{config.method}`, test set {config.test}. Cells ranked by validation AUC; "
             "the test columns are reported, never used for selection.", ""]
    if len(done):
        best = done.iloc[0]
        lines += [f"Best on validation: **{best['cell']}** (val AUC {best['val_auc']:.4f}, "
                  f"test frame AUC {best['frame_auc']:.4f}).", ""]
    headers = list(table.columns)
    lines.append(render(headers, [[_fmt(v) for v in r] for r in table.itertuples(index=False)], fmt="markdown"))
    lines += ["", *(f"![{p.stem}]({p.relative_to(run_dir)})" for p in figures), ""]
    return "\n".join(lines)


#: The audit counts of a leakage row, and how the Markdown table shows them: (shared, of how many, title).
AUDIT_SHOWN = (
    ("people_in_train", "people", "{} of", "test people seen in training"),
    ("videos_in_train", "videos", "{} of", "test videos with frames in training"),
    ("manipulation_frames_in_train", "manipulation_frames", "{} /",
     "test-manipulation frames in train / test"),
)
AUDIT_COLUMNS = ("people", "people_in_train", "videos", "videos_in_train", "videos_person_in_train",
                 "manipulation_frames", "manipulation_frames_in_train", "manipulation_videos_in_train")


def describe_entry(experiment: ExperimentConfig, name: str) -> str:
    """A method entry in words, from its resolved training config: method, options set, backbone, schedule."""
    config = experiment.train_config(name, manifest=Path("split.parquet"), out=Path(name), check_paths=False)
    method = config.method
    options = {k: getattr(method, k) for k in sorted(method.model_fields_set) if k not in ("method", "backbone", "lr")}
    opts = f" ({', '.join(f'{k}={v}' for k, v in options.items())})" if options else ""
    epochs = f"{config.train.epochs} epoch{'s' if config.train.epochs > 1 else ''}"
    return f"{method.method}{opts} on {method.backbone}, {epochs} at batch {config.train.batch_size}, lr {config.lr:g}"


def leakage_markdown(config: LeakageConfig, base: ExperimentConfig, table: pd.DataFrame, summary: pd.DataFrame,
                     methods: Mapping[str, str]) -> str:
    """The study's Markdown: the arms, an overview of every test set and method (frame AUC per arm), then per
    test set and method the AUCs, gaps and audits (per seed too when there are several)."""
    from crossfake.evaluation.tables import render

    ref, several = config.reference.value, len(config.seeds) > 1
    tests = ", ".join(f"**{t}** ({' + '.join(base.tests[t].manipulations)}, split `{base.tests[t].split}`)"
                      for t in config.test_sets())
    lines = [f"# Identity leakage: {config.name}", "",
             *([config.description.strip(), ""] if config.description else []),
             f"Test set{'s' if len(config.test_sets()) > 1 else ''} {tests}; manipulations split: "
             f"{', '.join(config.manipulations(base))}. Seed{'s' if several else ''} {', '.join(map(str, config.seeds))} "
             "(a seed sets the split and the training). Thresholds and checkpoints are chosen on each arm's "
             "validation rows.", "", *(f"- `{name}`: {text}" for name, text in methods.items()), "",
             render(["arm", "how the data is split", "shared with training"],
                    [[f"`{a.value}`" + (" (reference)" if a == config.reference else ""), *ARMS[a]]
                     for a in config.arms], fmt="markdown", align="lll"), ""]

    # Overview: frame AUC per arm (mean over seeds when several), the gap to the reference in brackets.
    body = []
    for test, name in itertools.product(config.test_sets(), config.entries()):
        cells = []
        for arm in config.arms:
            if several:
                r = summary[(summary["test"] == test) & (summary["method"] == name) & (summary["arm"] == arm.value)]
                r = r.iloc[0]
                cell, gap = _mean_sd(r, "frame_auc"), r["frame_gap_mean"]
            else:
                r = _row(table, test, name, arm.value, config.seeds[0])
                cell = _auc_cell(r, "frame") if r["status"] == Status.done else str(r["status"])
                gap = r["frame_gap"]
            cells.append(cell + ("" if arm == config.reference or not math.isfinite(gap) else f" ({gap:+.3f})"))
        body.append([test, f"`{name}`", *cells])
    what = "mean ± sd over seeds" if several else "[95% CI]"
    lines += ["## Frame AUC per arm", "",
              render(["test set", "method", *(f"`{a.value}`" for a in config.arms)], body, fmt="markdown",
                     align="ll" + "r" * len(config.arms)), "",
              f"Frame AUC {what}; in brackets its gap to `{ref}`. The sections below add video AUC and what each "
              "arm's test set shares with its training rows.", ""]

    audit_titles = [title for *_, title in AUDIT_SHOWN]
    for test, name in itertools.product(config.test_sets(), config.entries()):
        lines += [f"## {test}: {name}", ""]
        rows = table[(table["test"] == test) & (table["method"] == name)]
        rows = rows.sort_values(["arm", "seed"], key=_arm_order(config))
        if several:
            body = []
            for _, r in summary[(summary["test"] == test) & (summary["method"] == name)].iterrows():
                below = "-" if r["arm"] == ref else f"{r['frame_ref_below_ci']} / {r['video_ref_below_ci']} of {r['seeds']}"
                body.append([f"`{r['arm']}`", _mean_sd(r, "frame_auc"), _mean_sd(r, "video_auc"),
                             _gap_cell(r["frame_gap_mean"], r["video_gap_mean"], r["arm"] == ref,
                                       r["frame_gap_sd"], r["video_gap_sd"]), below, *_audit_cells(r)])
            lines += [render(["arm", "frame AUC (mean ± sd)", "video AUC (mean ± sd)", f"gap to {ref} (frame / video)",
                              f"seeds with {ref}'s AUC below the CI (frame / video)",
                              *(f"{t} (mean)" for t in audit_titles)], body, fmt="markdown"), "", "Per seed:", ""]
        body = [[f"`{r['arm']}`", *([str(r["seed"])] if several else []), *_result_cells(r, ref), *_audit_cells(r)]
                for _, r in rows.iterrows()]
        lines += [render(["arm", *(["seed"] if several else []), "frame AUC [95% CI]", "video AUC [95% CI]",
                          f"gap to {ref} (frame / video)", *audit_titles], body, fmt="markdown"), ""]
        failed = rows[rows["status"] != Status.done]
        if len(failed):
            lines += [f"Failed: {', '.join(f'{r.arm} seed {r.seed}' for r in failed.itertuples())} "
                      f"(see each arm's `experiment.json` and `methods/{name}/error.log`).", ""]
    lines += ["Each arm and seed is an experiment run in `<arm>/seed<seed>/` (`crossfake report` builds its full "
              "report, split audit included). CIs are percentile bootstraps over test videos.", ""]
    return "\n".join(lines)


def _row(table: pd.DataFrame, test: str, method: str, arm: str, seed: int) -> pd.Series:
    hit = table[(table["test"] == test) & (table["method"] == method) & (table["arm"] == arm) & (table["seed"] == seed)]
    return hit.iloc[0]


def _auc_cell(r: Mapping[str, Any], key: str) -> str:
    from crossfake.evaluation.tables import format_with_ci

    return format_with_ci(r[f"{key}_auc"], r[f"{key}_low"], r[f"{key}_high"])


def _result_cells(r: Mapping[str, Any], ref: str) -> list[str]:
    if r["status"] != Status.done:
        return [f"{r['status']}: {r['error']}", "", ""]
    return [_auc_cell(r, "frame"), _auc_cell(r, "video"), _gap_cell(r["frame_gap"], r["video_gap"], r["arm"] == ref)]


def _audit_cells(r: Mapping[str, Any]) -> list[str]:
    from crossfake.evaluation.tables import format_number

    return [f"{word.format(format_number(r[shared], 0))} {format_number(r[total], 0)}"
            for shared, total, word, _ in AUDIT_SHOWN]


def _arm_order(config: LeakageConfig):
    order = {a.value: i for i, a in enumerate(config.arms)}
    return lambda col: col.map(order) if col.name == "arm" else col


def _gap_cell(frame: float, video: float, is_reference: bool, frame_sd: float = math.nan,
              video_sd: float = math.nan) -> str:
    if is_reference:
        return "-"
    def one(v: float, sd: float) -> str:
        text = "-" if not math.isfinite(v) else f"{v:+.3f}"
        return text + (f" ± {sd:.3f}" if math.isfinite(sd) else "")
    return f"{one(frame, frame_sd)} / {one(video, video_sd)}"


def _mean_sd(row: Mapping[str, Any], col: str) -> str:
    mean, sd = row[f"{col}_mean"], row[f"{col}_sd"]
    if not math.isfinite(mean):
        return "-"
    return f"{mean:.3f}" + (f" ± {sd:.3f}" if math.isfinite(sd) else "")


def _records(table: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as JSON-ready dicts (NaN -> None, numpy scalars -> Python)."""
    return [json_safe(record) for record in table.to_dict(orient="records")]


def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _lookup(tree: Mapping[str, Any], dotted: str) -> Any:
    for part in dotted.split("."):
        tree = tree[part]
    return tree


def _cell_name(settings: Mapping[str, Any]) -> str:
    return "-".join(f"{k.rsplit('.', 1)[-1]}{_slug(str(v))}" for k, v in settings.items())


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "p" if c == "." else "_" for c in text).strip("_")


def _yaml(value: Any) -> str:
    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()


# -- cross-dataset -------------------------------------------------------------------------------------

CROSS_DATASET = "cross_dataset"
"""Stem of the cross-dataset table files in the run directory (``.csv``, ``.md``, ``.json``)."""


def run_cross_dataset(config: ExperimentConfig, run_dir: str | Path, *, only: Iterable[str] | None = None,
                      progress: bool = True, report: bool = True,
                      executor: Executor | None = None) -> tuple[ExperimentRun, pd.DataFrame]:
    """Run an experiment with ``corpora`` (resuming what is finished), then write ``cross_dataset.{csv,md,json}``:
    per method entry and test set, frame and video AUC with bootstrap CIs over the test videos."""
    if not config.corpora:
        raise CrossfakeError(f"experiment {config.name} names no other corpus to test on: add `corpora:` or "
                             "give --corpus NAME=ROOT")
    run_dir = Path(run_dir).absolute()
    result = run_experiment(config, run_dir, only=list(only) if only else None, progress=progress, report=report,
                            executor=executor)
    table = cross_dataset_table(config, result)
    write_table_atomic(run_dir / f"{CROSS_DATASET}.csv", table)
    write_json_atomic(run_dir / f"{CROSS_DATASET}.json", {
        "experiment": config.name, "corpora": result.experiment.corpora,
        "in_domain": [t for t, test in config.tests.items() if test.split not in config.corpora],
        "rows": _records(table), "average": _records(cross_dataset_average(config, table)),
    })
    write_text_atomic(run_dir / f"{CROSS_DATASET}.md", cross_dataset_markdown(config, result, table))
    return result, table


def cross_dataset_table(config: ExperimentConfig, result: ExperimentRun) -> pd.DataFrame:
    """One row per (method entry, test set): status, whether the test set is another corpus, frame and video
    AUC with their bootstrap CIs (``config.bootstrap`` resamples over videos), test videos and frames."""
    rows = []
    for name, (test_name, test) in itertools.product(config.methods, config.tests.items()):
        entry = result.entries.get(name)
        row: dict[str, Any] = {"method": name, "test": test_name, "corpus": test.split in config.corpora,
                               "status": _status(entry), "error": entry.error if entry else None}
        if entry is not None and entry.status == Status.done and test_name in entry.predictions:
            preds = read_predictions(entry.predictions[test_name])
            ev = evaluate_predictions(preds, threshold=entry.threshold, n_boot=config.bootstrap)
            row |= _auc_columns(ev.results)
            row["videos"], row["frames"] = preds["video_id"].nunique(), len(preds)
        rows.append(row)
    table = pd.DataFrame(rows)
    for col in ("frame_auc", "frame_low", "frame_high", "video_auc", "video_low", "video_high"):
        if col not in table:
            table[col] = math.nan
    return table


def _auc_columns(results: pd.DataFrame) -> dict[str, float]:
    """Frame and video (mean score) AUC of all rows with their CI bounds, from evaluate_predictions' results."""
    out = {}
    for level, key in (("frame", "frame"), ("video_mean", "video")):
        hit = results[(results["level"] == level) & (results["group"] == ALL) & (results["metric"] == "auc")]
        values = hit.iloc[0] if len(hit) else {"value": math.nan, "ci_low": math.nan, "ci_high": math.nan}
        out[f"{key}_auc"], out[f"{key}_low"], out[f"{key}_high"] = values["value"], values["ci_low"], values["ci_high"]
    return out


def cross_dataset_average(config: ExperimentConfig, table: pd.DataFrame) -> pd.DataFrame:
    """Per method entry, the mean frame and video AUC over the other corpora (the in-domain test sets are not
    averaged); missing unless every corpus was scored."""
    rows = []
    for name in config.methods:
        part = table[(table["method"] == name) & table["corpus"]]
        row: dict[str, Any] = {"method": name, "corpora": len(part)}
        for key in ("frame", "video"):
            values = part[f"{key}_auc"].astype(float)
            row[f"{key}_auc"] = float(values.mean()) if len(values) and values.notna().all() else math.nan
        rows.append(row)
    return pd.DataFrame(rows)


def cross_dataset_markdown(config: ExperimentConfig, result: ExperimentRun, table: pd.DataFrame) -> str:
    """The papers' layout: one table per level, rows the method entries, columns the in-domain test sets, the
    other corpora and their average."""
    from crossfake.evaluation.tables import format_number, format_with_ci, render

    corpora = list(config.corpora)
    in_domain = [t for t, test in config.tests.items() if test.split not in config.corpora]
    info = result.experiment.corpora
    spec = config.split_spec()
    trained = [m for m, shares in spec.manipulations.items() if shares.train > 0]
    lines = [f"# Cross-dataset: {config.name}", "", *([config.description.strip(), ""] if config.description else []),
             f"Trained on {config.data.corpus} ({' + '.join(trained)}, split `{spec.name}`); tested in-domain on "
             f"{', '.join(in_domain) or 'nothing'} and on {len(corpora)} other corpor{'a' if len(corpora) > 1 else 'us'}, "
             "each cropped with the same settings and never trained on:", ""]
    for name in corpora:
        c, what = config.corpora[name], info.get(name, {})
        where = f"`{c.root}`" if c.root else (f"synthetic FF++ (seed {c.synth.seed}, {c.synth.compression}, "
                                               f"{c.synth.size} px, {', '.join(c.synth.manipulations)})")
        use = what.get("tested", {"test": "official test split", "all": "every video"}.get(c.use, "?"))
        lines.append(f"- **{name}**: {c.corpus}, {where}; {use}: {what.get('videos', '?')} videos, "
                     f"{what.get('frames', '?')} frames")
    averages = cross_dataset_average(config, table).set_index("method")
    header = ["method", *(f"{t} (in-domain)" for t in in_domain), *corpora, "avg"]
    for key, title in (("frame", "Frame AUC"), ("video", "Video AUC (mean of frame scores)")):
        body = []
        for name in config.methods:
            cells = []
            for test in (*in_domain, *corpora):
                r = table[(table["method"] == name) & (table["test"] == test)].iloc[0]
                cells.append(format_with_ci(r[f"{key}_auc"], r[f"{key}_low"], r[f"{key}_high"])
                             if r["status"] == Status.done else str(r["status"]))
            body.append([f"`{name}`", *cells, format_number(averages.loc[name, f"{key}_auc"])])
        lines += ["", f"## {title}", "", render(header, body, fmt="markdown", align="l" + "r" * (len(header) - 1))]
    failed = table[table["status"] != Status.done]["method"].unique()
    lines += ["", "AUC [95% CI]: percentile bootstraps over test videos. avg: the mean AUC over the other corpora "
              "(in-domain test sets excluded), as the papers report it.",
              *([f"Failed: {', '.join(failed)} (see experiment.json and methods/<entry>/error.log)."] if len(failed)
                else []), ""]
    return "\n".join(lines)


def resolve_study_path(name_or_path: str | Path) -> Path:
    return resolve_shipped("studies", name_or_path, "study config")


__all__ = ["ARMS", "AblationConfig", "LeakageArm", "LeakageConfig", "read_experiment", "run_ablation",
           "run_cross_dataset", "run_leakage"]
