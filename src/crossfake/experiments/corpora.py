"""The other corpora of a cross-dataset experiment: read, reduced to what is tested, cropped, added to the split.

Each corpus of ``ExperimentConfig.corpora`` is read by its adapter (or, without a root, synthesized into
``RUN/corpora/<name>/data`` as a second synthetic FF++ with its own seed and settings), reduced to the
videos it tests on (``use``), renamed to the corpus's name (``corpus`` and so every ``video_id``: two
FF++-layout corpora never share an id), and cropped with the experiment's own ``prepare`` settings, so the
detector sees the same crop spec on every corpus. Its crops join the split manifest with
``split = <corpus name>``: never train or val, and scored by the test set of that name.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import pandas as pd

from crossfake.data.corpora import VideoRecord, get_corpus
from crossfake.data.corpora.base import first_per_manipulation
from crossfake.data.manifest import SPLIT_COLUMN, read_manifest, resolve_paths
from crossfake.data.preprocess import prepare
from crossfake.data.synth import synthesize
from crossfake.executors.base import Executor
from crossfake.experiments.config import CorpusSettings, ExperimentConfig
from crossfake.utils.errors import CrossfakeError
from crossfake.utils.logging import get_logger

log = get_logger("experiment.corpora")

CORPORA_DIR = "corpora"


def corpus_dir(run_dir: Path, name: str) -> Path:
    return Path(run_dir) / CORPORA_DIR / name


def corpus_records(
    name: str, corpus: CorpusSettings, run_dir: Path, progress: bool = False
) -> list[VideoRecord]:
    """The videos corpus ``name`` tests on, named after it (``corpus = name``)."""
    root, options = corpus.root, dict(corpus.options)
    if root is None:
        root = corpus_dir(run_dir, name) / "data"
        log.info(
            "corpus %s: no root, writing a synthetic FF++ (seed %d) into %s", name, corpus.synth.seed, root
        )
        synthesize(root, corpus.synth.synth_config(), progress=progress)
        options.setdefault("compression", corpus.synth.compression)
    elif not root.is_dir():
        raise CrossfakeError(
            f"corpus {name}: root {root} is not a folder (expected a {corpus.corpus} corpus)"
        )
    records = get_corpus(corpus.corpus, root, **options).records()
    tested = [r for r in records if r.official_split == "test"]
    if corpus.use == "test" and not tested:
        raise CrossfakeError(
            f"corpus {name} ({corpus.corpus} at {root}) has no official test split; use: all "
            "tests on every video"
        )
    what = "every video"
    if corpus.use == "test" or (corpus.use == "auto" and tested):
        records, what = tested, "its official test split"
    if corpus.limit is not None:
        records = first_per_manipulation(records, corpus.limit)
    fakes = set(corpus.fake_manipulations())
    unexpected = sorted({r.manipulation for r in records if r.label == 1} - fakes)
    if unexpected:
        log.warning(
            "corpus %s: fakes of manipulation(s) %s are not scored (its test set takes %s)",
            name,
            unexpected,
            sorted(fakes),
        )
    log.info("corpus %s: %d videos tested (%s)", name, len(records), what)
    return [dataclasses.replace(r, corpus=name) for r in records]


def prepare_corpora(
    config: ExperimentConfig, run_dir: Path, progress: bool = False, executor: Executor | None = None
) -> tuple[pd.DataFrame | None, dict[str, Any]]:
    """Crop every corpus of ``config`` (in ``executor``'s workers, as the training corpus is); returns their
    rows (``split`` = corpus name, crop paths absolute) and a per-corpus summary for ``experiment.json``.
    ``(None, {})`` for an experiment without corpora."""
    if not config.corpora:
        return None, {}
    frames, summary = [], {}
    for name, corpus in config.corpora.items():
        records = corpus_records(name, corpus, run_dir, progress)
        out = corpus.cache or corpus_dir(run_dir, name) / "prepared"
        result = prepare(records, out, config.prepare.prepare_config(), progress=progress, executor=executor)
        if result.manifest_rows == 0:
            raise CrossfakeError(f"corpus {name}: no face crop was found; see {out / 'failures.parquet'}")
        # prepare() wrote the manifest of exactly these records; the config rejects a cache shared with the
        # training corpus (`prepare.cache`) or with another corpus, whose manifest it would overwrite.
        df = read_manifest(out)
        df = df.assign(path=resolve_paths(df), **{SPLIT_COLUMN: pd.array([name] * len(df), dtype="string")})
        frames.append(df)
        summary[name] = {
            "corpus": corpus.corpus,
            "root": str(corpus.root) if corpus.root else "synthetic",
            "use": corpus.use,
            "tested": "official test split"
            if corpus.use != "all" and all(r.official_split == "test" for r in records)
            else "every video",
            "prepared": str(out),
            "videos": int(df["video_id"].nunique()),
            "frames": len(df),
            "videos_listed": len(records),
        }
    rows = pd.concat(frames, ignore_index=True)
    return rows, summary


def append_corpus_rows(split: pd.DataFrame, corpora: pd.DataFrame | None) -> pd.DataFrame:
    """The split manifest ``split`` with the corpora's rows appended (crop paths relative to ``split``'s
    root, as ``write_manifest`` expects)."""
    if corpora is None:
        return split
    root = Path(split.attrs["root"]).resolve()
    extra = corpora.assign(path=corpora["path"].map(lambda p: os.path.relpath(p, root)))
    clash = sorted(set(extra["sample_id"]) & set(split["sample_id"]))
    if clash:
        raise CrossfakeError(
            f"a corpus shares sample ids with the training corpus, e.g. {clash[0]}: give the "
            "corpus another name"
        )
    out = pd.concat([split, extra[split.columns]], ignore_index=True)
    out.attrs["root"] = str(root)
    return out
