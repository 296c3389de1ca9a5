"""The Ray executor on a local Ray instance: the same results as the local executor, and resuming.

One Ray instance (2 CPUs) serves the whole module; a driver in a subprocess connects to it to be killed.
The functions of this module run inside Ray workers, which cannot import it: they are pickled by value.
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
from functools import partial
from pathlib import Path

import pandas as pd
import pytest
import ray

from crossfake.cli.main import main
from crossfake.data.manifest import read_manifest
from crossfake.data.synth import SynthConfig, synthesize
from crossfake.executors import LocalExecutor, RayExecutor, WorkerDied, get_executor, map_shards
from crossfake.utils.errors import CrossfakeError

ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])

pytestmark = pytest.mark.slow  # starting Ray alone takes 10-20 s

N_VIDEOS = 8  # --limit 4: 4 originals and 4 FaceSwap fakes, one of them corrupt
PREPARE_FLAGS = ("--limit", "4", "--frames", "3", "--size", "48", "--face-detector", "haar")


@pytest.fixture(scope="module")
def ray_address(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A local Ray instance for the module; its address, for drivers in other processes."""
    assert not ray.is_initialized()
    # One logical GPU (no device: a resource to schedule by), to check that GPU tasks reuse workers.
    ray.init(address="local", num_cpus=2, num_gpus=1, include_dashboard=False, logging_level=logging.WARNING)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small synthetic FF++ (8 originals, FaceSwap), one fake corrupt so that failures are compared too."""
    root = synthesize(
        tmp_path_factory.mktemp("synth") / "ffpp",
        SynthConfig(n_videos=8, n_frames=6, manipulations=("FaceSwap",)),
        workers=0,
    )
    videos = root / "manipulated_sequences/FaceSwap/c23/videos"
    (videos / "001_007.mp4").write_bytes(b"\x00" * 512)
    return root


@pytest.fixture(scope="module")
def reference(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The corpus prepared by the local executor, in this process."""
    out = tmp_path_factory.mktemp("local") / "out"
    assert main(["prepare", str(corpus), "--out", str(out), "--workers", "0", *PREPARE_FLAGS]) == 0
    return out


def assert_same_outputs(out: Path, reference: Path) -> None:
    """Same manifest and failures (rows, order, values), same crop files with the same bytes."""
    manifest = read_manifest(out)
    pd.testing.assert_frame_equal(manifest, read_manifest(reference))
    pd.testing.assert_frame_equal(
        pd.read_parquet(out / "failures.parquet"), pd.read_parquet(reference / "failures.parquet")
    )
    crops = sorted(p.relative_to(out) for p in (out / "crops").rglob("*") if p.is_file())
    assert crops == sorted(p.relative_to(reference) for p in (reference / "crops").rglob("*") if p.is_file())
    assert crops == sorted(Path(p) for p in manifest["path"])  # no stray or temporary file
    for p in crops:
        assert (out / p).read_bytes() == (reference / p).read_bytes(), p


# -- the executor interface -----------------------------------------------------------------------------


def _setup() -> None:
    os.environ["CROSSFAKE_TEST_SETUPS"] = str(int(os.environ.get("CROSSFAKE_TEST_SETUPS", "0")) + 1)


def _triple(x: int) -> tuple[int, str | None, int]:
    return 3 * x, os.environ.get("CROSSFAKE_TEST_SETUPS"), os.getpid()


def _fail_on(bad: int, x: int) -> int:
    if x == bad:
        raise ValueError(f"bad item {x}")
    return x


def _die_on(bad: int, x: int) -> int:
    if x == bad:
        os._exit(3)
    return x


def test_ray_maps_like_local_and_runs_setup_once_per_worker(ray_address: str) -> None:
    local = sorted(r[0] for r in LocalExecutor(0).map_unordered(_triple, range(10), setup=_setup))
    remote = list(RayExecutor(chunksize=3).map_unordered(_triple, range(10), setup=_setup))
    assert sorted(r[0] for r in remote) == local == [3 * x for x in range(10)]
    assert {r[1] for r in remote} == {"1"}  # setup ran first in each worker, and once
    assert os.getpid() not in {r[2] for r in remote}
    assert "CROSSFAKE_TEST_SETUPS" not in os.environ  # never in the driver
    # GPU tasks: workers are kept (Ray's default ends one after each GPU task), so a model loaded by the
    # first task on a GPU serves the next ones.
    gpu = list(RayExecutor(num_cpus=0.5, num_gpus=0.5).map_unordered(_triple, range(6), setup=_setup))
    assert sorted(r[0] for r in gpu) == [3 * x for x in range(6)] and len({r[2] for r in gpu}) <= 3


def test_ray_raises_what_the_task_raised_and_a_dead_worker_as_worker_died(ray_address: str) -> None:
    with pytest.raises(ValueError, match="bad item 3"):
        list(RayExecutor().map_unordered(partial(_fail_on, 3), range(6)))
    with pytest.raises(WorkerDied, match="Ray worker died"):
        list(RayExecutor(max_retries=0).map_unordered(partial(_die_on, 1), range(3)))


