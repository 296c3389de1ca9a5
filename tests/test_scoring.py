"""score_run (the one "score a trained run" call), its crop transform, the device rule, and the feature
cache's memoised frozen-weights digest, on the tiny split of test_training.py."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image, ImageOps
from test_training import make_tiny_split, tiny_config

from crossfake.data.manifest import SPLIT_COLUMN, read_manifest
from crossfake.methods import create_detector
from crossfake.runs.directory import VAL_PREDICTIONS_FILE
from crossfake.scoring import features as features_module
from crossfake.scoring import predict as predict_module
from crossfake.scoring.device import resolve_device
from crossfake.scoring.features import FeatureCache, cache_key, frozen_weights_digest
from crossfake.scoring.predict import _fingerprint
from crossfake.scoring.run import ScoringRun, load_for_scoring, score_run
from crossfake.training import train
from crossfake.utils import workers as workers_module
from crossfake.utils.errors import CrossfakeError


def mirror(image: Image.Image) -> Image.Image:
    """A crop transform (module level, so loader processes could pickle it)."""
    return ImageOps.mirror(image)


def darker(image: Image.Image) -> Image.Image:
    return image.point(lambda v: v // 2)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A trained linear probe (feature-cacheable) and its split manifest."""
    root = tmp_path_factory.mktemp("scoring")
    manifest = make_tiny_split(root / "data")
    train(tiny_config(manifest, root / "run", root / "cache", epochs=2), progress=False)
    return root / "run", manifest


def _split(manifest: Path, name: str) -> pd.DataFrame:
    rows = read_manifest(manifest)
    return rows.loc[rows[SPLIT_COLUMN] == name]


def test_score_run_reproduces_the_training_val_scores(run: tuple[Path, Path], tmp_path: Path) -> None:
    run_dir, manifest = run
    expected = pd.read_parquet(run_dir / VAL_PREDICTIONS_FILE)
    out = tmp_path / "val.parquet"
    got = score_run(run_dir, _split(manifest, "val"), out, progress=False)
    pd.testing.assert_frame_equal(got, expected)
    pd.testing.assert_frame_equal(pd.read_parquet(out), expected)
    # A loaded run is reused as is, and the image path (no cache) gives the same scores.
    loaded = load_for_scoring(run_dir, device="cpu")
    uncached = score_run(loaded, _split(manifest, "val"), feature_cache=False, batch_size=5, progress=False)
    pd.testing.assert_frame_equal(uncached, expected, check_exact=False, atol=1e-5)


def test_detail_columns_of_a_detector_that_does_not_journal_are_written(
    run: tuple[Path, Path], tmp_path: Path
) -> None:
    """Detail columns reach the file on the plain (per-part) path too, even when a first batch has
    nothing in a column (null type) and later batches do."""
    run_dir, manifest = run
    loaded = load_for_scoring(run_dir, device="cpu")
    detector = loaded.detector
    assert not detector.journal_predictions
    plain = detector.predict_details
    calls = iter(range(100))

    def with_note(inputs):
        logits, details = plain(inputs)
        first = next(calls) == 0
        return logits, {**details, "note": [None if first else f"batch of {len(logits)}"] * len(logits)}

    detector.predict_details = with_note
    out = tmp_path / "val.parquet"
    got = score_run(loaded, _split(manifest, "val"), out, feature_cache=False, batch_size=5, progress=False)
    assert got["note"].isna().sum() == 5 and got["note"].notna().sum() == len(got) - 5
    pd.testing.assert_frame_equal(pd.read_parquet(out), got)


def test_score_run_takes_a_manifest_file(run: tuple[Path, Path]) -> None:
    run_dir, manifest = run
    got = score_run(run_dir, manifest, progress=False)
    assert got["sample_id"].tolist() == read_manifest(manifest)["sample_id"].tolist()


