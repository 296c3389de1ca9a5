"""The reports' two studies, each an experiment (or two) built from a base experiment.

**Ablation** (``crossfake ablate``): one method entry of the base experiment, trained once per cell of a
grid (every combination of ``grid``'s values, e.g. LoRA rank x alpha x dropout) plus one run per value of
each ``sweeps`` key at the base setting (e.g. the train fraction). All cells are method entries of one
experiment run, so the grid resumes cell by cell and shares the prepared data and the split. The table
ranks cells by validation AUC (the selection a user may make) and shows the test metrics beside it.

**Leakage** (``crossfake leakage``): the same method on the same data and shares, split twice: frame by
frame at random (frames of one video, and so one person, on both sides) and by identity. Reports each
split's test AUC, the gap, and the overlap counts of each split from the audit.

Both are configured in YAML (``configs/studies/``) and validated like experiments.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd
import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from crossfake.data.splits import SplitMode
from crossfake.evaluation.aggregate import evaluate_predictions
from crossfake.experiments.config import ExperimentConfig, deep_merge, resolve_experiment_path
from crossfake.experiments.runner import DONE, ExperimentRun, read_experiment, run_experiment
from crossfake.utils.config import apply_overrides, read_yaml, validate_config
from crossfake.utils.errors import CrossfakeError
from crossfake.utils.io import write_json_atomic, write_table_atomic, write_text_atomic
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
    method: str = Field(description="the base experiment's method entry that is studied")
    test: str = Field(description="the base experiment's test set of the tables")

    def base(self) -> ExperimentConfig:
        """The base experiment with ``experiment_overrides`` applied, reduced to the studied method."""
        if isinstance(self.experiment, Mapping):
            data = dict(self.experiment)
        else:
            data = read_yaml(resolve_experiment_path(self.experiment))
        data = deep_merge(data, self.experiment_overrides)
        base = ExperimentConfig.parse(data, where=f"experiment {self.experiment if isinstance(self.experiment, str) else ''}")
        if self.method not in base.methods:
            raise CrossfakeError(f"study {self.name}: method {self.method!r} is not an entry of experiment "
                                 f"{base.name} (entries: {', '.join(base.methods)})")
        if self.test not in base.tests:
            raise CrossfakeError(f"study {self.name}: test set {self.test!r} is not in experiment {base.name} "
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


class LeakageConfig(StudyConfig):
    """The same method and shares under a leaky split mode and the identity-disjoint one."""

    leaky_mode: SplitMode = SplitMode.frame
    safe_mode: SplitMode = SplitMode.identity

    def experiments(self) -> dict[str, ExperimentConfig]:
        """``{"leaky": ..., "safe": ...}``: the base reduced to the method, split in each mode."""
        base = self.base()
        spec = base.split_spec().model_dump(mode="json")
        out = {}
        for role, mode in (("leaky", self.leaky_mode), ("safe", self.safe_mode)):
            data = base.to_dict() | {
                "name": f"{self.name}-{role}",
                "split": spec | {"name": f"{spec['name']}-{mode.value}", "mode": mode.value},
                "methods": {self.method: base.methods[self.method]},
                "tests": {self.test: base.tests[self.test].model_dump()},
            }
            out[role] = ExperimentConfig.parse(data, where=f"leakage {self.name} ({role})")
        return out


# -- running ------------------------------------------------------------------------------------------


def run_ablation(config: AblationConfig, run_dir: str | Path, *, progress: bool = True) -> pd.DataFrame:
    """Run every cell (resuming finished ones), then write ``ablation.{csv,md,json}`` and heatmaps."""
    run_dir = Path(run_dir)
    experiment = config.to_experiment()
    result = run_experiment(experiment, run_dir, progress=progress)
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


def run_leakage(config: LeakageConfig, run_dir: str | Path, *, progress: bool = True) -> pd.DataFrame:
    """Run the method on both splits, then write ``leakage.{csv,md,json}``: AUCs, gap and overlaps."""
    run_dir = Path(run_dir)
    rows = []
    for role, experiment in config.experiments().items():
        result = run_experiment(experiment, run_dir / role, progress=progress)
        if result.failed():
            entry = result.methods[config.method]
            raise CrossfakeError(f"leakage {config.name}: {config.method} failed on the {role} split: "
                                 f"{entry['error']} (see {run_dir / role})")
        metrics = study_table(result, config.test, {config.method: {}})
        audit = result.record["split"]["audit"]
        overlaps = {f"{o['pair']} {kind}": o[kind] for o in audit["overlaps"] for kind in ("people", "videos")}
        seen = sum(r["seen"] for r in audit["test_seen_in_train"])
        rows.append({"split": role, "mode": experiment.split_spec().mode.value,
                     **metrics.drop(columns=["cell"]).iloc[0].to_dict(),
                     "test videos with a person seen in training": seen, **overlaps})
    table = pd.DataFrame(rows)
    gap = {f"{level} {metric}": table[f"{level}_{metric}"].iloc[0] - table[f"{level}_{metric}"].iloc[1]
           for level, metric in TABLE_METRICS if metric == "auc"}
    write_table_atomic(run_dir / "leakage.csv", table)
    write_json_atomic(run_dir / "leakage.json", {"study": config.model_dump(mode="json"), "gap": gap,
                                                  "splits": table.to_dict(orient="records")})
    write_text_atomic(run_dir / "leakage.md", _leakage_markdown(config, table, gap))
    return table


def study_table(result: ExperimentRun, test: str, cells: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """One row per cell: its settings, validation AUC, test metrics, parameters and train time."""
    rows = []
    for name, settings in cells.items():
        entry = result.methods.get(name, {})
        row: dict[str, Any] = {"cell": name, **{k.rsplit(".", 1)[-1]: v for k, v in settings.items()}}
        row["status"] = entry.get("status")
        if entry.get("status") == DONE:
            preds = pd.read_parquet(result.run_dir / entry["predictions"][test])
            ev = evaluate_predictions(preds, threshold=entry["threshold"], n_boot=0)
            row["val_auc"] = entry["val_auc"]
            for level, metric in TABLE_METRICS:
                row[f"{level}_{metric}"] = ev.value(level, "all", metric)
            row["trainable"] = entry["parameters"]["trainable"]
            row["train_s"] = entry["wall_time_s"]["train"]
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

    done = table[table["status"] == DONE]
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


def _leakage_markdown(config: LeakageConfig, table: pd.DataFrame, gap: dict[str, float]) -> str:
    from crossfake.evaluation.tables import render

    lines = [f"# Identity leakage: {config.name}", "", config.description or "", "",
             f"Method `{config.method}` on test set {config.test}, the same data and shares split "
             f"{config.leaky_mode.value}-level at random vs by identity.", "",
             ", ".join(f"AUC gap ({k}): **{v:+.4f}**" for k, v in gap.items()), "",
             render(["", *table["split"]], [[c, *(_fmt(v) for v in table[c])] for c in table.columns[1:]],
                    fmt="markdown"), ""]
    return "\n".join(lines)


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


def resolve_study_path(name_or_path: str | Path) -> Path:
    return resolve_shipped("studies", name_or_path, "study config")


__all__ = ["AblationConfig", "LeakageConfig", "read_experiment", "run_ablation", "run_leakage"]
