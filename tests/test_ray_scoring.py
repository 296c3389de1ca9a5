"""Batch scoring with an executor (a local Ray instance, a process pool, this process): the same predictions
as scoring without one, the feature cache shared by the workers, resume after a killed job, and
``crossfake evaluate --executor ray``.

One Ray instance (2 CPUs) serves the whole module; a driver in a subprocess connects to it to be killed.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest
import ray
from test_training import make_tiny_split, tiny_config

from crossfake.cli.main import main
from crossfake.data.manifest import read_manifest
from crossfake.executors import LocalExecutor, RayExecutor
from crossfake.scoring import predict as predict_module
from crossfake.scoring.features import FeatureCache
from crossfake.scoring.predict import predict_manifest
from crossfake.scoring.run import load_for_scoring, score_run
from crossfake.training import train
from crossfake.utils.errors import CrossfakeError

pytestmark = pytest.mark.slow  # starting Ray alone takes 10-20 s

#: Small parts and batches, so that 72 rows make 9 parts (and part boundaries fall inside videos).
PART_ROWS, BATCH = 8, 4


@pytest.fixture(scope="module")
def ray_address() -> str:
    """A local Ray instance for the module; its address, for drivers in other processes."""
    assert not ray.is_initialized()
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level=logging.WARNING)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A trained linear probe (feature-cacheable) and its split manifest (72 rows of 24 videos)."""
    root = tmp_path_factory.mktemp("ray_scoring")
    manifest = make_tiny_split(root / "data")
    train(tiny_config(manifest, root / "run", root / "cache", epochs=1), progress=False)
    return root / "run", manifest


