"""Run an experiment end to end into one run directory, resuming whatever is already finished.

Layout (format ``crossfake-experiment/1``; the record and its file names: :mod:`crossfake.runs.experiment`)::

    RUN/
      experiment.yaml        the resolved experiment config
      experiment.json        provenance, split, test sets, and per method entry: status, error, parameters,
                             wall times, validation threshold and AUC, prediction files
      data/                  the synthetic FF++ (only when the config names no corpus root)
      prepared/              face crops + manifest.parquet (or the config's `prepare.cache`)
      split.parquet          the manifest with its `split` column
      methods/<entry>/       a `crossfake train` run directory, plus predictions_<test set>.parquet
      report/                report.md, report.html, metrics, figures (see crossfake.reports)

Steps: synth (if no root) -> prepare (resumes per video) -> split -> for each method entry: train (resumes
from its last checkpoint, selects on validation) -> score every test row once -> one predictions file per
test set -> report. With an ``executor`` (:mod:`crossfake.executors`, e.g. Ray), preparation and the
scoring of the test rows run in its workers, with the same outputs and the same resume as here (the
executor is recorded in ``experiment.json``). ``experiment.json`` is rewritten after each entry, so an interrupted run resumes at
the entry it was in. An entry that raises is recorded as failed (message in experiment.json, traceback in
``methods/<entry>/error.log``) and the others go on.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from crossfake.data.audit import audit_split
from crossfake.data.corpora import get_corpus
from crossfake.data.corpora.base import first_per_manipulation
from crossfake.data.manifest import SPLIT_COLUMN, read_manifest, write_manifest
from crossfake.data.predictions import PredictionColumns
from crossfake.data.preprocess import prepare
from crossfake.data.splits import OLD_SPEC_KEYS, SplitMode, assign_splits, split_manifest
from crossfake.data.synth import synthesize
from crossfake.data.synth.writer import OLD_SYNTH_KEYS
from crossfake.executors.base import Executor, LocalExecutor
from crossfake.experiments.config import (
    OLD_CORPUS_KEYS,
    OLD_OPTION_KEYS,
    ExperimentConfig,
)
from crossfake.experiments.corpora import append_corpus_rows, prepare_corpora
from crossfake.reports import build_report
from crossfake.runs.directory import config_changes, read_run_info
from crossfake.runs.experiment import (
    ERROR_FILE,
    EXPERIMENT_JSON,
    EXPERIMENT_YAML,
    METHODS_DIR,
    SPLIT_FILE,
    Experiment,
    MethodEntry,
    Status,
    load_experiment,
    write_experiment,
)
from crossfake.scoring.run import load_for_scoring, score_run
from crossfake.training.loop import train
from crossfake.utils.config import renamed_keys
from crossfake.utils.errors import CrossfakeError
from crossfake.utils.io import write_parquet_atomic, write_text_atomic
from crossfake.utils.logging import get_logger
from crossfake.utils.provenance import provenance

log = get_logger("experiment")

#: Config sections that fix the data: changing one on an existing run directory would mix two studies.
DATA_KEYS = ("data", "prepare", "split", "corpora")
#: What a data key means when a run directory written before it existed lacks it.
_DATA_DEFAULTS: dict[str, Any] = {"corpora": {}}


@dataclass(frozen=True)
class ExperimentRun:
    """A run directory and its ``experiment.json`` record (:class:`crossfake.runs.experiment.Experiment`)."""

    run_dir: Path
    experiment: Experiment

    @property
    def entries(self) -> dict[str, MethodEntry]:
        """Entry name -> its typed :class:`MethodEntry` (paths resolved against the run directory)."""
        return self.experiment.methods

    def failed(self) -> list[str]:
        return self.experiment.failed()


def run_experiment(
    config: ExperimentConfig,
    run_dir: str | Path,
    *,
    only: Sequence[str] | None = None,
    progress: bool = True,
    report: bool = True,
    on_method: Callable[[str], None] | None = None,
    executor: Executor | None = None,
) -> ExperimentRun:
    """Run ``config`` into ``run_dir`` (see the module docstring); finished parts are not redone.

    Args:
        config: the validated experiment.
        run_dir: the run directory (created, or resumed).
        only: run just these method entries (the others keep their recorded state).
        progress: progress bars.
        report: build the report at the end.
        on_method: called with an entry's name before it runs (tests use it to inject failures).
        executor: where preparation and the scoring of the test rows run (None: the prepare config's
            local workers, and scoring in this process); its outputs are the same.
    """
    run_dir = Path(run_dir).absolute()
    unknown = sorted(set(only or ()) - set(config.methods))
    if unknown:
        raise CrossfakeError(f"--only names no method entry of {config.name}: {unknown} "
                             f"(entries: {', '.join(config.methods)})")
    _check_method_dirs(config, run_dir, [n for n in config.methods if not only or n in only])
    experiment = _start(config, run_dir)
    experiment.executor = (executor or LocalExecutor()).describe()
    split_path = _data(config, run_dir, experiment, progress, executor)

    for name in config.methods:
        entry = experiment.methods.setdefault(name, MethodEntry(name))
        if only and name not in only:
            continue
        if _finished(config, name, run_dir, split_path, entry):
            log.info("%s: finished earlier, skipped", name)
            continue
        log.info("%s: training and testing", name)
        try:
            if on_method is not None:
                on_method(name)
            experiment.methods[name] = _run_method(config, name, run_dir, split_path, progress, executor)
        except KeyboardInterrupt:
            raise
        except Exception as e:  # one failing method is recorded; the others go on
            message = str(e) if isinstance(e, CrossfakeError) else f"{type(e).__name__}: {e}"
            log.error("%s failed: %s (traceback in %s)", name, message, run_dir / METHODS_DIR / name / ERROR_FILE)
            write_text_atomic(run_dir / METHODS_DIR / name / ERROR_FILE, traceback.format_exc())
            experiment.methods[name] = MethodEntry(name, status=Status.failed, error=message)
        write_experiment(experiment)

    result = ExperimentRun(run_dir, experiment)
    if report:
        build_report(run_dir, n_boot=config.bootstrap, allow_empty=True)
    return result


def read_experiment(run_dir: str | Path) -> ExperimentRun:
    """The run directory's record; a clear error for a folder that is not an experiment run."""
    experiment = load_experiment(run_dir)
    return ExperimentRun(experiment.run_dir, experiment)


