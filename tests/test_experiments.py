"""`crossfake run`, `ablate` and `leakage` end to end on a small synthetic FF++ with tiny models."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from crossfake.cli.main import main
from crossfake.data.preprocess.run import crop_spec_of_manifest, read_prepare_config
from crossfake.data.synth import SynthConfig, synthesize
from crossfake.experiments import ExperimentConfig, read_experiment, run_experiment, shipped_experiments
from crossfake.experiments.studies import (
    AblationConfig,
    LeakageConfig,
    resolve_study_path,
    run_ablation,
    run_leakage,
)
from crossfake.inference.detect import crop_spec_for_run
from crossfake.runs.directory import read_run_info
from crossfake.utils.errors import CrossfakeError
from crossfake.utils.shipped import shipped_names


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """A synthetic FF++ (24 originals x 4 frames), a shared crop cache and a feature cache."""
    root = tmp_path_factory.mktemp("experiments")
    data = synthesize(root / "ffpp", SynthConfig(n_videos=24, n_frames=4, size=192, seed=3))
    return data, root / "prepared", root / "features"


def experiment(corpus: tuple[Path, Path, Path], **changes: Any) -> dict[str, Any]:
    data, prepared, features = corpus
    config = {
        "name": "tiny",
        "data": {"root": str(data)},
        # A corpus given by root is cropped with YuNet by default, whose weights tests may not download;
        # the synthetic faces are found by Haar (what the runner picks for a synthetic corpus it writes).
        "prepare": {"frames": 2, "cache": str(prepared), "workers": 0, "face_detector": "haar"},
        "split": "report1",
        "defaults": {"method": {"backbone": "tiny"},
                     "train": {"epochs": 1, "batch_size": 8, "num_workers": 0, "cache_dir": str(features)}},
        # lora's `lr: null` takes the method's default: a finished entry must still be recognised as such.
        "methods": {"linear_probe": {}, "lora": {"method": {"r": 2, "alpha": 4}, "train": {"lr": None}}},
        "tests": {"NeuralTextures": ["real", "NeuralTextures"], "Face2Face": ["real", "Face2Face"]},
        "bootstrap": 20,
    }
    return config | changes


# -- configs ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", shipped_names("experiments"))
def test_every_shipped_experiment_parses(name: str) -> None:
    config = ExperimentConfig.from_yaml(name)
    assert config.methods and config.tests
    for entry in config.methods:  # every method's training config is complete and valid
        config.train_config(entry, manifest=Path("split.parquet"), out=Path("out"), check_paths=False)


def test_report_configs_are_the_reports() -> None:
    r1, r2 = ExperimentConfig.from_yaml("report1"), ExperimentConfig.from_yaml("report2")
    methods = {n: r1.train_config(n, manifest=Path("s"), out=Path("o"), check_paths=False).method
               for n in r1.methods}
    assert {m.method for m in methods.values()} == {"linear_probe", "lora", "visual_prompt", "vlm_zero_shot",
                                                    "vlm_qlora"}
    assert (methods["lora"].r, methods["lora"].alpha, methods["lora"].dropout) == (32, 64, 0.05)
    assert methods["lora"].backbone == "openai/clip-vit-base-patch32"
    assert set(r1.tests) == {"NeuralTextures", "Face2Face"}
    assert r1.split_spec().manipulations["real"].as_tuple() == (80, 10, 10)
    lora = r2.train_config("lora", manifest=Path("s"), out=Path("o"), check_paths=False).method
    assert (lora.r, lora.alpha, lora.dropout) == (8, 64, 0.05)
    assert r2.split_spec().manipulations["real"].as_tuple() == (70, 20, 10)
    assert "demo" in shipped_experiments()


@pytest.mark.parametrize("name", shipped_names("studies"))
def test_every_shipped_study_parses(name: str) -> None:
    data = yaml.safe_load(resolve_study_path(name).read_text())
    cls = AblationConfig if "grid" in data or "sweeps" in data else LeakageConfig
    study = cls.from_yaml(name)
    if isinstance(study, AblationConfig):
        assert len(study.cells()) == 27 + 2  # the grid, plus the fractions other than the base's 100%
        assert len(study.to_experiment().methods) == 29
    else:  # every arm of every seed is a valid experiment, the reference among the arms
        experiments = study.experiments(Path("runs") / name)
        assert {arm for arm, _ in experiments} == set(study.arms) and study.reference in study.arms
        assert {study.test} == {t for e in experiments.values() for t in e.tests}


@pytest.mark.slow  # runs experiments (or builds their corpus)
@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"methods": {"lora": {"method": {"rank": 8}}}}, r"methods.lora \(from lora\).*rank: Extra inputs"),
        ({"methods": {"nope": {}}}, r"no training config at nope"),
        ({"tests": {"X": ["real", "Deepfakes"]}}, r"tests.X: manipulations \['Deepfakes'\] are not in the split spec"),
        ({"tests": {"X": ["NeuralTextures"]}}, r"needs 'real' and at least one manipulation"),
        ({"split": "nosuchspec"}, r"no split spec at nosuchspec \(shipped: "),
        ({"colour": "blue"}, r"colour: unknown key"),
    ],
)
def test_config_errors_name_the_key(corpus, change: dict, message: str) -> None:
    with pytest.raises(CrossfakeError, match=message):
        ExperimentConfig.parse(experiment(corpus, **change), where="exp.yaml")


def _renamed_config(old: bool) -> dict[str, Any]:
    """An experiment with every renamed key, in the old vocabulary (source/sources/methods) or today's."""
    corpus, manipulations, manipulation_list = ("source", "sources", "methods") if old else (
        "corpus", "manipulations", "manipulations")
    return {
        "name": "renamed",
        "data": {corpus: "ffpp", "options": {"compression": "c23", manipulation_list: ["FaceSwap", "NeuralTextures"]}},
        "split": "report2",
        "defaults": {"method": {"backbone": "tiny"}},
        "methods": {"linear_probe": {}},
        "tests": {"NT": {"split": "test", manipulations: ["real", "NeuralTextures"]}},
        "corpora": {
            "other": {"root": "/corpora/other", corpus: "folder",
                      "options": {manipulation_list: ["Swap"], ("dataset" if old else "corpus"): "other"}},
            "synth-b": {"synth": {"seed": 2, manipulation_list: ["Deepfakes", "FaceSwap"]}},
        },
    }