def test_missing_ray_and_bad_options_are_clear_errors(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, tmp_path: Path
) -> None:
    with pytest.raises(CrossfakeError, match="unknown executor 'spark'"):
        get_executor("spark")
    with pytest.raises(CrossfakeError, match="Ray address 'head'"):
        RayExecutor("head")
    assert main(["prepare", str(tmp_path), "--out", str(tmp_path / "o"), "--address", "auto"]) == 2
    assert "--address needs --executor ray" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now fails as if it were not installed
    with pytest.raises(CrossfakeError, match=r"pip install 'crossfake\[distributed\]'"):
        get_executor("ray")
    assert main(["prepare", str(tmp_path), "--out", str(tmp_path / "o"), "--executor", "ray"]) == 2
    assert "crossfake[distributed]" in capsys.readouterr().err


# -- prepare --------------------------------------------------------------------------------------------


def test_prepare_with_ray_equals_local(
    ray_address: str, corpus: Path, reference: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A relative --out: Ray workers do not run in this folder, so tasks must get absolute paths.
    monkeypatch.chdir(tmp_path)
    args = ["prepare", str(corpus), "--out", "ray_out", *PREPARE_FLAGS, "--executor", "ray"]
    assert main(args) == 0
    info = json.loads((tmp_path / "ray_out/prepare.json").read_text())
    assert info["executor"]["name"] == "ray"
    assert (info["summary"]["done"], info["summary"]["failed"]) == (N_VIDEOS - 1, 1)  # the corrupt fake
    assert info["config_hash"] == json.loads((reference / "prepare.json").read_text())["config_hash"]
    assert_same_outputs(tmp_path / "ray_out", reference)
    assert main(args) == 0  # everything done: skipped
    assert json.loads((tmp_path / "ray_out/prepare.json").read_text())["summary"]["skipped"] == N_VIDEOS


_DRIVER = """
import sys, time
import crossfake.data.preprocess.run as run
from crossfake.cli.main import main

original = run._worker_run

def slow(task):  # defined in __main__, so Ray ships it by value; `original` is crossfake's own
    time.sleep(0.4)
    return original(task)

run._worker_run = slow
root, out, address, *flags = sys.argv[1:]
sys.exit(main(["prepare", root, "--out", out, *flags, "--executor", "ray", "--address", address]))
"""


def _shards(out: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in (out / ".shards").glob("*.parquet")}


def test_killed_ray_job_resumes_with_only_the_missing_videos(
    ray_address: str, corpus: Path, reference: Path, tmp_path: Path
) -> None:
    out = tmp_path / "killed"
    driver = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(_DRIVER), str(corpus), str(out), ray_address, *PREPARE_FLAGS],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 180  # a loaded CI machine starts a Ray driver slowly
    while len(_shards(out) if out.exists() else {}) < 2 and driver.poll() is None:
        assert time.monotonic() < deadline, "the Ray driver finished no video in 180 s"
        time.sleep(0.05)
    assert driver.poll() is None, driver.stderr.read().decode()[-2000:]
    driver.send_signal(signal.SIGKILL)  # the driver dies: Ray ends the job and kills its tasks
    driver.wait()
    driver.stderr.close()
    # A task that was finishing may still write its shard: wait until nothing changes.
    finished, stable_since = _shards(out), time.monotonic()
    while time.monotonic() - stable_since < 1.5:
        time.sleep(0.1)
        if (now := _shards(out)) != finished:
            finished, stable_since = now, time.monotonic()
    assert 2 <= len(finished) < N_VIDEOS and not (out / "manifest.parquet").exists()

    assert main(["prepare", str(corpus), "--out", str(out), *PREPARE_FLAGS, "--executor", "ray"]) == 0
    summary = json.loads((out / "prepare.json").read_text())["summary"]
    assert summary["skipped"] == len(finished)
    assert summary["done"] + summary["failed"] == N_VIDEOS - len(finished)
    after = _shards(out)
    assert {name: after[name] for name in finished} == finished  # finished videos were not redone
    assert not list(out.rglob("*.tmp*"))
    assert_same_outputs(out, reference)


# -- tables by video (batch scoring) --------------------------------------------------------------------


def _score(shard: pd.DataFrame) -> pd.DataFrame:
    """A stand-in for scoring: a score per row, and how many rows of its video the shard holds."""
    return pd.DataFrame(
        {
            "sample_id": shard["sample_id"],
            "score": shard["x"] * 0.5,
            "video_rows": shard.groupby("video_id")["x"].transform("size"),
        }
    )


def test_map_shards_keeps_videos_whole_and_rows_in_order(ray_address: str) -> None:
    videos = [f"v{i % 7}" for i in range(50)]  # interleaved: shards must regroup them
    rows = pd.DataFrame({"video_id": videos, "x": range(50)})
    rows["sample_id"] = [f"{v}/{i:03d}" for i, v in enumerate(videos)]
    local = map_shards(LocalExecutor(0), _score, rows, max_rows=9)
    remote = map_shards(RayExecutor(), _score, rows, max_rows=9)
    pd.testing.assert_frame_equal(remote, local)
    assert local["sample_id"].tolist() == rows["sample_id"].tolist()
    assert (local["score"] == rows["x"] * 0.5).all()
    assert (local["video_rows"] == rows.groupby("video_id")["x"].transform("size")).all()
    with pytest.raises(CrossfakeError, match="one row per input row"):
        map_shards(LocalExecutor(0), lambda shard: shard.head(1), rows)