# -- steps --------------------------------------------------------------------------------------------


def _start(config: ExperimentConfig, run_dir: Path) -> Experiment:
    """Check a resumed run has the same data settings; write the config; return the record (with the
    entries of the previous run, if any)."""
    config_path = run_dir / EXPERIMENT_YAML
    previous_entries: dict[str, MethodEntry] = {}
    if config_path.is_file():
        previous = yaml.safe_load(config_path.read_text(encoding="utf-8")) or {}
        current = config.to_dict()
        changed = [k for k in DATA_KEYS
                   if _today(k, previous.get(k, _DATA_DEFAULTS.get(k))) != _today(k, current.get(k))]
        if changed:
            raise CrossfakeError(
                f"{run_dir} was run with other {', '.join(changed)} settings; its results would mix two "
                "studies. Choose a new output folder (or delete this one)."
            )
        if (run_dir / EXPERIMENT_JSON).is_file():
            previous_entries = load_experiment(run_dir).methods
    run_dir.mkdir(parents=True, exist_ok=True)
    config_text = config.to_yaml()
    write_text_atomic(config_path, config_text)
    experiment = Experiment(
        run_dir=run_dir,
        name=config.name,
        description=config.description or "",
        provenance=provenance(),
        split={"spec": config.split if isinstance(config.split, str) else "inline",
               "mode": config.split_spec().mode.value, "manifest": SPLIT_FILE},
        test_sets={name: test.model_dump() for name, test in config.tests.items()},
        methods={name: previous_entries.get(name) or MethodEntry(name) for name in config.methods},
        config_text=config_text,
    )
    write_experiment(experiment)
    return experiment