def test_old_key_names_still_load(caplog) -> None:
    """Configs written before the vocabulary rename (`source:`, a test set's `sources:`, `methods` of the
    synthetic settings and adapter options) validate to the same config, with a warning."""
    new = ExperimentConfig.parse(_renamed_config(old=False))
    with caplog.at_level("WARNING", logger="crossfake"):
        old = ExperimentConfig.parse(_renamed_config(old=True))
    assert old == new
    assert new.data.corpus == "ffpp" and new.data.options["manipulations"] == ["FaceSwap", "NeuralTextures"]
    assert new.tests["NT"].manipulations == ["real", "NeuralTextures"]
    assert new.corpora["other"].corpus == "folder" and new.corpora["other"].fake_manipulations() == ["Swap"]
    assert new.tests["synth-b"].manipulations == ["real", "Deepfakes", "FaceSwap"]
    assert new.corpora["other"].options["corpus"] == "other"  # the folder adapter's name for its corpus
    for old_name, new_name in (("source", "corpus"), ("sources", "manipulations"), ("methods", "manipulations"),
                               ("dataset", "corpus")):
        assert f"`{old_name}` is the old name of `{new_name}`" in caplog.text
    # The `NAME: [...]` shorthand of a test set is today's `manipulations`.
    assert ExperimentConfig.parse(_renamed_config(old=False) | {"tests": {"NT": ["real", "NeuralTextures"]}}) == new


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"tests": {"NT": {"sources": ["real", "NeuralTextures"], "manipulations": ["real", "NeuralTextures"]}}},
         r"tests.NT: test set gives both `sources` \(the old name\) and `manipulations`"),
        ({"data": {"source": "ffpp", "corpus": "ffpp"}}, r"data: data gives both `source` .* and `corpus`"),
        ({"data": {"options": {"methods": ["FaceSwap"], "manipulations": ["FaceSwap"]}}},
         r"data: data options gives both `methods` .* and `manipulations`"),
        ({"corpora": {"x": {"root": "/x", "source": "folder", "corpus": "folder"}}},
         r"corpora.x: corpus gives both `source` .* and `corpus`"),
        ({"corpora": {"x": {"synth": {"methods": ["FaceSwap"], "manipulations": ["FaceSwap"]}}}},
         r"corpus synth gives both `methods` .* and `manipulations`"),
    ],
)
def test_old_and_new_key_together_is_an_error(change: dict, message: str) -> None:
    with pytest.raises(CrossfakeError, match=message):
        ExperimentConfig.parse(_renamed_config(old=False) | change, where="exp.yaml")


def test_missing_experiment_and_bad_data_root(tmp_path: Path) -> None:
    with pytest.raises(CrossfakeError, match=r"no experiment config at nope.yaml \(shipped: .*report1"):
        ExperimentConfig.from_yaml("nope.yaml")
    assert main(["run", "report2", "--data", str(tmp_path / "missing")]) == 2


