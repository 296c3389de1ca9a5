"""Corpus adapters: FF++ official layout and the generic real/fake folder."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from crossfake.data.corpora import get_corpus
from crossfake.data.corpora.ffpp import youtube_key
from crossfake.data.identity import identity_groups
from crossfake.utils.errors import CrossfakeError


def test_ffpp_reads_layout_names_and_splits(ffpp_tree: Path):
    recs = get_corpus("ffpp", ffpp_tree).records()
    by_id = {r.video_id: r for r in recs}
    assert len(recs) == 40 + 3 * 40
    fake = by_id["ffpp/FaceSwap/004_005"]
    assert (fake.label, fake.target_id, fake.source_id) == (1, "004", "005")
    assert by_id["ffpp/real/004"].label == 0 and by_id["ffpp/real/004"].manipulation == "real"
    # Both fakes of a pair share the pair's official split.
    assert by_id["ffpp/NeuralTextures/006_007"].official_split == by_id["ffpp/NeuralTextures/007_006"].official_split
    assert {r.official_split for r in recs} == {"train", "val", "test"}
    # The same name under two manipulations is two videos.
    assert "ffpp/Face2Face/004_005" in by_id and "ffpp/FaceSwap/004_005" in by_id


def test_ffpp_manipulation_selection_and_errors(ffpp_tree: Path, tmp_path: Path):
    src = get_corpus("ffpp", ffpp_tree, manipulations=["FaceSwap"])
    assert {r.manipulation for r in src.records()} == {"real", "FaceSwap"}
    with pytest.raises(CrossfakeError, match="Deepfakes.*present: \\['Face2Face', 'FaceSwap', 'NeuralTextures'\\]"):
        get_corpus("ffpp", ffpp_tree, manipulations=["Deepfakes"])
    with pytest.raises(CrossfakeError, match="no original videos .*c40.*found.*c23/"):
        get_corpus("ffpp", ffpp_tree, compression="c40")
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "videos").mkdir()
    with pytest.raises(CrossfakeError, match="expected folders 'original_sequences/'.*found: videos/"):
        get_corpus("ffpp", tmp_path / "elsewhere")
    with pytest.raises(CrossfakeError, match="does not exist"):
        get_corpus("ffpp", tmp_path / "missing")
    with pytest.raises(CrossfakeError, match="unknown corpus"):
        get_corpus("celebdf-v9", ffpp_tree)


def test_ffpp_bad_split_file(ffpp_tree: Path):
    (ffpp_tree / "val.json").write_text("{not json")
    with pytest.raises(CrossfakeError, match="val.json is not a JSON list of id pairs"):
        get_corpus("ffpp", ffpp_tree).records()


def test_youtube_key_strips_sequence_suffix():
    # Both forms of a conversion_dict value; tests/test_realdata_ffpp.py has the full table.
    assert youtube_key("VuKHf1vDd8Y_2") == youtube_key("VuKHf1vDd8Y 2") == "VuKHf1vDd8Y"
    assert youtube_key("a_b-c_d_e_f_1") == "a_b-c_d_e_f"  # 11-char ids may contain '_' themselves


def test_identity_groups_join_pairs_and_youtube_videos(ffpp_tree: Path):
    recs = get_corpus("ffpp", ffpp_tree).records()
    groups = identity_groups(recs)
    g = lambda vid: groups[f"ffpp/{vid}"]  # noqa: E731
    assert g("real/004") == g("real/005") == g("FaceSwap/004_005") == g("NeuralTextures/005_004")
    assert g("real/004") != g("real/006")
    # 000/002 share a YouTube video, so pairs (000,001) and (002,003) are one group; 004/039 likewise.
    assert g("real/000") == g("real/003") == g("Face2Face/002_003")
    assert g("real/005") == g("real/038")
    assert len(set(groups.values())) == 20 - 2


def test_folder_corpus(tmp_path: Path):
    root = tmp_path / "mydata"
    for rel in ["real/id01/a.mp4", "real/id01/b.mp4", "real/c.png", "fake/swap/x.mp4", "fake/swap/y.jpg",
                "fake/z.mp4", "real/notes.txt"]:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).touch()
    recs = get_corpus("folder", root).records()
    by_id = {r.video_id: r for r in recs}
    assert set(by_id) == {"mydata/real/id01/a", "mydata/real/id01/b", "mydata/real/c", "mydata/swap/x",
                          "mydata/swap/y", "mydata/fake/z"}
    assert by_id["mydata/real/id01/a"].target_id == "id01" == by_id["mydata/real/id01/b"].target_id
    assert by_id["mydata/swap/y"].is_image and by_id["mydata/swap/x"].label == 1

    (root / "identities.csv").write_text("path,target_id,source_id\nfake/swap/x.mp4,p1,p2\nreal/c.png,p1,\n")
    recs = get_corpus("folder", root, corpus="mine").records()
    groups = identity_groups(recs)
    assert groups["mine/swap/x"] == groups["mine/real/c"]


def test_folder_corpus_errors(tmp_path: Path):
    (tmp_path / "videos").mkdir()
    with pytest.raises(CrossfakeError, match="expected 'real/' and 'fake/<manipulation>/'.*found: videos/"):
        get_corpus("folder", tmp_path)
    (tmp_path / "real").mkdir()
    with pytest.raises(CrossfakeError, match="no videos or images found"):
        get_corpus("folder", tmp_path).records()
    (tmp_path / "identities.csv").write_text("file,person\n")
    with pytest.raises(CrossfakeError, match="must have columns path,target_id"):
        get_corpus("folder", tmp_path)


def test_official_split_conflict(ffpp_tree: Path):
    train = json.loads((ffpp_tree / "train.json").read_text())
    (ffpp_tree / "test.json").write_text(json.dumps([train[0]]))
    with pytest.raises(CrossfakeError, match="listed in both train.json and test.json"):
        get_corpus("ffpp", ffpp_tree).records()


def test_hidden_partial_files_are_not_videos(ffpp_tree: Path):
    videos = ffpp_tree / "original_sequences/youtube/c23/videos"
    (videos / ".000.mp4.abc.tmp.mp4").touch()
    names = {r.name for r in get_corpus("ffpp", ffpp_tree).records() if r.manipulation == "real"}
    assert ".000.mp4.abc" not in names and len(names) == 40


def test_ffpp_leaves_deepfakedetection_to_the_dfd_corpus(ffpp_tree: Path):
    """FF++ downloads put DFD's actor fakes beside the four manipulations; the ffpp adapter does not take
    them for a manipulation of its own (their names are not <target>_<source>)."""
    dfd = ffpp_tree / "manipulated_sequences" / "DeepFakeDetection" / "c23" / "videos"
    dfd.mkdir(parents=True)
    (dfd / "01_02__walking__ABCDEF12.mp4").write_bytes(b"")
    try:
        src = get_corpus("ffpp", ffpp_tree)
        assert "DeepFakeDetection" not in src.available_manipulations()
        assert {r.manipulation for r in src.records()} == {"real", "Face2Face", "FaceSwap", "NeuralTextures"}
        with pytest.raises(CrossfakeError, match="DeepFakeDetection is not an FF.. manipulation: .* `dfd` corpus"):
            get_corpus("ffpp", ffpp_tree, manipulations=["Face2Face", "DeepFakeDetection"])
    finally:
        shutil.rmtree(dfd.parent.parent)