def _corpus_section(section: Any) -> Any:
    """A ``data`` or corpus section under today's names (``source`` -> ``corpus``, and the old names in its
    options and synthetic settings)."""
    section = renamed_keys(section, OLD_CORPUS_KEYS, EXPERIMENT_YAML, warn=False)
    if isinstance(section, dict):
        inner = {"options": OLD_OPTION_KEYS, "synth": OLD_SYNTH_KEYS}
        section = {k: renamed_keys(v, inner[k], EXPERIMENT_YAML, warn=False) if k in inner else v
                   for k, v in section.items()}
    return section


def _today(key: str, section: Any) -> Any:
    """Data section ``key`` of an experiment.yaml as this version writes it: a run directory started before
    the vocabulary rename (``source``, a split's ``sources``, ``methods``) resumes."""
    if key == "data":
        return _corpus_section(section)
    if key == "corpora" and isinstance(section, dict):
        return {name: _corpus_section(corpus) for name, corpus in section.items()}
    if key == "split":
        return renamed_keys(section, OLD_SPEC_KEYS, EXPERIMENT_YAML, warn=False)
    return section


def _data(config: ExperimentConfig, run_dir: Path, experiment: Experiment, progress: bool,
          executor: Executor | None = None) -> Path:
    """synth -> prepare -> split; returns the split manifest's path."""
    data = config.data
    root = data.root
    if root is None:
        root = run_dir / "data"
        log.info("no corpus root: writing the synthetic FF++ into %s", root)
        synthesize(root, data.synth.synth_config(), progress=progress)
    elif not root.is_dir():
        raise CrossfakeError(f"data root {root} is not a folder (expected a corpus in the {data.corpus} layout)")
    started = time.perf_counter()
    records = get_corpus(data.corpus, root, **data.options).records()
    if data.limit is not None:
        records = first_per_manipulation(records, data.limit)
    prepared = config.prepare.cache or run_dir / "prepared"
    summary = prepare(records, prepared, config.prepare.prepare_config(), progress=progress, executor=executor)
    if summary.manifest_rows == 0:
        raise CrossfakeError(f"no face crop was found in {root}: see {prepared / 'failures.parquet'}")
    log.info("prepared %d crops in %.1f s", summary.manifest_rows, time.perf_counter() - started)

    spec = config.split_spec()
    split_path = run_dir / SPLIT_FILE
    # The other corpora's test rows (cross-dataset), under split = the corpus's name.
    corpora, experiment.corpora = prepare_corpora(config, run_dir, progress, executor)
    # Rewritten only when it changes: a finished method's run records the split's sha256.
    if not split_path.is_file() or not split_path.with_suffix(".json").is_file() or not _same_rows(
            read_manifest(split_path), append_corpus_rows(assign_splits(read_manifest(prepared), spec), corpora)):
        split_manifest(prepared / "manifest.parquet", spec, split_path)
        if corpora is not None:
            write_manifest(append_corpus_rows(read_manifest(split_path), corpora), split_path)
    split = read_manifest(split_path)
    _check_split(split, config, split_path)
    audit = audit_split(split)
    if audit.leaks and spec.mode == SplitMode.identity:
        log.warning("the identity split shares people between splits:\n%s", audit.format())
    experiment.split["audit"] = audit.to_dict()
    write_experiment(experiment)
    return split_path


def _check_split(split: pd.DataFrame, config: ExperimentConfig, where: Path) -> None:
    """Every split a method trains or selects on, and every test set, has rows: fail before training."""
    counts = split.groupby([SPLIT_COLUMN, "manipulation"], observed=True).size()
    present = {s for s, _ in counts.index}
    needed: set[str] = set()
    for name in config.methods:
        data = config.train_config(name, manifest=where, out=where.parent, check_paths=False).data
        needed |= {data.train_split, data.val_split}
    problems = [f"no rows in split {s!r}" for s in sorted(needed - present)]
    for test_name, test in config.tests.items():
        missing = [m for m in test.manipulations if (test.split, m) not in counts.index]
        if missing:
            problems.append(f"test set {test_name}: no {test.split!r} rows of {missing}")
    if problems:
        table = counts.unstack(fill_value=0).to_string() if len(counts) else "(no split rows)"
        raise CrossfakeError(
            f"the split of {where} cannot run this experiment: {'; '.join(problems)}. Rows per split x manipulation:\n"
            f"{table}\n(too few videos or identities for the split's shares? use more videos, e.g. "
            "--set data.synth.videos=40)"
        )