@pytest.fixture(scope="module")
def reference(run: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    """Every row scored in this process without an executor (images, no feature cache)."""
    run_dir, manifest = run
    out = tmp_path_factory.mktemp("reference") / "preds.parquet"
    return score_run(run_dir, read_manifest(manifest), out, feature_cache=False, batch_size=BATCH,
                     part_rows=PART_ROWS, progress=False)


def _score(run: tuple[Path, Path], out: Path | None, executor, **options) -> pd.DataFrame:
    run_dir, manifest = run
    options = {"feature_cache": False, **options}
    return score_run(run_dir, read_manifest(manifest), out, batch_size=BATCH, part_rows=PART_ROWS,
                     progress=False, executor=executor, **options)


def test_executors_give_the_predictions_of_scoring_here(
    ray_address: str, run: tuple[Path, Path], reference: pd.DataFrame, tmp_path: Path
) -> None:
    for name, executor in (("local", LocalExecutor(workers=0)), ("ray", RayExecutor())):
        out = tmp_path / f"{name}.parquet"
        got = _score(run, out, executor)
        pd.testing.assert_frame_equal(got, reference)  # exact: same rows, order, dtypes and values
        pd.testing.assert_frame_equal(pd.read_parquet(out), reference)
        assert not (tmp_path / f".{out.name}.parts").exists()
        # Without an output file: one part, in tasks of 72/16 rows rounded up to whole batches (8).
        pd.testing.assert_frame_equal(_score(run, None, executor), reference)
    run_dir, manifest = run
    loaded = load_for_scoring(run_dir, device="cpu")  # a loaded run: its workers load the same checkpoint
    got = score_run(loaded, read_manifest(manifest), None, batch_size=BATCH, feature_cache=False,
                    progress=False, executor=RayExecutor())
    pd.testing.assert_frame_equal(got, reference)


def test_the_feature_cache_is_shared_by_the_workers(
    ray_address: str, run: tuple[Path, Path], tmp_path: Path
) -> None:
    here = _score(run, tmp_path / "here.parquet", None, feature_cache=FeatureCache(tmp_path / "cache_here"))
    cache = FeatureCache(tmp_path / "cache_ray")
    got = _score(run, tmp_path / "ray.parquet", RayExecutor(), feature_cache=cache)
    pd.testing.assert_frame_equal(got, here)  # features extracted in the same batches as here
    entries = sorted(cache.root.rglob("*.npy"))
    assert len(entries) == 9  # one per task (a part here), written by the workers into one folder
    assert not list(cache.root.rglob("*.tmp*"))
    stamps = [p.stat().st_mtime_ns for p in entries]
    again = _score(run, tmp_path / "again.parquet", RayExecutor(), feature_cache=cache)  # every task hits
    pd.testing.assert_frame_equal(again, here)
    assert sorted(cache.root.rglob("*.npy")) == entries
    assert [p.stat().st_mtime_ns for p in entries] == stamps


DRIVER = """
import sys, time
from crossfake.data.manifest import read_manifest
from crossfake.executors import RayExecutor
from crossfake.scoring import predict
from crossfake.scoring.run import score_run

write = predict._write_tables

def slow_write(path, tables):  # two parts a second, so that the job is killed half way
    write(path, tables)
    print(time.strftime("%X"), "part", path.name, flush=True)
    time.sleep(0.5)

predict._write_tables = slow_write
run_dir, manifest, out, address = sys.argv[1:]
print(time.strftime("%X"), "driver started", flush=True)
score_run(run_dir, read_manifest(manifest), out, batch_size={batch}, part_rows={part_rows},
          feature_cache=False, progress=False, executor=RayExecutor(address))
"""


def test_a_killed_ray_job_resumes_at_its_missing_parts(
    ray_address: str, run: tuple[Path, Path], reference: pd.DataFrame, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    run_dir, manifest = run
    out = tmp_path / "preds.parquet"
    parts = tmp_path / f".{out.name}.parts"
    script = tmp_path / "driver.py"
    script.write_text(textwrap.dedent(DRIVER.format(batch=BATCH, part_rows=PART_ROWS)))
    proc = subprocess.Popen(
        [sys.executable, str(script), str(run_dir), str(manifest), str(out), ray_address],
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    try:
        deadline = time.monotonic() + 180  # a loaded CI machine starts a Ray driver slowly
        while len(list(parts.glob("[0-9]*.parquet"))) < 3:
            assert proc.poll() is None, "the scoring job ended before it could be killed"
            assert time.monotonic() < deadline, "the scoring job wrote no parts in 180 s"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    finished = {p.name for p in parts.glob("[0-9]*.parquet")}
    assert 3 <= len(finished) < 9 and not out.exists()

    written: list[str] = []
    write = predict_module._write_tables

    def counting(path: Path, tables) -> None:
        written.append(path.name)
        write(path, tables)

    monkeypatch.setattr(predict_module, "_write_tables", counting)
    got = _score(run, out, RayExecutor())
    assert sorted(written) == sorted({f"{s:012d}.parquet" for s in range(0, 72, PART_ROWS)} - finished)
    pd.testing.assert_frame_equal(got, reference)
    pd.testing.assert_frame_equal(pd.read_parquet(out), reference)


def test_evaluate_with_the_ray_executor_equals_the_local_cli(
    ray_address: str, run: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir, _ = run
    common = ["evaluate", str(run_dir), "--split", "all", "--bootstrap", "0", "--no-progress",
              "--batch-size", str(BATCH), "--device", "cpu"]
    assert main([*common, "--out", str(tmp_path / "local")]) == 0
    assert main([*common, "--out", str(tmp_path / "ray"), "--executor", "ray", "--address", ray_address]) == 0
    pd.testing.assert_frame_equal(
        pd.read_parquet(tmp_path / "ray" / "predictions_all.parquet"),
        pd.read_parquet(tmp_path / "local" / "predictions_all.parquet"),
    )
    record = json.loads((tmp_path / "ray" / "metrics_all.json").read_text())
    assert record["executor"]["name"] == "ray" and record["executor"]["num_gpus"] == 0
    assert json.loads((tmp_path / "local" / "metrics_all.json").read_text())["executor"]["name"] == "local"
    assert main([*common, "--out", str(tmp_path / "bad"), "--address", ray_address]) != 0
    assert "--address needs --executor ray" in capsys.readouterr().err


def test_an_executor_in_other_processes_needs_a_loader(run: tuple[Path, Path]) -> None:
    run_dir, manifest = run
    detector = load_for_scoring(run_dir, device="cpu").detector
    with pytest.raises(CrossfakeError, match="needs a loader"):
        predict_manifest(detector, read_manifest(manifest), BATCH, executor=LocalExecutor(workers=2),
                         progress=False)


def test_a_journalled_detector_keeps_its_journal_with_an_executor(run: tuple[Path, Path], tmp_path: Path) -> None:
    """A detector that journals (a VLM) through an executor: each batch reaches the part's journal in row
    order, a failed job resumes at its first row not journalled, and the file equals scoring here."""
    run_dir, manifest = run
    rows = read_manifest(manifest)
    detector = load_for_scoring(run_dir, device="cpu").detector
    detector.journal_predictions = True  # as the VLMs set it
    plain = detector.predict_details
    calls: list[int] = []
    fail_at: list[int] = []

    def noted(inputs):
        calls.append(len(calls))
        if fail_at and len(calls) == fail_at[0]:
            raise RuntimeError("the model server went away")
        logits, details = plain(inputs)
        return logits, {**details, "note": [f"batch {len(calls)}"] * len(logits)}

    detector.predict_details = noted

    def score(out: Path, executor) -> pd.DataFrame:
        return predict_manifest(detector, rows, BATCH, out=out, part_rows=12, progress=False, executor=executor)

    here = score(tmp_path / "here.parquet", None)
    calls.clear()
    fail_at.append(8)  # batch 8 fails: parts 0 (3 batches) and 12 (3) are done, part 24 has 1 batch journalled
    out = tmp_path / "preds.parquet"
    with pytest.raises(RuntimeError, match="went away"):
        score(out, LocalExecutor(workers=0))
    parts = tmp_path / f".{out.name}.parts"
    assert sorted(p.name for p in parts.iterdir()) == [
        "000000000000.parquet", "000000000012.parquet", "000000000024.jsonl", "fingerprint.json"]
    assert len((parts / "000000000024.jsonl").read_text().splitlines()) == BATCH
    calls.clear()
    fail_at.clear()
    got = score(out, LocalExecutor(workers=0))
    assert len(calls) == (72 - 24 - BATCH) // BATCH  # only the batches not journalled
    # The notes count batches per call, so they differ; everything else is the same.
    pd.testing.assert_frame_equal(got.drop(columns="note"), here.drop(columns="note"))
    assert got["note"].notna().all() and got.columns.tolist() == here.columns.tolist()


class RecordingExecutor(LocalExecutor):
    """This process, noting every task it is given."""

    def __init__(self) -> None:
        super().__init__(workers=0)
        self.tasks: list = []

    def map_unordered(self, fn, items, *, setup=None):
        items = list(items)
        self.tasks += items
        return super().map_unordered(fn, items, setup=setup)


def test_tasks_hold_the_batches_of_scoring_here(run: tuple[Path, Path], tmp_path: Path) -> None:
    """Tasks start where this process starts a batch (at the part's start, in steps of whole batches), and
    with cached features they extract on the grid of one extraction of all rows: so the batches, and the
    scores, are the same even where a model's output depends on its batch's size (CPU kernels, bf16)."""
    run_dir, manifest = run
    rows = read_manifest(manifest)
    for cache in (False, True):
        executor = RecordingExecutor()
        score_run(run_dir, rows, tmp_path / f"preds{cache}.parquet", batch_size=BATCH, part_rows=10, task_rows=5,
                  progress=False, executor=executor,
                  feature_cache=FeatureCache(tmp_path / "cache") if cache else False)
        spans = [(t.part, t.first, t.stop) for t in executor.tasks]
        parts = [(s, min(s + 10, 72)) for s in range(0, 72, 10)]
        # tasks of 5 rows rounded up to 2 batches (8 rows), from each part's start
        assert spans == [(s, a, min(a + 8, e)) for s, e in parts for a in range(s, e, 8)]
        for t in executor.tasks:
            if cache:  # widened to whole batches of the grid from row 0
                assert t.lo % BATCH == 0 and t.lo <= t.first
                assert t.lo + len(t.rows) == min(-(-t.stop // BATCH) * BATCH, 72)
            else:
                assert t.lo == t.first and len(t.rows) == t.stop - t.first