# -- run ------------------------------------------------------------------------------------------------


@pytest.mark.slow  # runs experiments (or builds their corpus)
def test_run_resumes_and_survives_a_failing_method(corpus, tmp_path: Path, capsys) -> None:
    config = ExperimentConfig.parse(experiment(corpus))
    run_dir = tmp_path / "run"

    def fail_lora(name: str) -> None:
        if name == "lora":
            raise RuntimeError("boom")

    result = run_experiment(config, run_dir, progress=False, on_method=fail_lora)
    assert result.failed() == ["lora"]
    assert result.entries["lora"].error == "RuntimeError: boom"
    assert "RuntimeError: boom" in (run_dir / "methods" / "lora" / "error.log").read_text()
    probe = result.entries["linear_probe"]
    assert probe.status == "done" and probe.parameters["trainable"] > 0
    assert set(probe.predictions) == {"NeuralTextures", "Face2Face"}
    for name in ("experiment.yaml", "experiment.json", "split.parquet", "report/report.html", "report/report.md"):
        assert (run_dir / name).is_file(), name
    assert "boom" in (run_dir / "report" / "report.md").read_text()
    # `crossfake detect` with a method of the run crops as the run's data was prepared.
    info = read_run_info(run_dir / "methods" / "linear_probe")
    spec, where = crop_spec_for_run(info)
    assert where.startswith("the run (") and spec == read_prepare_config(corpus[1] / "prepare.json").crop
    # Runs of crossfake 0.1 recorded no spec: it is found through the split manifest's origin.
    assert crop_spec_of_manifest(info.config.data.manifest) == (spec, corpus[1] / "prepare.json")

    # The second run redoes nothing that finished: only the failed entry runs.
    probe_files = {p: p.stat().st_mtime_ns for p in (run_dir / "methods" / "linear_probe").rglob("*") if p.is_file()}
    ran: list[str] = []
    result = run_experiment(config, run_dir, progress=False, on_method=ran.append)
    assert ran == ["lora"] and not result.failed()
    assert {p: p.stat().st_mtime_ns for p in probe_files} == probe_files
    assert read_experiment(run_dir).entries["lora"].status == "done"
    assert not (run_dir / "methods" / "lora" / "error.log").exists()

    ran.clear()
    run_experiment(config, run_dir, progress=False, on_method=ran.append, report=False)
    assert ran == []

    # Changing a finished entry's setting is refused before anything runs, naming the entry and the key;
    # the finished entry keeps its record (it is not retrained, nor marked failed).
    changed = ExperimentConfig.parse(experiment(corpus, methods={"linear_probe": {}, "lora": {"method": {"r": 4}}}))
    written = {name: (run_dir / name).read_bytes() for name in ("experiment.yaml", "experiment.json", "split.parquet")}
    with pytest.raises(CrossfakeError, match=r"trained with other settings.*lora \(changed: [^)]*method\.r\)"):
        run_experiment(changed, run_dir, progress=False, report=False, on_method=ran.append)
    assert ran == [] and read_experiment(run_dir).entries["lora"].status == "done"
    assert {name: (run_dir / name).read_bytes() for name in written} == written  # nothing was rewritten
    # ... unless only the other entries run.
    run_experiment(changed, run_dir, progress=False, report=False, on_method=ran.append, only=["linear_probe"])
    assert ran == []

    # Other data settings on the same run directory: an error before anything runs.
    other = ExperimentConfig.parse(experiment(corpus, split="report2",
                                              tests={"NeuralTextures": ["real", "NeuralTextures"]}))
    with pytest.raises(CrossfakeError, match="other split settings"):
        run_experiment(other, run_dir, progress=False)


@pytest.mark.slow  # runs experiments (or builds their corpus)
def test_run_cli(corpus, tmp_path: Path, capsys) -> None:
    path = tmp_path / "exp.yaml"
    config = experiment(corpus)
    config["methods"] = {"linear_probe": {}}
    config["data"] = {"root": "placeholder"}
    path.write_text(yaml.safe_dump(config))
    code = main(["run", str(path), "--data", str(corpus[0]), "--out", str(tmp_path / "r"), "--no-progress"])
    out = capsys.readouterr().out
    assert code == 0
    assert "linear_probe" in out and "NeuralTextures" in out and "report.html" in out
    record = json.loads((tmp_path / "r" / "experiment.json").read_text())
    assert record["format"] == "crossfake-experiment/1"
    assert yaml.safe_load((tmp_path / "r" / "experiment.yaml").read_text())["data"]["root"] == str(corpus[0])


