"""The trainer, run directories, the feature cache and streaming prediction, on a tiny synthetic split.

The data: 64x64 PNG "faces" (a smooth gradient with an elliptic face); fakes carry a one-pixel checker
pattern over the face, which the tiny random CLIP's features separate, so the task is learnable. The
split manifest has train/val/test rows with the manifest's real columns.
"""

from __future__ import annotations

import json
import math
import shutil
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch
import yaml
from PIL import Image
from safetensors.torch import load_file

from crossfake.data.manifest import read_manifest, write_manifest
from crossfake.evaluation.metrics import eer
from crossfake.methods import create_detector, list_methods, method_class, method_config
from crossfake.runs import directory as ckpt
from crossfake.runs.config import TrainConfig, resolve_config_path, shipped_configs
from crossfake.runs.directory import load_run
from crossfake.runs.record import RunRecord
from crossfake.scoring.data import FaceCropDataset
from crossfake.scoring.features import FeatureCache, cache_key
from crossfake.scoring.predict import predict_manifest
from crossfake.training import train
from crossfake.training.data import read_training_manifest, training_rows
from crossfake.utils.config import read_yaml
from crossfake.utils.errors import CrossfakeError

#: (real videos, fake videos) per split; 3 frames each.
VIDEOS = {"train": (6, 6), "val": (3, 3), "test": (3, 3)}
#: Method options the tiny backbone needs (its input is 64 px, smaller than a 120 px visual prompt).
TINY_OPTIONS: dict[str, dict[str, Any]] = {"visual_prompt": {"prompt_size": 24}}
RUN_FILES = {
    "config.yaml",
    "run.json",
    "train.log",
    "val_predictions.parquet",
    "best/model.safetensors",
    "last/model.safetensors",
    "last/training_state.pt",
    "last/state.json",
}


def _face(rng: np.random.Generator, fake: bool, size: int = 64) -> Image.Image:
    y, x = np.mgrid[0:size, 0:size] / (size - 1)
    img = np.stack([0.3 + 0.5 * x, 0.3 + 0.4 * y, 0.5 - 0.2 * x], -1) * rng.uniform(0.7, 1.0, 3)
    face = ((x - 0.5) ** 2 / 0.09 + (y - 0.5) ** 2 / 0.16) < 1
    img[face] = rng.uniform(0.5, 0.9, 3)
    if fake:  # a high-frequency blending artefact over the face
        checker = (np.indices((size, size)).sum(0) % 2)[..., None] * 0.5
        img[face] = np.clip(img + checker, 0, 1)[face]
    img = np.clip(img + rng.normal(0, 0.01, img.shape), 0, 1)
    return Image.fromarray((img * 255).astype(np.uint8))


def make_tiny_split(root: Path, frames: int = 3, seed: int = 0) -> Path:
    """Write crops and a split manifest under ``root``; returns the manifest's path."""
    rng = np.random.default_rng(seed)
    rows = []
    for split, (n_real, n_fake) in VIDEOS.items():
        for label, n in ((0, n_real), (1, n_fake)):
            manipulation = "real" if label == 0 else ("NeuralTextures" if split == "test" else "FaceSwap")
            for v in range(n):
                name = f"{split}{v:02d}"
                video_id = f"tiny/{manipulation}/{name}"
                for f in range(frames):
                    rel = f"crops/{video_id}/{f:06d}.png"
                    (root / rel).parent.mkdir(parents=True, exist_ok=True)
                    _face(rng, bool(label)).save(root / rel)
                    rows.append(
                        {
                            "sample_id": f"{video_id}/{f:06d}",
                            "path": rel,
                            "corpus": "tiny",
                            "manipulation": manipulation,
                            "video_id": video_id,
                            "video_path": f"/videos/{name}.mp4",
                            "frame_idx": f,
                            "label": label,
                            "target_id": name,
                            "source_id": name,
                            "identity_group": name,
                            "official_split": None,
                            "face_x0": 0.0,
                            "face_y0": 0.0,
                            "face_x1": 64.0,
                            "face_y1": 64.0,
                            "det_score": 1.0,
                            "num_faces": 1,
                            "face_detector": "none",
                            "split": split,
                        }
                    )
    path = root / "split.parquet"
    write_manifest(pd.DataFrame(rows), path)
    return path


