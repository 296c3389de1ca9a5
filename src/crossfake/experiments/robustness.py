"""Robustness study: a trained run's test AUC under the DeeperForensics perturbations, level by level.

The test crops of a trained run (the rows of one split of its manifest, or of another manifest) are
scored clean and under every chosen perturbation and level of :mod:`crossfake.data.perturbations`
(seven types x five levels: 36 *cells* with the clean baseline). Each cell gives frame- and video-level AUC
(a video's score is the mean of its frame scores) with percentile bootstrap CIs that resample videos,
as everywhere in crossfake (:func:`~crossfake.evaluation.aggregate.evaluate_predictions`), and the drop
from the clean AUC. The perturbation is applied to each decoded crop before the method's own
preprocessing, so the detector sees the distorted face exactly as it would see a distorted input.

**Video compression** needs all of a video's crops at once, so it is a pre-pass: for each video its
crops, in frame order, are encoded as one H.264 clip and decoded back
(:func:`~crossfake.data.perturbations.compress_clip`), written as PNG (lossless: the only loss is the
codec's) under ``OUT/vc_crops/<level>/``, and the cell scores those files. The pre-pass resumes video by
video; the files are removed once the cell is finished (``keep_vc_crops`` keeps them). The other six
types are per-image transforms applied while scoring, seeded per crop (:class:`PerturbTransform`).

**Resuming.** Each cell writes ``OUT/cells/<cell>/predictions.parquet`` (streamed in resumable parts) and
then ``metrics.json``, which marks it finished. A re-run skips every finished cell whose settings (the
run's weights, the rows, the seed, the perturbation's parameter) match, continues an interrupted one, and
redoes a cell whose settings changed. The tables and the figure are rebuilt from the cells at the end of
every run.

Outputs, in ``OUT`` (default ``RUN/robustness``): ``robustness.md`` (frame and video AUC per perturbation
and level, with CIs, and the parameters), ``robustness.csv`` and ``robustness.json`` (one row per cell),
``robustness.png`` (AUC against level, one line per perturbation, the clean AUC dashed; frame and video
panels), and ``cells/``.

Every score goes through :func:`_score`, the one place that knows how a run is scored.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import io
import json
import math
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image
from tqdm.auto import tqdm

from crossfake.data.manifest import SPLIT_COLUMN, read_manifest, resolve_paths
from crossfake.data.perturbations import (
    LEVELS,
    PERTURBATIONS,
    Perturbation,
    PerturbTransform,
    compress_clip,
    parse_levels,
    parse_perturbations,
)
from crossfake.evaluation.aggregate import ALL, evaluate_predictions
from crossfake.executors.base import Executor, LocalExecutor
from crossfake.utils.errors import CrossfakeError
from crossfake.utils.io import (
    atomic_path,
    write_bytes_atomic,
    write_json_atomic,
    write_table_atomic,
    write_text_atomic,
)
from crossfake.utils.logging import get_logger
from crossfake.utils.provenance import file_sha256, provenance

log = get_logger("robustness")

CLEAN = "clean"
ALL_ROWS = "all"
#: Bumped when a perturbation's implementation changes, so finished cells are redone.
PERTURBATION_VERSION = 1
STUDY_FILES = ("robustness.md", "robustness.csv", "robustness.json", "robustness.png")
#: (table key, evaluation level, words)
AUC_LEVELS = (("frame", "frame", "Frame AUC"), ("video", "video_mean", "Video AUC (mean of frame scores)"))


@dataclass(frozen=True)
class ScoreOptions:
    """How the run is scored (as ``crossfake evaluate``): checkpoint, device, batch, loaders, cache."""

    weights: str = "best"
    device: str = "auto"
    batch_size: int | None = None
    num_workers: int | None = None
    feature_cache: bool = True
    progress: bool = True
    #: where the crops are scored (e.g. a :class:`~crossfake.executors.RayExecutor`); None: this process
    executor: Executor | None = None


@dataclass(frozen=True)
class Cell:
    """One perturbation at one level, or the clean baseline (level 0)."""

    code: str
    level: int = 0

    @property
    def name(self) -> str:
        return CLEAN if self.code == CLEAN else f"{self.code}-{self.level}"

    @property
    def perturbation(self) -> Perturbation | None:
        return None if self.code == CLEAN else PERTURBATIONS[self.code]

    @property
    def parameter(self) -> float | None:
        p = self.perturbation
        return None if p is None else p.parameter(self.level)

    def describe(self) -> str:
        p = self.perturbation
        if p is None:
            return "clean (no perturbation)"
        return f"{p.code} ({p.title}), level {self.level}: {p.meaning} {self.parameter:g}"


def study_cells(perturbations: Sequence[Perturbation], levels: Sequence[int]) -> list[Cell]:
    """The clean baseline, then each perturbation at each level."""
    return [Cell(CLEAN), *(Cell(p.code, level) for p in perturbations for level in levels)]


@dataclass
class RobustnessResult:
    """What :func:`run_robustness` did: the table (one row per cell), where it wrote, what it scored."""

    table: pd.DataFrame
    out: Path
    scored: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    wall_s: float = 0.0


def run_robustness(
    run_dir: str | Path,
    *,
    out: str | Path | None = None,
    perturbations: str | Sequence[str] | None = None,
    levels: str | Sequence[int] | None = None,
    split: str | None = None,
    manifest: str | Path | None = None,
    manipulations: str | Sequence[str] | None = None,
    seed: int = 0,
    bootstrap: int = 1000,
    options: ScoreOptions | None = None,
    keep_vc_crops: bool = False,
) -> RobustnessResult:
    """Score the run's test crops clean and under each perturbation and level; write tables and a figure.

    Args:
        run_dir: a finished ``crossfake train`` run.
        out: output folder (default ``run_dir/robustness``).
        perturbations: codes (``"CS,GB"``, a list, or None / ``all``: the seven).
        levels: ``"1,3,5"``, ``"1-5"`` or a list (None: 1..5).
        split: the split scored (default ``test``; ``all``: every row; a manifest without a split column
            is scored whole).
        manifest: score this manifest instead of the run's own.
        manipulations: keep only the rows of these manipulations (the manifest's ``manipulation`` column:
            ``real`` and the fakes' manipulations), e.g. ``"real,FaceSwap"``; None: every row of the split.
        seed: seed of the random perturbations (BW, GNC) and of the bootstrap.
        bootstrap: bootstrap resamples of the CIs (0: none).
        options: scoring options.
        keep_vc_crops: keep the video-compressed crops after their cell is finished.

    Returns:
        A :class:`RobustnessResult`; the files are described in the module docstring.

    Raises:
        CrossfakeError: a bad run, manifest, split, perturbation or level, before anything is scored.
    """
    started = time.perf_counter()
    options = options or ScoreOptions()
    chosen, chosen_levels = parse_perturbations(perturbations), parse_levels(levels)
    if bootstrap < 0:
        raise CrossfakeError(f"--bootstrap must be >= 0, not {bootstrap}")
    info = _run_info(run_dir, options.weights)
    manifest_path = Path(manifest or info.config.data.manifest)
    if manifest_path.is_dir():
        manifest_path = manifest_path / "manifest.parquet"
    rows, split = _select_rows(read_manifest(manifest_path), split, manifest_path, manipulations)
    out = (Path(out) if out is not None else info.run_dir / "robustness").absolute()
    settings = _settings(info, options.weights, manifest_path, split, rows, seed, bootstrap)
    cells = study_cells(chosen, chosen_levels)
    log.info(
        "robustness of %s: %d cells (%s at levels %s, and clean) on %d crops of %d videos (split %s of %s) -> %s",
        info.run_dir,
        len(cells),
        ",".join(p.code for p in chosen),
        ",".join(map(str, chosen_levels)),
        len(rows),
        rows["video_id"].nunique(),
        split,
        manifest_path,
        out,
    )
    result = RobustnessResult(table=pd.DataFrame(), out=out)
    records = []
    for cell in tqdm(cells, desc="robustness", unit="cell", disable=not options.progress):
        record = _finished(out, cell, settings)
        if record is not None:
            log.info("cell %s: finished earlier, skipped", cell.name)
            result.skipped.append(cell.name)
        else:
            record = _run_cell(info, out, cell, rows, settings, seed, bootstrap, options, keep_vc_crops)
            result.scored.append(cell.name)
        records.append(record)
    result.table = robustness_table(records)
    result.wall_s = time.perf_counter() - started
    _write_outputs(out, result, info, manifest_path, split, rows, chosen, chosen_levels, seed, bootstrap,
                   options.executor)
    return result


# -- scoring ------------------------------------------------------------------------------------------


def _score(
    run_dir: Path,
    rows: pd.DataFrame,
    out: Path,
    transform: Callable[[Image.Image], Image.Image] | None,
    options: ScoreOptions,
) -> pd.DataFrame:
    """Predictions of ``rows`` by the run, streamed (resumably) to ``out``; ``transform`` (one decoded RGB
    crop -> RGB crop) is applied to every crop before the method's own preprocessing.

    The one place that scores: :func:`crossfake.scoring.score_run`, the call ``crossfake evaluate`` makes,
    on the run loaded once per (run, weights, device); the run's feature cache only where
    ``options.feature_cache`` (the study turns it off for perturbed crops, whose features are not those
    of the stored crops).
    """
    from crossfake.scoring import score_run

    if options.executor is not None:  # the workers load the run; score_run loads it here on the CPU only
        run: Any = Path(run_dir).resolve()
    else:
        run = _loaded(
            str(Path(run_dir).resolve()), options.weights, options.device, _mtime(run_dir, options.weights)
        )
    return score_run(
        run,
        rows,
        out,
        batch_size=options.batch_size,
        num_workers=options.num_workers,
        feature_cache=None if options.feature_cache else False,
        progress=options.progress,
        transform=transform,
        weights=options.weights,
        device=options.device,
        executor=options.executor,
    )


@functools.lru_cache(maxsize=1)
def _loaded(run_dir: str, weights: str, device: str, mtime: int):
    """The run loaded for scoring, once per (run, weights, device, weights file's modification time)."""
    from crossfake.scoring import load_for_scoring

    return load_for_scoring(run_dir, weights=weights, device=device)


def _mtime(run_dir: str | Path, weights: str) -> int:
    try:
        return (Path(run_dir) / weights / "model.safetensors").stat().st_mtime_ns
    except OSError:
        return 0


def _run_info(run_dir: str | Path, weights: str):
    from crossfake.runs import BEST_DIR, LAST_DIR, read_run_info

    if weights not in (BEST_DIR, LAST_DIR):
        raise CrossfakeError(f"weights must be {BEST_DIR!r} or {LAST_DIR!r}, not {weights!r}")
    return read_run_info(run_dir)


# -- cells --------------------------------------------------------------------------------------------


def _cell_dir(out: Path, cell: Cell) -> Path:
    return out / "cells" / cell.name


def _cell_settings(settings: dict[str, Any], cell: Cell) -> dict[str, Any]:
    return {**settings, "cell": cell.name, "parameter": cell.parameter}


def _finished(out: Path, cell: Cell, settings: dict[str, Any]) -> dict[str, Any] | None:
    """The cell's record if it finished with these settings, else None."""
    path = _cell_dir(out, cell) / "metrics.json"
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if record.get("settings") != _cell_settings(settings, cell):
        log.warning(
            "cell %s: finished with other settings (run, rows, seed or parameters); redoing it", cell.name
        )
        return None
    return record


def _run_cell(
    info: Any,
    out: Path,
    cell: Cell,
    rows: pd.DataFrame,
    settings: dict[str, Any],
    seed: int,
    bootstrap: int,
    options: ScoreOptions,
    keep_vc_crops: bool,
) -> dict[str, Any]:
    folder = _cell_dir(out, cell)
    wanted = _cell_settings(settings, cell)
    try:
        started_with = json.loads((folder / "settings.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        started_with = None
    if started_with != wanted:  # a partial cell of other settings must not be resumed
        shutil.rmtree(folder, ignore_errors=True)
        write_json_atomic(folder / "settings.json", wanted)
    log.info("cell %s: %s", cell.name, cell.describe())
    started = time.perf_counter()
    transform = None
    scored_rows = rows
    vc_folder = out / "vc_crops" / str(cell.level)
    perturbation = cell.perturbation
    if perturbation is not None and perturbation.per_video:
        scored_rows = compress_videos(rows, cell.level, vc_folder, progress=options.progress)
    elif perturbation is not None:
        transform = PerturbTransform(perturbation.code, cell.level, seed)
    if perturbation is not None:  # cached features are those of the stored crops
        options = dataclasses.replace(options, feature_cache=False)
    preds = _score(info.run_dir, scored_rows, folder / "predictions.parquet", transform, options)
    score_s = time.perf_counter() - started
    evaluation = evaluate_predictions(preds, threshold=info.threshold, n_boot=bootstrap, seed=seed)
    record: dict[str, Any] = {
        "cell": cell.name,
        "perturbation": cell.code,
        "title": "clean" if perturbation is None else perturbation.title,
        "level": cell.level,
        "parameter": cell.parameter,
        "frames": len(preds),
        "videos": int(preds["video_id"].nunique()),
        "score_s": round(score_s, 3),
        **_aucs(evaluation),
        "settings": wanted,
        "evaluation": evaluation.to_dict(curves=False),
    }
    write_json_atomic(folder / "metrics.json", record)
    if perturbation is not None and perturbation.per_video and not keep_vc_crops:
        shutil.rmtree(vc_folder, ignore_errors=True)
        if vc_folder.parent.is_dir() and not any(vc_folder.parent.iterdir()):
            vc_folder.parent.rmdir()
    log.info(
        "cell %s: frame AUC %.4f, video AUC %.4f (%.1f s)",
        cell.name,
        record["frame_auc"],
        record["video_auc"],
        score_s,
    )
    return record


def _aucs(evaluation: Any) -> dict[str, float | None]:
    r = evaluation.results
    out: dict[str, float | None] = {}
    for key, level, _ in AUC_LEVELS:
        hit = r[(r["level"] == level) & (r["group"] == ALL) & (r["metric"] == "auc")]
        values = hit.iloc[0][["value", "ci_low", "ci_high"]].tolist() if len(hit) else [math.nan] * 3
        for suffix, v in zip(("auc", "low", "high"), values, strict=True):
            out[f"{key}_{suffix}"] = None if v is None or not math.isfinite(float(v)) else float(v)
    return out


# -- video compression --------------------------------------------------------------------------------


def compress_videos(
    rows: pd.DataFrame, level: int, folder: str | Path, *, progress: bool = True
) -> pd.DataFrame:
    """``rows`` pointing at their crops after the VC perturbation at ``level``, written under ``folder``.

    Each video's crops, ordered by frame, are one H.264 clip (:func:`compress_clip`); the decoded frames
    are written as PNG, one file per crop (named by a digest of its sample id, in a folder per video),
    each atomically. A video whose files all exist is not redone, so an interrupted pre-pass resumes.

    Returns:
        A copy of ``rows`` (same order, same ``attrs``) whose ``path`` is the absolute path of each
        compressed crop.
    """
    from crossfake.scoring import load_crop

    folder = Path(folder).absolute()  # the rows' paths resolve against the manifest's folder otherwise
    crf = PERTURBATIONS["VC"].parameter(level)
    originals = resolve_paths(rows).to_numpy()
    targets = np.array(
        [
            str(folder / _digest(v)[:16] / f"{_digest(s)[:24]}.png")
            for v, s in zip(rows["video_id"], rows["sample_id"], strict=True)
        ]
    )
    order = ["video_id", *(["frame_idx"] if "frame_idx" in rows.columns else []), "sample_id"]
    ordered = (
        rows.reset_index(drop=True).assign(_position=np.arange(len(rows))).sort_values(order, kind="stable")
    )
    videos = [group["_position"].to_numpy() for _, group in ordered.groupby("video_id", sort=False)]
    sample_ids = rows["sample_id"].astype(str).to_numpy()
    done = 0
    with tqdm(
        total=len(videos), desc=f"VC level {level} (crf {crf:g})", unit="video", disable=not progress
    ) as bar:
        for idx in videos:  # each video's rows, in frame order
            if all(Path(t).is_file() for t in targets[idx]):
                done += 1
            else:
                frames = [load_crop(originals[i], sample_ids[i]) for i in idx]
                for i, image in zip(idx, compress_clip(frames, crf), strict=True):
                    buffer = io.BytesIO()
                    image.save(buffer, format="PNG")
                    write_bytes_atomic(targets[i], buffer.getvalue())
            bar.update(1)
    if done:
        log.info("VC level %d: %d of %d videos compressed earlier", level, done, len(videos))
    out = rows.copy()
    out["path"] = targets
    out.attrs = dict(rows.attrs)
    return out


def _digest(text: str) -> str:
    return hashlib.sha256(str(text).encode()).hexdigest()


# -- rows and settings --------------------------------------------------------------------------------


def _select_rows(
    manifest: pd.DataFrame, split: str | None, where: Path, manipulations: str | Sequence[str] | None = None
) -> tuple[pd.DataFrame, str]:
    """The rows of ``split`` (default test; ``all``: every row), of ``manipulations`` only if given, and the
    split's name."""
    if SPLIT_COLUMN not in manifest.columns:
        if split not in (None, ALL_ROWS):
            raise CrossfakeError(
                f"{where} has no '{SPLIT_COLUMN}' column, so --split {split} is impossible; use --split "
                f"{ALL_ROWS} or a split manifest"
            )
        rows, split = manifest, ALL_ROWS
    else:
        split = split or "test"
        rows = (
            manifest
            if split == ALL_ROWS
            else manifest.loc[(manifest[SPLIT_COLUMN] == split).fillna(False).to_numpy()]
        )
        if rows.empty:
            found = sorted(map(str, manifest[SPLIT_COLUMN].dropna().unique()))
            raise CrossfakeError(f"{where} has no rows in split {split!r} (splits present: {found})")
    if manipulations is not None:
        wanted = (
            [m.strip() for m in manipulations.split(",")]
            if isinstance(manipulations, str)
            else list(manipulations)
        )
        wanted = [m for m in wanted if m]
        present = sorted(map(str, rows["manipulation"].dropna().unique()))
        unknown = [m for m in wanted if m not in present]
        if unknown or not wanted:
            raise CrossfakeError(
                f"--manipulations {','.join(wanted) or '(none)'}: {', '.join(unknown) or 'no manipulation given'}; "
                f"split {split!r} of {where} holds {', '.join(present)}"
            )
        rows = rows.loc[rows["manipulation"].isin(wanted).to_numpy()]
    labels = set(pd.to_numeric(rows["label"], errors="coerce").dropna().astype(int))
    if labels != {0, 1}:
        raise CrossfakeError(
            f"split {split!r} of {where} has {'no' if not labels else 'only ' + ('real' if labels == {0} else 'fake')} "
            "labelled rows; a robustness study measures AUC and needs real and fake crops"
        )
    return rows, split


def _settings(
    info: Any, weights: str, manifest: Path, split: str, rows: pd.DataFrame, seed: int, bootstrap: int
) -> dict[str, Any]:
    """What a finished cell's numbers depend on, besides its own perturbation and level."""
    h = hashlib.sha256()
    for column in ("sample_id", "path", "video_id", "label"):
        h.update("\n".join(rows[column].astype(str)).encode())
    return {
        "run_dir": str(info.run_dir.resolve()),
        "weights": weights,
        "weights_sha256": file_sha256(info.run_dir / weights / "model.safetensors"),
        "manifest": str(manifest.resolve()),
        "split": split,
        "rows_sha256": h.hexdigest(),
        "seed": seed,
        "bootstrap": bootstrap,
        "perturbation_version": PERTURBATION_VERSION,
    }


# -- tables and figure --------------------------------------------------------------------------------

TABLE_COLUMNS = (
    "cell",
    "perturbation",
    "title",
    "level",
    "parameter",
    "frame_auc",
    "frame_low",
    "frame_high",
    "video_auc",
    "video_low",
    "video_high",
    "frame_drop",
    "video_drop",
    "frames",
    "videos",
    "score_s",
)


def robustness_table(records: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """One row per cell (clean first): AUCs with CIs, and the drop from the clean AUC."""
    table = pd.DataFrame(
        [{k: r.get(k) for k in TABLE_COLUMNS if k not in ("frame_drop", "video_drop")} for r in records]
    )
    for key in ("frame", "video"):
        table[f"{key}_auc"] = table[f"{key}_auc"].astype(float)
        clean = table.loc[table["perturbation"] == CLEAN, f"{key}_auc"]
        table[f"{key}_drop"] = table[f"{key}_auc"] - (clean.iloc[0] if len(clean) else math.nan)
    return table[list(TABLE_COLUMNS)]


def _write_outputs(
    out: Path,
    result: RobustnessResult,
    info: Any,
    manifest: Path,
    split: str,
    rows: pd.DataFrame,
    chosen: Sequence[Perturbation],
    levels: Sequence[int],
    seed: int,
    bootstrap: int,
    executor: Executor | None = None,
) -> None:
    table = result.table
    method = info.record.method
    write_table_atomic(out / "robustness.csv", table)
    write_json_atomic(
        out / "robustness.json",
        provenance(
            {
                "run_dir": str(info.run_dir.resolve()),
                "method": method,
                "manifest": str(manifest.resolve()),
                "split": split,
                "frames": len(rows),
                "videos": int(rows["video_id"].nunique()),
                "manipulations": {
                    str(m): int(n) for m, n in rows["manipulation"].value_counts(sort=False).items()
                },
                "seed": seed,
                "bootstrap": bootstrap,
                "levels": list(levels),
                "perturbations": {
                    p.code: {"title": p.title, "parameters": list(p.parameters), "meaning": p.meaning}
                    for p in chosen
                },
                "scored": result.scored,
                "skipped": result.skipped,
                "wall_s": round(result.wall_s, 2),
                "executor": (executor or LocalExecutor()).describe(),
                "rows": _records(table),
            }
        ),
    )
    plot_robustness(
        table, out / "robustness.png", title=f"{method}: AUC under the DeeperForensics perturbations"
    )
    write_text_atomic(
        out / "robustness.md",
        robustness_markdown(table, info, manifest, split, rows, chosen, levels, seed, bootstrap),
    )


def robustness_markdown(
    table: pd.DataFrame,
    info: Any,
    manifest: Path,
    split: str,
    rows: pd.DataFrame,
    chosen: Sequence[Perturbation],
    levels: Sequence[int],
    seed: int,
    bootstrap: int,
) -> str:
    """The study's Markdown: clean AUCs, a frame and a video table (perturbation x level, mean), parameters."""
    from crossfake.evaluation.tables import format_number, format_with_ci, render

    method = info.record.method
    labels = pd.to_numeric(rows["label"], errors="coerce")
    videos = rows.groupby("video_id")["label"].first()
    clean = table[table["perturbation"] == CLEAN].iloc[0]
    lines = [
        f"# Robustness of {method}",
        "",
        f"- run: `{info.run_dir}` (validation AUC {info.val_auc:.4f})",
        f"- crops: split `{split}` of `{manifest}`: {len(rows)} frames ({int((labels == 0).sum())} real, "
        f"{int((labels == 1).sum())} fake) of {len(videos)} videos ({int((videos == 0).sum())} real, "
        f"{int((videos == 1).sum())} fake)",
        "- manipulations: "
        + ", ".join(f"{m} ({n} frames)" for m, n in rows["manipulation"].value_counts(sort=False).items()),
        f"- perturbations: DeeperForensics-1.0 (Jiang et al., CVPR 2020), levels {', '.join(map(str, levels))}; "
        f"seed {seed}",
        f"- AUC [95% CI]: percentile bootstrap over videos ({bootstrap} resamples); video score = mean of its "
        "frame scores",
        "",
        f"**Clean**: frame AUC {format_with_ci(clean['frame_auc'], clean['frame_low'], clean['frame_high'])}, "
        f"video AUC {format_with_ci(clean['video_auc'], clean['video_low'], clean['video_high'])}.",
        "",
    ]
    for key, _, words in AUC_LEVELS:
        body = []
        for p in chosen:
            part = table[table["perturbation"] == p.code].set_index("level")
            cells = [
                format_with_ci(
                    part.at[lv, f"{key}_auc"], part.at[lv, f"{key}_low"], part.at[lv, f"{key}_high"]
                )
                if lv in part.index
                else "-"
                for lv in levels
            ]
            mean = part[f"{key}_auc"].mean()
            body.append(
                [
                    f"{p.code} ({p.title})",
                    *cells,
                    format_number(mean),
                    format_number(mean - clean[f"{key}_auc"], 3) if math.isfinite(mean) else "-",
                ]
            )
        lines += [
            f"## {words} [95% CI]",
            "",
            render(
                ["perturbation", *(f"level {lv}" for lv in levels), "mean", "mean - clean"],
                body,
                fmt="markdown",
            ),
            "",
        ]
    params = [[p.code, p.title, *(f"{p.parameter(lv):g}" for lv in LEVELS), p.meaning] for p in chosen]
    lines += [
        "## Parameters",
        "",
        render(
            ["code", "distortion", *(f"level {lv}" for lv in LEVELS), "parameter"],
            params,
            fmt="markdown",
            align="ll" + "r" * len(LEVELS) + "l",
        ),
        "",
        "DeeperForensics' values (github.com/EndlessSora/DeeperForensics-1.0, `perturbation/`). Each perturbation "
        "is applied to the decoded crop before the method's preprocessing; BW and GB sizes are pixels of a "
        "256 px crop and scale with the crop; JPEG is DeeperForensics' down/up-sampling; VC encodes each "
        "video's crops, in frame order, as one H.264 clip (libx264, preset medium, yuv420p) at the CRF "
        "(see `crossfake.data.perturbations`).",
        "",
        "![AUC against perturbation level](robustness.png)",
        "",
    ]
    return "\n".join(lines)


#: Line colours of the seven perturbations (a colour-blind-safe palette, Okabe & Ito).
COLOURS = {
    "CS": "#E69F00",
    "CC": "#56B4E9",
    "BW": "#009E73",
    "GNC": "#CC79A7",
    "GB": "#0072B2",
    "JPEG": "#D55E00",
    "VC": "#000000",
}
MARKERS = {"CS": "o", "CC": "s", "BW": "^", "GNC": "v", "GB": "D", "JPEG": "P", "VC": "X"}


def plot_robustness(table: pd.DataFrame, path: str | Path, title: str | None = None) -> Path:
    """AUC against level, one line per perturbation, the clean AUC dashed; a frame and a video panel."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11.0, 4.6), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2, sharey=True)
    levels = sorted(int(v) for v in table.loc[table["perturbation"] != CLEAN, "level"].unique()) or list(
        LEVELS
    )
    finite = table[["frame_auc", "video_auc"]].to_numpy(dtype=float)
    finite = finite[np.isfinite(finite)]
    low = min(0.45, float(finite.min()) - 0.03) if finite.size else 0.45
    clean = table[table["perturbation"] == CLEAN]
    for ax, (key, _, words) in zip(axes, AUC_LEVELS, strict=True):
        if len(clean) and math.isfinite(clean.iloc[0][f"{key}_auc"]):
            ax.axhline(
                clean.iloc[0][f"{key}_auc"],
                color="0.25",
                linestyle="--",
                linewidth=1.4,
                label="clean",
            )
        ax.axhline(0.5, color="0.7", linestyle=":", linewidth=1, label="chance")
        for code in dict.fromkeys(table.loc[table["perturbation"] != CLEAN, "perturbation"]):
            part = table[table["perturbation"] == code].sort_values("level")
            ax.plot(
                part["level"],
                part[f"{key}_auc"],
                marker=MARKERS.get(code, "o"),
                color=COLOURS.get(code),
                linewidth=1.6,
                markersize=5,
                label=code,
            )
        clean_auc = clean.iloc[0][f"{key}_auc"] if len(clean) else math.nan
        heading = f"{words}, clean {clean_auc:.3f}" if math.isfinite(clean_auc) else words
        ax.set(xlabel="perturbation level", title=heading, xticks=levels, ylim=(low, 1.0))
        ax.grid(True, alpha=0.3)
    axes[0].set_ylabel("AUC")
    axes[1].legend(loc="center left", bbox_to_anchor=(1.02, 0.5), fontsize="small")
    if title:
        fig.suptitle(title)
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=150)
    return path


def _records(table: pd.DataFrame) -> list[dict[str, Any]]:
    return [
        {
            k: (
                None
                if isinstance(v, float) and not math.isfinite(v)
                else v.item()
                if hasattr(v, "item")
                else v
            )
            for k, v in r.items()
        }
        for r in table.to_dict(orient="records")
    ]


__all__ = [
    "CLEAN",
    "Cell",
    "RobustnessResult",
    "ScoreOptions",
    "compress_videos",
    "plot_robustness",
    "robustness_markdown",
    "robustness_table",
    "run_robustness",
    "study_cells",
]