def test_score_run_uses_the_runs_feature_cache_unless_told_not_to(
    run: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    run_dir, manifest = run
    roots: list[Path] = []
    original = FeatureCache.get

    def spy(self: FeatureCache, *args, **kwargs):
        roots.append(self.root)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(FeatureCache, "get", spy)
    loaded = load_for_scoring(run_dir)
    rows = _split(manifest, "val")
    score_run(loaded, rows, progress=False)
    assert roots == [loaded.info.config.train.cache_dir]
    score_run(loaded, rows, feature_cache=False, progress=False)
    assert len(roots) == 1
    own = FeatureCache(run_dir.parent / "other-cache")
    score_run(loaded, rows, feature_cache=own, progress=False)
    assert roots[-1] == own.root and own.misses == 1


def test_the_crop_transform_scores_the_transformed_crops(run: tuple[Path, Path], tmp_path: Path) -> None:
    """Scoring with ``transform=mirror`` equals scoring mirrored copies of the crops written to disk."""
    run_dir, manifest = run
    rows = _split(manifest, "test")
    mirrored = rows.copy()
    mirrored["path"] = [f"mirrored/{i}.png" for i in range(len(rows))]
    mirrored.attrs["root"] = str(tmp_path)
    (tmp_path / "mirrored").mkdir()
    for path, new in zip(rows["path"], mirrored["path"], strict=True):
        mirror(Image.open(Path(rows.attrs["root"]) / path)).save(tmp_path / new)

    loaded = load_for_scoring(run_dir)
    cache = FeatureCache(tmp_path / "cache")
    got = score_run(loaded, rows, transform=mirror, feature_cache=cache, progress=False)
    assert cache.hits == cache.misses == 0  # the cache holds features of the stored crops: bypassed
    expected = score_run(loaded, mirrored, feature_cache=False, progress=False)
    pd.testing.assert_frame_equal(got, expected)
    plain = score_run(loaded, rows, feature_cache=False, progress=False)
    assert not got["logit"].equals(plain["logit"])


def test_the_crop_transform_is_part_of_the_resume_fingerprint(run: tuple[Path, Path]) -> None:
    run_dir, manifest = run
    loaded = load_for_scoring(run_dir)
    rows = _split(manifest, "test").reset_index(drop=True)
    prints = {
        name: _fingerprint(loaded.detector, rows, "fp32", 100, transform)
        for name, transform in {"none": None, "mirror": mirror, "darker": darker}.items()
    }
    assert len(set(prints.values())) == 3
    assert _fingerprint(loaded.detector, rows, "fp32", 100, mirror) == prints["mirror"]  # deterministic


def test_one_device_rule(run: tuple[Path, Path]) -> None:
    auto = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device(None).type == resolve_device("auto").type == auto
    assert resolve_device("cpu") == torch.device("cpu")
    loaded = load_for_scoring(run[0], device="cpu")
    assert isinstance(loaded, ScoringRun) and loaded.device == torch.device("cpu")
    assert next(loaded.detector.parameters()).device.type == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(CrossfakeError, match="no CUDA device"):
            resolve_device("cuda")
        with pytest.raises(CrossfakeError, match="no CUDA device"):
            score_run(run[0], run[1], device="cuda")


# -- the feature cache's frozen-weights digest -------------------------------------------------------------


@pytest.fixture
def hashes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Number of frozen tensors hashed, per full hash of a detector's frozen weights."""
    calls: list[int] = []
    original = features_module._hash_tensors

    def spy(frozen):
        calls.append(len(frozen))
        return original(frozen)

    monkeypatch.setattr(features_module, "_hash_tensors", spy)
    return calls


def test_a_second_lookup_does_not_rehash_the_frozen_weights(
    run: tuple[Path, Path], tmp_path: Path, hashes: list[int]
) -> None:
    _, manifest = run
    rows = _split(manifest, "val")
    detector = create_detector("linear_probe", backbone="tiny")
    cache = FeatureCache(tmp_path / "cache")
    first = cache.get(detector, rows, batch_size=8, num_workers=0, progress=False)
    second = cache.get(detector, rows, batch_size=8, num_workers=0, progress=False)
    assert (cache.misses, cache.hits) == (1, 1) and (first == second).all()
    assert len(hashes) == 1 and hashes[0] > 0
    key = cache_key(detector, rows, "fp32")
    with torch.no_grad():
        torch.nn.init.normal_(detector.classifier.weight)  # the trainable head: not in the digest
    assert cache_key(detector, rows, "fp32") == key and len(hashes) == 1
    # Another detector object (same weights) hashes once for itself, and gets the same digest.
    other = create_detector("linear_probe", backbone="tiny")
    assert frozen_weights_digest(other) == frozen_weights_digest(detector) and len(hashes) == 2


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda d: d.clip.visual_projection.weight.mul_(2), id="in place"),
        pytest.param(
            lambda d: d.clip.load_state_dict(
                {
                    **d.clip.state_dict(),
                    "visual_projection.weight": torch.zeros_like(d.clip.visual_projection.weight),
                }
            ),
            id="load_state_dict",
        ),
        pytest.param(lambda d: d.clip.visual_projection.to(torch.float64), id="dtype"),
        pytest.param(lambda d: d.clip.visual_projection.weight.requires_grad_(True), id="made trainable"),
    ],
)
def test_a_changed_frozen_weight_is_rehashed(change, run: tuple[Path, Path], hashes: list[int]) -> None:
    _, manifest = run
    rows = _split(manifest, "val")
    detector = create_detector("linear_probe", backbone="tiny")
    key = cache_key(detector, rows, "fp32")
    with torch.no_grad():
        change(detector)
    assert cache_key(detector, rows, "fp32") != key
    assert len(hashes) == 2