def tiny_config(
    manifest: Path,
    out: Path,
    cache: Path,
    method: str = "linear_probe",
    method_options: dict[str, Any] | None = None,
    **train: Any,
) -> TrainConfig:
    options = {"epochs": 2, "batch_size": 8, "lr": 1e-2, "num_workers": 0, "cache_dir": str(cache), **train}
    return TrainConfig.parse(
        {
            "method": {"name": method, "backbone": "tiny", **(method_options or {})},
            "data": {"manifest": str(manifest)},
            "train": options,
            "out": str(out),
        }
    )


def run_files(run_dir: Path) -> set[str]:
    return {str(p.relative_to(run_dir)) for p in run_dir.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_split(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="module")
def trained(tiny: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[TrainConfig, Path]:
    """One linear-probe run shared by the read-only tests below."""
    root = tmp_path_factory.mktemp("trained")
    config = tiny_config(tiny, root / "run", root / "cache", epochs=3)
    train(config, progress=False)
    return config, root / "run"


@pytest.fixture
def count_features(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Batch sizes of every backbone forward (``features``) of the feature-cacheable methods."""
    calls: list[int] = []
    for name in list_methods():
        cls = method_class(name)
        if cls.supports_feature_cache:

            def spy(self, inputs, _original=cls.features):
                calls.append(len(inputs))
                return _original(self, inputs)

            monkeypatch.setattr(cls, "features", spy)
    return calls


# -- the run directory ------------------------------------------------------------------------------------


def test_run_dir_holds_exactly_the_expected_files(trained: tuple[TrainConfig, Path]) -> None:
    config, run_dir = trained
    assert run_files(run_dir) == RUN_FILES
    record = json.loads((run_dir / "run.json").read_text())
    assert record["format"] == ckpt.RUN_FORMAT
    assert RunRecord.from_json(record, run_dir / "run.json").to_json() == record  # one typed record, both ways
    assert 0.5 < record["best_val_auc"] <= 1  # the tiny task is learnable
    assert record["best_val_auc"] == max(h["val_auc"] for h in record["history"])
    assert [h["step"] for h in record["history"]] == [5, 10, 15]  # 36 rows / batch 8 -> 5 steps per epoch
    assert record["parameters"]["trainable"] == 33  # Linear(32, 1) on the tiny CLIP's projection
    assert math.isfinite(record["threshold"]) and "EER" in record["threshold_rule"]
    # The stated rule, pinned: the threshold is the EER threshold of the run's own validation predictions.
    val = pd.read_parquet(run_dir / "val_predictions.parquet")
    assert record["threshold"] == eer(val["label"].to_numpy(), val["score"].to_numpy()).threshold
    assert record["threshold"] != 0.5
    assert record["manifest_sha256"] and record["git"] and record["packages"]["torch"]
    assert record["data"]["train"]["rows"] == 36 and record["data"]["val"]["rows"] == 18
    assert record["lr"] == 1e-2 and record["wall_time_s"] > 0
    assert "val AUC" in (run_dir / "train.log").read_text()
    # The saved config is the resolved one and reads back to the same run.
    saved = TrainConfig.from_yaml(run_dir / "config.yaml")
    assert saved.train.lr == 1e-2 and not config.differences(saved)
    # best/ holds the weights of the best step.
    best = load_file(run_dir / "best" / "model.safetensors")
    assert set(best) == {"classifier.weight", "classifier.bias"}


def test_load_run_reproduces_the_end_of_training_val_scores(trained: tuple[TrainConfig, Path]) -> None:
    config, run_dir = trained
    detector, info = load_run(run_dir)
    assert info.val_auc == json.loads((run_dir / "run.json").read_text())["best_val_auc"]
    saved = pd.read_parquet(run_dir / "val_predictions.parquet")
    _, val = training_rows(read_manifest(config.data.manifest), config.data, seed=0)
    for cache in (FeatureCache(config.train.cache_dir), None):  # cached features, and the full forward
        again = predict_manifest(detector, val, config.eval_batch_size, cache=cache, progress=False)
        pd.testing.assert_frame_equal(again, saved)
    assert list(saved.columns) == ["sample_id", "video_id", "corpus", "manipulation", "label", "score", "logit"]
    np.testing.assert_allclose(saved["score"], 1 / (1 + np.exp(-saved["logit"].astype(np.float64))))


def test_the_trainer_never_reads_test_rows(
    tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Garbage test labels: reading them would fail the trainer's label check; the spy sees every row loaded.
    df = read_manifest(tiny)
    test = df["split"] == "test"
    df.loc[test, "label"] = 7
    manifest = tiny.parent / "garbage_test.parquet"
    write_manifest(df, manifest)
    seen: list[str] = []
    original = FaceCropDataset.__init__

    def spy(self, manifest_df, *args, **kwargs):
        seen.extend(manifest_df["sample_id"])
        original(self, manifest_df, *args, **kwargs)

    monkeypatch.setattr(FaceCropDataset, "__init__", spy)
    for cached in (True, False):
        run = tmp_path / f"run_{cached}"
        train(tiny_config(manifest, run, tmp_path / "cache", feature_cache=cached, epochs=1), progress=False)
        assert (run / "run.json").is_file()
    assert seen and not set(seen) & set(df.loc[test, "sample_id"])
    # Test rows are not even read from the Parquet file.
    loaded = read_training_manifest(tiny_config(manifest, tmp_path / "x", tmp_path).data)
    assert set(loaded["split"]) == {"train", "val"} and len(loaded) == (~test).sum()


@pytest.mark.parametrize(
    ("method", "cached", "stop"),
    [("linear_probe", True, 5), ("linear_probe", False, 4), ("lora", False, 5)],
    ids=["feature-cache", "images-stopped-before-validation", "lora-dropout"],
)
def test_resume_ends_with_the_same_weights(
    tiny: Path, tmp_path: Path, method: str, cached: bool, stop: int
) -> None:
    opts = {"feature_cache": cached, "epochs": 2, "grad_accum": 2, "eval_every": 2}  # 3 steps per epoch

    def config(out: str) -> TrainConfig:
        return tiny_config(tiny, tmp_path / out, tmp_path / "cache", method=method, **opts)

    train(config("straight"), progress=False)

    class Stop(Exception):
        pass

    def stop_at(step: int) -> None:
        if step == stop:  # 5: mid epoch 2, after the checkpoint of step 4; 4: before step 4's validation
            raise Stop

    interrupted = config("resumed")
    with pytest.raises(Stop):
        train(interrupted, on_step=stop_at, progress=False)
    state = json.loads((tmp_path / "resumed" / "last" / "state.json").read_text())
    assert state["step"] == stop and not (tmp_path / "resumed" / "run.json").exists()
    assert state["history"][-1]["step"] == (2 if stop == 4 else 4)  # the last validated step
    steps: list[int] = []
    train(interrupted, on_step=steps.append, progress=False)
    assert steps == list(range(stop + 1, 7))  # only the missing steps ran
    assert f"resuming from step {stop}" in (tmp_path / "resumed" / "train.log").read_text()

    for name in ("last/model.safetensors", "best/model.safetensors"):
        a, b = load_file(tmp_path / "straight" / name), load_file(tmp_path / "resumed" / name)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    runs = [json.loads((tmp_path / d / "run.json").read_text()) for d in ("straight", "resumed")]
    for key in ("best_step", "best_val_auc", "history", "threshold"):
        assert runs[0][key] == runs[1][key]
    pd.testing.assert_frame_equal(
        pd.read_parquet(tmp_path / "straight" / "val_predictions.parquet"),
        pd.read_parquet(tmp_path / "resumed" / "val_predictions.parquet"),
    )


def test_processes_wait_for_each_other_as_long_as_train_wait_hours(
    tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from crossfake.training import loop

    handlers: list[Any] = []

    def accelerator(**kwargs: Any) -> None:
        handlers.extend(kwargs["kwargs_handlers"])
        raise KeyboardInterrupt  # stop before anything is written

    monkeypatch.setattr(loop, "Accelerator", accelerator)
    with pytest.raises(KeyboardInterrupt):
        train(tiny_config(tiny, tmp_path / "run", tmp_path / "cache", wait_hours=0.5), progress=False)
    assert [h.timeout for h in handlers] == [timedelta(minutes=30)]
    # How long processes wait is not part of what a run is: a resume may change it.
    a = tiny_config(tiny, tmp_path / "run", tmp_path / "cache")
    assert a.differences(tiny_config(tiny, tmp_path / "run", tmp_path / "cache", wait_hours=12)) == []


def test_max_steps_then_a_longer_run_continues(tiny: Path, tmp_path: Path) -> None:
    short = tiny_config(tiny, tmp_path / "run", tmp_path / "cache", max_steps=2, epochs=1)
    assert train(short, progress=False).record.steps == 2
    steps: list[int] = []
    info = train(
        tiny_config(tiny, tmp_path / "run", tmp_path / "cache", epochs=1),
        on_step=steps.append,
        progress=False,
    )
    assert steps == [3, 4, 5] and info.record.steps == 5


def test_a_run_dir_with_another_config_is_refused(trained: tuple[TrainConfig, Path], tmp_path: Path) -> None:
    config, run_dir = trained
    other = config.model_copy(update={"train": config.train.model_copy(update={"lr": 0.5})})
    with pytest.raises(CrossfakeError, match=r"different config \(changed: train.lr\)"):
        train(other, progress=False)
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(CrossfakeError, match="not a crossfake run directory"):
        train(config.model_copy(update={"out": tmp_path}), progress=False)


def test_a_finished_run_on_a_manifest_with_other_contents_is_refused(tmp_path: Path) -> None:
    """Re-finalising a finished run on a re-split manifest would choose its threshold on other rows."""
    manifest = make_tiny_split(tmp_path / "data")
    config = tiny_config(manifest, tmp_path / "run", tmp_path / "cache", epochs=1)
    train(config, progress=False)
    train(config, progress=False)  # the same run again: re-finalised, nothing refused
    df = read_manifest(manifest)
    write_manifest(df.iloc[1:], manifest)  # same path, one row fewer
    with pytest.raises(CrossfakeError, match=r"different config \(changed: data.manifest \(its contents\)\)"):
        train(config, progress=False)


# -- the feature cache ------------------------------------------------------------------------------------


def test_second_run_hits_the_feature_cache(tiny: Path, tmp_path: Path, count_features: list[int]) -> None:
    train(tiny_config(tiny, tmp_path / "first", tmp_path / "cache", epochs=1), progress=False)
    assert sum(count_features) == 36 + 18  # train and val images, once each
    count_features.clear()
    info = train(
        tiny_config(tiny, tmp_path / "second", tmp_path / "cache", epochs=1, lr=1e-3), progress=False
    )
    assert count_features == []  # no backbone forward at all, not even for the final val predictions
    assert info.record.feature_cache == str(tmp_path / "cache")
    assert len(list((tmp_path / "cache").rglob("*.npy"))) == 2


def test_feature_cache_key_follows_what_the_features_depend_on(tiny: Path, tmp_path: Path) -> None:
    detector = create_detector("linear_probe", backbone="tiny")
    _, val = training_rows(read_manifest(tiny), tiny_config(tiny, tmp_path, tmp_path).data, seed=0)
    key = cache_key(detector, val, "fp32")
    torch.nn.init.normal_(detector.classifier.weight)  # the trained head: irrelevant
    assert cache_key(detector, val, "fp32") == key
    assert cache_key(create_detector("linear_probe", backbone="tiny", lr=0.5), val, "fp32") == key
    assert cache_key(create_detector("linear_probe", backbone="tiny", normalize=True), val, "fp32") != key
    assert cache_key(detector, val, "bf16") != key
    assert cache_key(detector, val.iloc[::-1], "fp32") != key  # row order is part of the key
    with torch.no_grad():
        detector.clip.visual_projection.weight.mul_(2)  # other frozen weights under the same backbone name
    assert cache_key(detector, val, "fp32") != key


# -- data -------------------------------------------------------------------------------------------------


def test_missing_or_corrupt_crops_name_the_file(tiny: Path, tmp_path: Path) -> None:
    df = read_manifest(tiny).head(2).copy()
    df.attrs["root"] = str(tmp_path)
    (tmp_path / df["path"].iloc[0]).parent.mkdir(parents=True)
    (tmp_path / df["path"].iloc[0]).write_bytes(b"not a png")
    dataset = FaceCropDataset(df, lambda im: im)
    with pytest.raises(CrossfakeError, match=rf"{df['path'].iloc[0]}.*corrupt"):
        dataset[0]
    with pytest.raises(CrossfakeError, match=rf"{df['path'].iloc[1]}.*does not exist"):
        dataset[1]


def test_training_rows_subsample_videos_and_frames(tiny: Path, tmp_path: Path) -> None:
    data = TrainConfig.parse(
        {
            "method": {"name": "linear_probe"},
            "data": {"manifest": str(tiny), "train_fraction": 0.5, "max_frames_per_video": 2},
        }
    ).data
    train_rows, val_rows = training_rows(read_manifest(tiny), data, seed=0)
    assert train_rows.groupby("manipulation")["video_id"].nunique().to_dict() == {"FaceSwap": 3, "real": 3}
    assert (train_rows.groupby("video_id").size() == 2).all() and len(val_rows) == 12
    assert set(train_rows["frame_idx"]) == {0, 2}  # evenly spaced: first and last of 3
    assert training_rows(read_manifest(tiny), data, seed=0)[0].equals(train_rows)  # seeded


# -- prediction -------------------------------------------------------------------------------------------


@pytest.fixture
def writer_spy(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Rows per write of every ParquetWriter."""
    rows: list[int] = []

    class Spy(pq.ParquetWriter):
        def write_table(self, table, *args, **kwargs):
            rows.append(table.num_rows)
            super().write_table(table, *args, **kwargs)

    monkeypatch.setattr(pq, "ParquetWriter", Spy)
    return rows


def test_predict_streams_in_batches_and_resumes(
    trained: tuple[TrainConfig, Path], tmp_path: Path, writer_spy: list[int]
) -> None:
    config, run_dir = trained
    detector, _ = load_run(run_dir)
    rows = read_manifest(config.data.manifest)  # all 72 rows, test included: evaluation may read them
    expected = predict_manifest(detector, rows, 4, progress=False)
    out = tmp_path / "preds.parquet"

    calls = {"n": 0}
    original = detector.predict

    def failing(inputs):
        calls["n"] += 1
        if calls["n"] == 7:  # in the second part of 20 rows
            raise KeyboardInterrupt
        return original(inputs)

    detector.predict = failing
    with pytest.raises(KeyboardInterrupt):
        predict_manifest(detector, rows, 4, out=out, part_rows=20, progress=False)
    assert not out.exists() and max(writer_spy) <= 4
    calls["n"] = -1000
    result = predict_manifest(detector, rows, 4, out=out, part_rows=20, progress=False)
    assert calls["n"] == -1000 + 13  # parts 2-4 (52 rows) only: 13 batches of 4
    assert max(writer_spy) <= 4  # never more than one batch of rows in hand
    pd.testing.assert_frame_equal(result, expected)
    pd.testing.assert_frame_equal(pd.read_parquet(out), expected)
    assert [p.name for p in tmp_path.iterdir()] == ["preds.parquet"]  # parts cleaned up


# -- configs ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", shipped_configs())
def test_shipped_configs_parse(name: str, tiny: Path) -> None:
    method = yaml.safe_load(resolve_config_path(name).read_text())["method"]["name"]
    assert method in list_methods(), f"shipped config {name} names the unregistered method {method!r}"
    config = TrainConfig.from_yaml(name, overrides=[f"data.manifest={tiny}"])
    # The seed reports' settings: the method's real backbone, one epoch, an effective batch of 32.
    assert config.method.method == name and config.method.backbone == method_config(name).backbone
    assert "tiny" not in config.method.backbone
    assert config.train.epochs == 1 and config.train.batch_size * config.train.grad_accum == 32
    assert config.out == Path("runs", name).absolute()
    assert TrainConfig.parse(config.to_dict()) == config  # round trip


def test_overrides_and_defaults(tiny: Path) -> None:
    config = TrainConfig.from_yaml(
        "linear_probe",
        overrides=[
            f"data.manifest={tiny}",
            "train.epochs=3",
            "train.lr=null",
            "method.normalize=true",
        ],
    )
    assert config.train.epochs == 3 and config.method.normalize
    assert config.lr == config.method.lr == 1e-3  # null -> the method's default


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["method.name=no_such_method"], r"method: unknown method 'no_such_method'"),
        (["method.r=-1"], r"method: invalid options for method 'linear_probe': r: "),
        (["data.manifest=/nowhere/split.parquet"], r"data.manifest: no manifest at /nowhere/split.parquet"),
        (["train.epochss=2"], r"train.epochss: unknown key"),
        (["train.batch_size=0"], r"train.batch_size: Input should be greater than or equal to 1"),
        (["data.val_split=test"], r"test split may be used neither"),
        (["train.precision=fp8"], r"train.precision: Input should be"),
        (["train"], r"expected KEY=VALUE"),
    ],
)
def test_bad_configs_fail_at_parse_time(tiny: Path, overrides: list[str], message: str) -> None:
    with pytest.raises(CrossfakeError, match=message) as e:
        TrainConfig.from_yaml("linear_probe", overrides=[f"data.manifest={tiny}", *overrides])
    if "=" in overrides[0]:
        assert "linear_probe.yaml is invalid" in str(e.value)  # names the file


