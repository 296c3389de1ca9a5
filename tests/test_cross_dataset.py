"""The cross-dataset study: train on a synthetic FF++, test on other corpora (a synthetic stand-in of other
seed and settings, and a Celeb-DF layout of real video files), one table of frame and video AUC with CIs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from test_preprocess import face_video

from crossfake.cli.main import main
from crossfake.data.manifest import read_manifest
from crossfake.data.synth import SynthConfig, synthesize
from crossfake.experiments import ExperimentConfig, read_experiment
from crossfake.experiments.config import with_corpora
from crossfake.experiments.studies import run_cross_dataset
from crossfake.utils.errors import CrossfakeError


@pytest.fixture(scope="module")
def corpora(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A small synthetic FF++ to train on, a Celeb-DF v2 layout (8 face videos, 4 on its test list), caches."""
    root = tmp_path_factory.mktemp("cross")
    ffpp = synthesize(
        root / "ffpp", SynthConfig(n_videos=16, n_frames=3, size=192, seed=3, manipulations=("FaceSwap",))
    )
    cdf = root / "Celeb-DF-v2"
    clip = face_video(root / "face.mp4", n=4)
    names = [
        "Celeb-real/id0_0000.mp4",
        "Celeb-real/id1_0000.mp4",
        "Celeb-real/id2_0000.mp4",
        "YouTube-real/00000.mp4",
        "Celeb-synthesis/id0_id1_0000.mp4",
        "Celeb-synthesis/id1_id0_0000.mp4",
        "Celeb-synthesis/id2_id0_0000.mp4",
        "Celeb-synthesis/id1_id2_0000.mp4",
    ]
    for name in names:
        (cdf / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(clip, cdf / name)
    (cdf / "List_of_testing_videos.txt").write_text(
        "1 Celeb-real/id2_0000.mp4\n1 YouTube-real/00000.mp4\n0 Celeb-synthesis/id2_id0_0000.mp4\n"
        "0 Celeb-synthesis/id1_id2_0000.mp4\n"
    )
    return {"ffpp": ffpp, "cdf": cdf, "prepared": root / "prepared", "features": root / "features"}


def experiment(paths: dict[str, Path], **changes: Any) -> dict[str, Any]:
    config = {
        "name": "cross-tiny",
        "data": {"root": str(paths["ffpp"]), "options": {"manipulations": ["FaceSwap"]}},
        "prepare": {"frames": 2, "cache": str(paths["prepared"]), "workers": 0, "face_detector": "haar"},
        "split": {
            "name": "tiny",
            "mode": "identity",
            "manipulations": {
                "real": {"train": 50, "val": 25, "test": 25},
                "FaceSwap": {"train": 50, "val": 25, "test": 25},
            },
        },
        "defaults": {
            "method": {"backbone": "tiny"},
            "train": {"epochs": 1, "batch_size": 8, "num_workers": 0, "cache_dir": str(paths["features"])},
        },
        "methods": {"linear_probe": {}},
        "tests": {"FaceSwap": ["real", "FaceSwap"]},
        "corpora": {
            # the synthetic stand-in: other people (seed), other size and compression, unseen manipulations
            "synth-other": {
                "synth": {
                    "videos": 8,
                    "frames": 3,
                    "size": 160,
                    "seed": 11,
                    "compression": "c40",
                    "manipulations": ["Deepfakes", "NeuralTextures"],
                },
                "use": "all",
            },
            "celebdf": {"root": str(paths["cdf"]), "corpus": "celebdf"},
        },
        "bootstrap": 20,
    }
    return config | changes


@pytest.mark.slow  # trains a tiny detector and crops three corpora
def test_cross_dataset_study_end_to_end(corpora, tmp_path: Path) -> None:
    config = ExperimentConfig.parse(experiment(corpora))
    assert config.tests["celebdf"].model_dump() == {
        "split": "celebdf",
        "manipulations": ["real", "Celeb-synthesis"],
    }
    assert config.tests["synth-other"].manipulations == ["real", "Deepfakes", "NeuralTextures"]
    run_dir = tmp_path / "run"
    result, table = run_cross_dataset(config, run_dir, progress=False, report=False)
    assert result.entries["linear_probe"].status == "done"

    # The other corpora are in the split manifest under their own split, renamed, never train or val.
    split = read_manifest(run_dir / "split.parquet")
    cdf = split[split["split"] == "celebdf"]
    assert set(cdf["corpus"]) == {"celebdf"}
    assert set(cdf["video_id"]) == {
        "celebdf/real/id2_0000",
        "celebdf/real/00000",
        "celebdf/Celeb-synthesis/id2_id0_0000",
        "celebdf/Celeb-synthesis/id1_id2_0000",
    }
    other = split[split["split"] == "synth-other"]
    assert set(other["corpus"]) == {"synth-other"} and other["video_id"].nunique() >= 20  # use: all (Haar
    # may miss a face at c40)
    assert set(other["manipulation"]) == {"real", "Deepfakes", "NeuralTextures"}
    assert set(split.loc[split["split"].isin(["train", "val"]), "corpus"]) == {"ffpp"}
    assert all(
        Path(p).is_file()
        for p in (run_dir / split["path"]).head(3).tolist() + [str(run_dir / p) for p in cdf["path"]]
    )
    recorded = read_experiment(run_dir).experiment.corpora
    assert recorded["celebdf"]["videos"] == 4 and recorded["synth-other"]["root"] == "synthetic"
    assert recorded["celebdf"]["corpus"] == "celebdf" and recorded["synth-other"]["corpus"] == "ffpp"
    assert recorded["synth-other"]["videos_listed"] == 8 + 2 * 8  # every video, not its test split
    # The stand-in was synthesized with its own settings.
    synth = json.loads((run_dir / "corpora/synth-other/data/synth.json").read_text())
    assert synth["config"]["seed"] == 11 and synth["config"]["compression"] == "c40"

    # One row per method and test set, AUCs with CIs; the average is over the other corpora only.
    assert list(table["test"]) == ["FaceSwap", "synth-other", "celebdf"]
    assert list(table["corpus"]) == [False, True, True] and (table["status"] == "done").all()
    assert table["frame_auc"].between(0, 1).all() and table["video_auc"].between(0, 1).all()
    assert (table["frame_low"] <= table["frame_auc"]).all() and (
        table["frame_auc"] <= table["frame_high"]
    ).all()
    assert table["videos"].tolist()[2] == 4 and table["videos"].tolist()[1] == other["video_id"].nunique()
    saved = json.loads((run_dir / "cross_dataset.json").read_text())
    assert saved["average"][0]["frame_auc"] == pytest.approx(table.loc[table["corpus"], "frame_auc"].mean())
    assert saved["in_domain"] == ["FaceSwap"]
    md = (run_dir / "cross_dataset.md").read_text()
    assert "| method | FaceSwap (in-domain) | synth-other | celebdf | avg |" in md
    assert "## Frame AUC" in md and "## Video AUC" in md
    assert pd.read_csv(run_dir / "cross_dataset.csv")["test"].tolist() == [
        "FaceSwap",
        "synth-other",
        "celebdf",
    ]

    # A second run resumes: nothing is cropped, trained or scored again.
    predictions = {p: p.stat().st_mtime_ns for p in run_dir.rglob("predictions_*.parquet")}
    split_mtime = (run_dir / "split.parquet").stat().st_mtime_ns
    run_cross_dataset(config, run_dir, progress=False, report=False)
    assert {p: p.stat().st_mtime_ns for p in predictions} == predictions
    assert (run_dir / "split.parquet").stat().st_mtime_ns == split_mtime

    # Other corpora on the same run directory would mix two studies.
    with pytest.raises(CrossfakeError, match="other corpora settings"):
        run_cross_dataset(
            with_corpora(config, {"celebdf": corpora["cdf"]}), run_dir, progress=False, report=False
        )


@pytest.mark.slow  # trains a tiny detector
def test_cross_dataset_cli_corpus_replaces_the_stand_in(corpora, tmp_path: Path, capsys) -> None:
    path = tmp_path / "cross.yaml"
    data = experiment(corpora)
    data["corpora"] = {"synth-other": data["corpora"]["synth-other"]}
    path.write_text(yaml.safe_dump(data))
    out = tmp_path / "cli"
    assert (
        main(
            [
                "run",
                str(path),
                "--corpus",
                f"celebdf={corpora['cdf']}",
                "--out",
                str(out),
                "--no-progress",
                "--no-report",
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert (
        "# Cross-dataset: cross-tiny" in printed
        and "| method | FaceSwap (in-domain) | celebdf | avg |" in printed
    )
    assert not (out / "corpora" / "synth-other").exists()
    assert set(yaml.safe_load((out / "experiment.yaml").read_text())["corpora"]) == {"celebdf"}


def test_cross_dataset_config_errors(tmp_path: Path) -> None:
    corpora = {name: tmp_path / name for name in ("ffpp", "cdf", "prepared", "features")}

    def parse(**changes: Any) -> ExperimentConfig:
        return ExperimentConfig.parse(experiment(corpora, **changes))

    base = experiment(corpora)["corpora"]
    with pytest.raises(CrossfakeError, match="unknown corpus 'celeb'"):
        parse(corpora={"x": {"root": str(tmp_path), "corpus": "celeb"}})
    with pytest.raises(CrossfakeError, match="invalid options for corpus 'celebdf'"):
        parse(corpora={"x": {"root": str(tmp_path), "corpus": "celebdf", "options": {"compression": "c23"}}})
    with pytest.raises(CrossfakeError, match="which manipulations are the folder corpus's fakes"):
        parse(corpora={"x": {"root": str(tmp_path), "corpus": "folder"}})
    with pytest.raises(CrossfakeError, match="a dfdc corpus needs its root"):
        parse(corpora={"x": {"corpus": "dfdc"}})
    with pytest.raises(CrossfakeError, match="'test' cannot name a corpus"):
        parse(corpora={"test": base["celebdf"]})
    with pytest.raises(CrossfakeError, match="'ffpp' is the training corpus's name"):
        parse(corpora={"ffpp": base["synth-other"]})
    with pytest.raises(
        CrossfakeError, match=r"tests.celebdf: manipulations \['Deepfakes'\] are not in corpus celebdf"
    ):
        parse(
            tests={
                "FaceSwap": ["real", "FaceSwap"],
                "celebdf": {"split": "celebdf", "manipulations": ["real", "Deepfakes"]},
            }
        )
    with pytest.raises(CrossfakeError, match=r"tests read split\(s\) \['cdf'\], which are neither"):
        parse(
            tests={"FaceSwap": ["real", "FaceSwap"], "x": {"split": "cdf", "manipulations": ["real", "FaceSwap"]}}
        )
    with pytest.raises(CrossfakeError, match="synth-b.synth"):
        parse(corpora={"synth-b": {"synth": {"videos": 7}}})
    # prepare() rewrites a cache's manifest from its videos: a corpus must not share the training cache
    # (it would overwrite the training manifest before the split) nor another corpus's.
    with pytest.raises(CrossfakeError, match=r"corpora.celebdf.cache and prepare.cache are the same folder"):
        parse(corpora={"celebdf": {**base["celebdf"], "cache": str(corpora["prepared"])}})
    with pytest.raises(CrossfakeError, match=r"corpora.celebdf.cache and corpora.synth-other.cache are the same"):
        parse(corpora={"synth-other": {**base["synth-other"], "cache": str(tmp_path / "c")},
                       "celebdf": {**base["celebdf"], "cache": str(tmp_path / "x" / ".." / "c")}})
    parse(corpora={"synth-other": {**base["synth-other"], "cache": str(tmp_path / "c1")},
                   "celebdf": {**base["celebdf"], "cache": str(tmp_path / "c2")}})
    config = parse()
    with pytest.raises(CrossfakeError, match="--corpus nope: no corpus of that name .* and no corpus adapter 'nope'"):
        with_corpora(config, {"nope": tmp_path})
    assert main(["run", "cross-dataset", "--corpus", "celebdf"]) == 2
    with pytest.raises(CrossfakeError, match="names no other corpus"):
        run_cross_dataset(ExperimentConfig.parse(experiment(corpora, corpora={})), tmp_path, progress=False)