def test_parts_and_journals_from_before_the_column_rename_resume(
    run: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An interrupted scoring run whose part files (and journals) have the old ID columns (``dataset``,
    ``method``) resumes: its parts are kept and merged under today's names with the parts scored now."""
    run_dir, manifest = run
    loaded = load_for_scoring(run_dir, device="cpu")
    rows = _split(manifest, "val").reset_index(drop=True)
    expected = score_run(loaded, rows, feature_cache=False, batch_size=4, progress=False)
    out = tmp_path / "val.parquet"

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(predict_module, "_merge_parts", interrupted)
    with pytest.raises(KeyboardInterrupt):
        score_run(loaded, rows, out, feature_cache=False, batch_size=4, part_rows=4, progress=False)
    monkeypatch.undo()
    parts = sorted((tmp_path / ".val.parquet.parts").glob("[0-9]*.parquet"))
    assert len(parts) == -(-len(rows) // 4) > 2
    old = {"corpus": "dataset", "manipulation": "method"}
    for path in parts[:-1]:  # written before the rename; the last part is scored again
        table = pq.read_table(path)
        pq.write_table(table.rename_columns([old.get(n, n) for n in table.column_names]), path)
    parts[-1].unlink()
    got = score_run(loaded, rows, out, feature_cache=False, batch_size=4, part_rows=4, progress=False)
    pd.testing.assert_frame_equal(got, expected)
    assert list(pd.read_parquet(out).columns) == list(expected.columns)

    # A journal (a detector that journals its answers) with rows of both vocabularies reads as today's.
    journal = tmp_path / "part.jsonl"
    first, second = expected.iloc[:2].to_dict("records"), expected.iloc[2:3].to_dict("records")
    lines = [{old.get(k, k): v for k, v in r.items()} for r in first] + second
    journal.write_text("".join(json.dumps(r) + "\n" for r in lines))
    table = pa.concat_tables(predict_module._journal_tables(journal, 2)).to_pandas()
    pd.testing.assert_frame_equal(table, expected.iloc[:3], check_dtype=False)


# -- worker processes ---------------------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:This DataLoader will create")  # 4 workers on this machine
@pytest.mark.parametrize(("cpus", "workers"), [(1, 0), (2, 1), (5, 4), (64, 4)])
def test_one_default_worker_rule(cpus: int, workers: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every pool (prepare's videos, the loaders) defaults to every available CPU but one, at most 4."""
    from crossfake.data.preprocess.run import PrepareConfig
    from crossfake.scoring.data import make_loader

    monkeypatch.setattr(workers_module, "available_cpus", lambda: cpus)
    assert workers_module.default_workers() == workers
    assert PrepareConfig().workers == workers
    assert make_loader(list(range(4)), 2).num_workers == workers


@pytest.mark.filterwarnings("ignore:This DataLoader will create")  # created, never iterated
@pytest.mark.parametrize(("cpus", "workers"), [(1, 0), (5, 4), (16, 15), (64, workers_module.MAX_WORKERS)])
def test_loaders_feeding_a_gpu_take_every_cpu_but_one(cpus: int, workers: int, monkeypatch) -> None:
    """A GPU outruns ~250 crops/s per loader process (benchmarks/bench_data_path.py): no cap of 4 there."""
    from crossfake.scoring.data import make_loader

    monkeypatch.setattr(workers_module, "available_cpus", lambda: cpus)
    assert workers_module.default_workers(gpu=True) == workers
    assert make_loader(list(range(4)), 2, gpu=True).num_workers == workers
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert make_loader(list(range(4)), 2).num_workers == workers  # default: a GPU where CUDA is visible
    assert make_loader(list(range(4)), 2, gpu=False).num_workers == min(4, cpus - 1)  # scoring on the CPU
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")  # four processes launched on this machine share its CPUs
    assert workers_module.default_workers(gpu=True) == max(0, min(workers_module.MAX_WORKERS, cpus // 4 - 1))