def _same_rows(old: pd.DataFrame, new: pd.DataFrame) -> bool:
    keys = ["sample_id", SPLIT_COLUMN]
    return len(old) == len(new) and old[keys].astype(str).reset_index(drop=True).equals(
        new[keys].astype(str).reset_index(drop=True)
    )


def _check_method_dirs(config: ExperimentConfig, run_dir: Path, names: Sequence[str]) -> None:
    """Refuse, before anything is written, to run entries whose folder holds a run trained with other
    settings: the experiment's table would mix two configs (a finished entry would be retrained and fail)."""
    problems = []
    for name in names:
        train_config = config.train_config(name, manifest=run_dir / SPLIT_FILE, out=run_dir / METHODS_DIR / name,
                                           check_paths=False)
        try:
            changed = config_changes(train_config)
        except CrossfakeError as e:
            problems.append(f"{name} ({e})")
            continue
        if changed:
            problems.append(f"{name} (changed: {', '.join(changed)})")
    if problems:
        raise CrossfakeError(
            f"{run_dir}: method entries were trained with other settings than asked for now: {'; '.join(problems)}. "
            f"Their results would mix two configs: choose a new output folder, or delete {METHODS_DIR}/<entry> "
            "to train the entry afresh."
        )


def _run_method(config: ExperimentConfig, name: str, run_dir: Path, split_path: Path,
                progress: bool, executor: Executor | None = None) -> MethodEntry:
    """Train (or resume) one entry and score its test sets; the entry's record."""
    method_dir = run_dir / METHODS_DIR / name
    train_config = config.train_config(name, manifest=split_path, out=method_dir)
    (method_dir / ERROR_FILE).unlink(missing_ok=True)
    info = train(train_config, progress=progress)

    started = time.perf_counter()
    split = read_manifest(split_path)
    # With an executor its workers load the run (score_run loads it here only on the CPU, for the parts).
    loaded = load_for_scoring(method_dir) if executor is None else method_dir
    predictions: dict[str, Path] = {}
    for split_name in sorted({t.split for t in config.tests.values()}):
        sets = {k: t for k, t in config.tests.items() if t.split == split_name}
        manipulations = sorted({m for t in sets.values() for m in t.manipulations})
        rows = split.loc[(split[SPLIT_COLUMN] == split_name).fillna(False).to_numpy()
                         & split["manipulation"].isin(manipulations).to_numpy()]
        scored = score_run(loaded, rows, method_dir / f"predictions_{split_name}.parquet", progress=progress,
                           executor=executor)
        for test_name, test in sets.items():
            path = method_dir / f"predictions_{test_name}.parquet"
            write_parquet_atomic(path, scored[scored["manipulation"].isin(test.manipulations)].reset_index(drop=True))
            predictions[test_name] = path
    test_time = time.perf_counter() - started

    record = info.record
    return MethodEntry(
        name=name,
        status=Status.done,
        method=record.method,
        run_dir=method_dir,
        parameters=record.parameters,
        wall_time_s={"train": record.wall_time_s, "test": round(test_time, 3)},
        threshold=info.threshold,
        threshold_rule=record.threshold_rule,
        val_auc=info.val_auc,
        columns=record.prediction_columns if record.prediction_columns is not None else PredictionColumns(),
        predictions=predictions,
    )


def _finished(config: ExperimentConfig, name: str, run_dir: Path, split_path: Path,
              entry: MethodEntry) -> bool:
    """Whether entry ``name`` has every test set's predictions, made with the config asked for now."""
    if entry.status != Status.done or not set(entry.predictions) >= set(config.tests):
        return False
    if not all(p.is_file() for p in entry.predictions.values()):
        return False
    method_dir = run_dir / METHODS_DIR / name
    try:
        trained = read_run_info(method_dir).config
    except CrossfakeError:
        return False
    return not trained.differences(config.train_config(name, manifest=split_path, out=method_dir).resolved())
