"""``crossfake prepare`` from the command line: corpora, flags, YAML config, errors and resuming."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import cv2
import pandas as pd
import pytest
from conftest import make_ffpp_tree
from test_preprocess import face_video

from crossfake.cli.main import main
from crossfake.data.manifest import read_manifest
from crossfake.data.synth import SynthConfig, synthesize


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real/ + fake/<manipulation>/ folder corpus: two face videos per class and one corrupt fake."""
    root = tmp_path_factory.mktemp("corpus") / "mini"
    (root / "real").mkdir(parents=True)
    (root / "fake/FaceSwap").mkdir(parents=True)
    face_video(root / "real/a.mp4", n=6)
    shutil.copy(root / "real/a.mp4", root / "real/b.mp4")
    shutil.copy(root / "real/a.mp4", root / "fake/FaceSwap/c.mp4")
    (root / "fake/FaceSwap/d.mp4").write_bytes(b"\x00" * 1000)
    return root


def prepare_cli(root: Path, out: Path, *flags: str) -> int:
    args = ["prepare", str(root), "--corpus", "folder", "--out", str(out), "--workers", "0", "--face-detector", "haar"]
    return main([*args, *flags])


def test_prepare_folder_corpus(corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert prepare_cli(corpus, tmp_path, "--frames", "3", "--size", "48") == 0
    printed = capsys.readouterr().out
    assert "crops written" in printed and "open: Invalid data found when processing input" in printed
    df = read_manifest(tmp_path)
    assert len(df) == 9 and set(df["manipulation"]) == {"real", "FaceSwap"} and (df["corpus"] == "mini").all()
    info = json.loads((tmp_path / "prepare.json").read_text())
    assert info["config"]["frames"] == 3 and info["config"]["crop"]["size"] == 48
    assert info["summary"]["videos"] == 4 and info["summary"]["failed"] == 1

    assert prepare_cli(corpus, tmp_path, "--frames", "3", "--size", "48") == 0  # resumes: nothing to do
    assert json.loads((tmp_path / "prepare.json").read_text())["summary"]["skipped"] == 4
    assert prepare_cli(corpus, tmp_path, "--frames", "4", "--size", "48") == 2
    assert "different crop settings" in capsys.readouterr().err
    assert prepare_cli(corpus, tmp_path, "--frames", "4", "--size", "48", "--overwrite") == 0
    assert len(read_manifest(tmp_path)) == 12


def test_sampling_flags_limit_and_manipulations(corpus: Path, tmp_path: Path) -> None:
    assert (
        prepare_cli(corpus, tmp_path / "every", "--every", "2", "--manipulations", "FaceSwap", "--limit", "1") == 0
    )
    df = read_manifest(tmp_path / "every")
    assert df.groupby("manipulation").size().to_dict() == {"FaceSwap": 3, "real": 3}
    assert df["frame_idx"].drop_duplicates().tolist() == [0, 2, 4]
    assert prepare_cli(corpus, tmp_path / "all", "--all-frames", "--limit", "1", "--format", "jpg") == 0
    df = read_manifest(tmp_path / "all")
    assert len(df) == 12 and df["path"].str.endswith(".jpg").all()


def test_yaml_config_with_flag_overrides(corpus: Path, tmp_path: Path) -> None:
    cfg = tmp_path / "prep.yaml"
    cfg.write_text(
        "frames: 2\nsize: 64\nmargin: 1.5\nno_face: center\ndetector_options: {min_neighbors: 4}\n"
    )
    cascade = str(Path(cv2.data.haarcascades) / "haarcascade_frontalface_default.xml")
    flags = ("--config", str(cfg), "--size", "40", "--detector-weights", cascade)
    assert prepare_cli(corpus, tmp_path / "out", *flags) == 0
    config = json.loads((tmp_path / "out/prepare.json").read_text())["config"]
    crop = config["crop"]
    assert (config["frames"], crop["size"], crop["margin"], crop["no_face"]) == (2, 40, 1.5, "center")
    assert crop["face_detector_options"] == {"min_neighbors": 4, "weights": cascade}
    # The corrupt video has no frame to centre-crop, so it still fails.
    fails = pd.read_parquet(tmp_path / "out/failures.parquet")
    assert fails["video_id"].tolist() == ["mini/FaceSwap/d"]


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--frames", "0"], "frames: Input should be greater than 0"),
        (["--margin", "0.5"], "margin: Input should be greater than or equal to 1"),
        (["--face-detector", "yunet"], "face_detection_yunet_2023mar.onnx"),
        (["--align"], "align needs landmarks, and the haar face detector gives none"),
        (["--smooth", "2"], "smooth: must be odd"),
        (["--limit", "0"], "--limit must be at least 1"),
        (["--manipulations", "Deepfakes"], "Deepfakes"),
    ],
)
def test_bad_settings_are_reported(
    corpus: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    flags: list[str],
    message: str,
) -> None:
    monkeypatch.setenv("CROSSFAKE_CACHE", str(tmp_path / "cache"))  # YuNet's weights are not there
    monkeypatch.setenv("CROSSFAKE_OFFLINE", "1")
    assert prepare_cli(corpus, tmp_path, *flags) == 2
    assert message in capsys.readouterr().err