@pytest.mark.slow  # runs experiments (or builds their corpus)
def test_too_small_a_split_fails_before_training(corpus, tmp_path: Path) -> None:
    config = ExperimentConfig.parse(experiment(corpus, split={"manipulations": {"real": {"train": 90, "val": 10},
                                                                               "FaceSwap": {"train": 100},
                                                                               "NeuralTextures": {"test": 100},
                                                                               "Face2Face": {"test": 100}}}))
    with pytest.raises(CrossfakeError, match=r"no 'test' rows of \['real'"):
        run_experiment(config, tmp_path / "run", progress=False)


# -- studies --------------------------------------------------------------------------------------------


@pytest.mark.slow  # runs experiments (or builds their corpus)
def test_ablation_grid(corpus, tmp_path: Path) -> None:
    study = AblationConfig.parse(
        {"name": "grid", "experiment": experiment(corpus, methods={"lora": {"method": {"r": 2, "alpha": 4}}}),
         "method": "lora", "test": "NeuralTextures",
         "grid": {"method.r": [2, 4], "method.alpha": [4]}, "sweeps": {"data.train_fraction": [0.5]}},
        where="study",
    )
    assert list(study.cells()) == ["r2-alpha4", "r4-alpha4", "train_fraction0p5"]
    table = run_ablation(study, tmp_path / "grid", progress=False)
    assert len(table) == 3 and (table["status"] == "done").all()
    assert table.set_index("cell").loc["train_fraction0p5", ["r", "alpha"]].tolist() == [2, 4]  # the base's
    assert table["val_auc"].is_monotonic_decreasing  # ranked on validation
    assert table.loc[table["cell"] == "r4-alpha4", "trainable"].item() > table.loc[
        table["cell"] == "r2-alpha4", "trainable"].item()
    for name in ("ablation.csv", "ablation.md", "ablation.json", "figures/frame_auc.png", "report/report.html"):
        assert (tmp_path / "grid" / name).is_file(), name


@pytest.mark.slow  # runs experiments (or builds their corpus)
def test_leakage_study(corpus, tmp_path: Path, capsys) -> None:
    path = tmp_path / "leak.yaml"
    path.write_text(yaml.safe_dump({"name": "leak", "experiment": experiment(corpus), "method": "linear_probe",
                                    "test": "NeuralTextures"}))
    assert main(["leakage", str(path), "--out", str(tmp_path / "leak"), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "# Identity leakage: leak" in printed and "- `linear_probe`: linear_probe on tiny" in printed

    table = pd.read_csv(tmp_path / "leak" / "leakage.csv")
    assert list(table["arm"]) == ["frames-all", "frames", "videos", "identity"]
    assert (table["status"] == "done").all() and table["frame_auc"].between(0, 1).all()
    by = table.set_index("arm")
    # Each arm's audit of the test set: what it shares with training.
    assert by.loc["frames-all", "manipulation_frames_in_train"] > 0
    assert by.loc["frames-all", "people_in_train"] == by.loc["frames-all", "people"]
    assert by.loc["frames", "manipulation_frames_in_train"] == 0 and by.loc["frames", "videos_in_train"] > 0
    assert by.loc["videos", "videos_in_train"] == 0 and by.loc["videos", "people_in_train"] > 0
    assert by.loc["identity", ["people_in_train", "videos_in_train", "manipulation_frames_in_train"]].sum() == 0
    gaps = by["frame_auc"] - by.loc["identity", "frame_auc"]
    assert by["frame_gap"].to_numpy() == pytest.approx(gaps.to_numpy())
    record = json.loads((tmp_path / "leak" / "leakage.json").read_text())
    assert [r["arm"] for r in record["summary"]] == list(table["arm"]) and record["methods"]["linear_probe"]
    # Every arm is an experiment run of its own, all cropped once into the shared cache.
    for arm in table["arm"]:
        run = read_experiment(tmp_path / "leak" / arm / "seed0")
        assert run.entries["linear_probe"].status == "done"
        assert yaml.safe_load((run.run_dir / "experiment.yaml").read_text())["prepare"]["cache"] == str(corpus[1])

    # A second run resumes: nothing is trained or scored again.
    predictions = {p: p.stat().st_mtime_ns for p in (tmp_path / "leak").rglob("predictions_*.parquet")}
    assert len(predictions) == 2 * 4  # per arm: the scored test split and the test set
    config = LeakageConfig.from_yaml(path)
    run_leakage(config, tmp_path / "leak", progress=False)
    assert {p: p.stat().st_mtime_ns for p in predictions} == predictions