def test_negative_lora_rank_fails_at_parse_time(tiny: Path) -> None:
    with pytest.raises(CrossfakeError, match=r"lora.yaml is invalid: method: .*r: .*greater than"):
        TrainConfig.from_yaml("lora", overrides=[f"data.manifest={tiny}", "method.r=-1"])


def test_unknown_config_file(tmp_path: Path) -> None:
    with pytest.raises(CrossfakeError, match="no training config at"):
        TrainConfig.from_yaml(tmp_path / "nope.yaml")
    (tmp_path / "bad.yaml").write_text("method: [unclosed")
    with pytest.raises(CrossfakeError, match="bad.yaml is not valid YAML"):
        TrainConfig.from_yaml(tmp_path / "bad.yaml")
    with pytest.raises(CrossfakeError, match="cannot read .*: Is a directory"):  # every config reader's
        read_yaml(tmp_path)


# -- loading runs -----------------------------------------------------------------------------------------


def test_load_run_rejects_unfinished_old_or_broken_runs(
    trained: tuple[TrainConfig, Path], tmp_path: Path
) -> None:
    _, run_dir = trained
    with pytest.raises(CrossfakeError, match="no run directory"):
        load_run(tmp_path / "missing")
    with pytest.raises(CrossfakeError, match="not a crossfake run directory"):
        load_run(tmp_path)
    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    (copy / "best" / "model.safetensors").unlink()
    with pytest.raises(CrossfakeError, match="missing weights file"):
        load_run(copy)
    record = json.loads((copy / "run.json").read_text())
    (copy / "run.json").write_text(json.dumps({**record, "format": "crossfake-run/0"}))
    with pytest.raises(CrossfakeError, match="incompatible crossfake version"):
        load_run(copy)
    (copy / "run.json").unlink()
    with pytest.raises(CrossfakeError, match="has not finished"):
        load_run(copy)


# -- every registered method ------------------------------------------------------------------------------


@pytest.mark.parametrize("method", list_methods())
def test_every_method_trains_saves_and_loads(method: str, tiny: Path, tmp_path: Path) -> None:
    config = tiny_config(
        tiny,
        tmp_path / "run",
        tmp_path / "cache",
        method=method,
        method_options=TINY_OPTIONS.get(method),
        epochs=1,
        lr=None,
        feature_cache=False,
    )
    info = train(config, progress=False)
    detector, _ = load_run(info.run_dir)
    trainable, _ = detector.parameter_counts()
    # A method with nothing to train (zero-shot) has no optimizer state to resume, so no last/.
    expected = RUN_FILES if trainable else {f for f in RUN_FILES if not f.startswith("last/")}
    assert run_files(info.run_dir) == expected
    _, val = training_rows(read_manifest(tiny), config.data, seed=0)
    again = predict_manifest(detector, val, config.eval_batch_size, progress=False)
    pd.testing.assert_frame_equal(again, pd.read_parquet(info.run_dir / "val_predictions.parquet"))
    assert info.record.parameters["trainable"] == trainable