def test_bad_yaml_key_and_wrong_root(corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "bad.yaml").write_text("frame: 8\n")
    assert prepare_cli(corpus, tmp_path / "out", "--config", str(tmp_path / "bad.yaml")) == 2
    assert "bad.yaml" in (err := capsys.readouterr().err) and "frame: unknown key" in err
    assert prepare_cli(tmp_path / "nowhere", tmp_path / "out") == 2
    assert "does not exist" in capsys.readouterr().err


def test_ffpp_corpus_with_unreadable_videos(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    # The shared FF++ fixture holds empty files: every video fails to open, and the command says so.
    root = make_ffpp_tree(tmp_path / "ffpp", n_pairs=3)
    out = tmp_path / "out"
    rc = main(["prepare", str(root), "--out", str(out), "--workers", "0", "--manipulations", "FaceSwap", "--face-detector", "haar"])
    assert rc == 1 and "no face crop was written" in capsys.readouterr().out
    fails = pd.read_parquet(out / "failures.parquet")
    assert len(fails) == 12 and set(fails["stage"]) == {"open"}
    assert set(fails["video_id"].str.split("/").str[1]) == {"real", "FaceSwap"}


def test_ffpp_synthetic_with_limit(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    root = synthesize(
        tmp_path / "ffpp", SynthConfig(n_videos=8, n_frames=4, manipulations=("FaceSwap",)), workers=0
    )
    out = tmp_path / "out"
    flags = ["--manipulations", "FaceSwap", "--limit", "2", "--frames", "2", "--size", "32", "--workers", "0", "--face-detector", "haar"]
    assert main(["prepare", str(root), "--out", str(out), "--compression", "c23", *flags]) == 0
    assert re.search(r"crops written +8\n", capsys.readouterr().out)
    df = read_manifest(out)
    assert df.groupby("manipulation")["video_id"].nunique().to_dict() == {"FaceSwap": 2, "real": 2}


@pytest.mark.parametrize(
    ("argv", "dest", "value"),
    [
        (["prepare", "ROOT", "--out", "OUT", "--source", "folder"], "corpus", "folder"),
        (["prepare", "ROOT", "--out", "OUT", "--methods", "FaceSwap"], "manipulations", "FaceSwap"),
        (["split", "M", "--source", "real=80/10/10"], "manipulation", ["real=80/10/10"]),
        (["synth", "OUT", "--methods", "FaceSwap"], "manipulations", "FaceSwap"),
        (["robustness", "RUN", "--sources", "real,FaceSwap"], "manipulations", "real,FaceSwap"),
    ],
)
def test_flags_of_the_old_vocabulary_still_parse(argv: list[str], dest: str, value: object) -> None:
    """Scripts written before the rename (`--source`, `--sources`, `--methods`) keep working."""
    from crossfake.cli.main import _command_parser

    parser, _ = _command_parser(argv[0])
    assert getattr(parser.parse_args(argv[1:]), dest) == value
