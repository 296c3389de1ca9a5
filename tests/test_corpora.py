"""Corpus adapters for cross-dataset testing: Celeb-DF v2, DeepFakeDetection and WildDeepfake, each in its
download layout built in a temporary folder."""

from __future__ import annotations

import logging
import re
import shutil
from pathlib import Path

import cv2
import pytest
from conftest import manifest_from_records
from test_preprocess import background, draw_face, face_video

from crossfake.cli.main import main as cli_main
from crossfake.data.corpora import corpus_fake_manipulations, get_corpus, list_corpora
from crossfake.data.corpora.base import frame_files
from crossfake.data.identity import identity_groups
from crossfake.data.manifest import read_manifest
from crossfake.data.preprocess.video import sample_frames
from crossfake.data.splits import SplitSpec, assign_splits
from crossfake.utils.errors import CrossfakeError


def touch(root: Path, *relpaths: str, video: Path | None = None) -> None:
    """Create ``relpaths`` under ``root``: copies of ``video`` when given, else empty files."""
    for rel in relpaths:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        if video is None:
            (root / rel).touch()
        else:
            shutil.copy(video, root / rel)


def test_new_corpora_are_registered_with_their_fake_manipulations() -> None:
    assert {"celebdf", "dfd", "wilddeepfake"} <= set(list_corpora())
    assert corpus_fake_manipulations("celebdf") == ("Celeb-synthesis",)
    assert corpus_fake_manipulations("dfd") == ("DeepFakeDetection",)
    assert corpus_fake_manipulations("wilddeepfake") == ("fake",) == corpus_fake_manipulations("dfdc")
    assert corpus_fake_manipulations("ffpp") is None  # FF++'s manipulations depend on the download


# -- Celeb-DF v2 -------------------------------------------------------------------------------------------

CDF_VIDEOS = (
    "Celeb-real/id0_0000.mp4",
    "Celeb-real/id0_0001.mp4",
    "Celeb-real/id1_0000.mp4",
    "Celeb-real/id2_0000.mp4",
    "Celeb-synthesis/id0_id1_0000.mp4",
    "Celeb-synthesis/id1_id0_0002.mp4",
    "Celeb-synthesis/id2_id3_0000.mp4",
    "YouTube-real/00000.mp4",
    "YouTube-real/00001.mp4",
)
# Celeb-DF's convention: 1 = real, 0 = fake. The last line names a video the copy lacks.
CDF_TEST_LIST = """1 YouTube-real/00000.mp4
1 Celeb-real/id2_0000.mp4
0 Celeb-synthesis/id2_id3_0000.mp4
0 Celeb-synthesis/id9_id8_0000.mp4
"""


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny real H.264 video with a face Haar finds (6 frames, 240x180)."""
    return face_video(tmp_path_factory.mktemp("clip") / "face.mp4", n=6)


@pytest.fixture
def cdf_root(tmp_path: Path, clip: Path) -> Path:
    root = tmp_path / "Celeb-DF-v2"
    touch(root, *CDF_VIDEOS, video=clip)
    touch(root, "Celeb-real/notes.mp4", "Celeb-real/.id0_0000.mp4.part.mp4")
    (root / "List_of_testing_videos.txt").write_text(CDF_TEST_LIST)
    return root


def test_celebdf_names_labels_identities_and_test_list(
    cdf_root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    corpus = get_corpus("celebdf", cdf_root)
    with caplog.at_level(logging.WARNING, logger="crossfake"):
        recs = corpus.records()
    by_id = {r.video_id: r for r in recs}
    assert set(by_id) == {
        "celebdf/real/id0_0000",
        "celebdf/real/id0_0001",
        "celebdf/real/id1_0000",
        "celebdf/real/id2_0000",
        "celebdf/Celeb-synthesis/id0_id1_0000",
        "celebdf/Celeb-synthesis/id1_id0_0002",
        "celebdf/Celeb-synthesis/id2_id3_0000",
        "celebdf/real/00000",
        "celebdf/real/00001",
    }
    fake = by_id["celebdf/Celeb-synthesis/id0_id1_0000"]
    assert (fake.label, fake.manipulation, fake.target_id, fake.source_id) == (1, "Celeb-synthesis", "id0", "id1")
    assert (by_id["celebdf/real/id1_0000"].label, by_id["celebdf/real/id1_0000"].target_id) == (0, "id1")
    assert by_id["celebdf/real/00000"].target_id == "youtube-00000"
    # The official list: listed videos are test, the rest train; the absent entry is counted.
    tests = {r.video_id for r in recs if r.official_split == "test"}
    assert tests == {"celebdf/real/00000", "celebdf/real/id2_0000", "celebdf/Celeb-synthesis/id2_id3_0000"}
    assert {r.official_split for r in recs} == {"train", "test"}
    assert corpus.missing == ["Celeb-synthesis/id9_id8_0000"]
    messages = " ".join(r.getMessage() for r in caplog.records)
    assert "notes.mp4" in messages and "id9_id8_0000" in messages
    # A fake joins both people: id0 and id1 are one group, id2 and id3 another; YouTube videos stand alone.
    groups = identity_groups(recs)
    g = lambda vid: groups[f"celebdf/{vid}"]  # noqa: E731
    assert g("real/id0_0000") == g("real/id1_0000") == g("Celeb-synthesis/id1_id0_0002")
    assert g("real/id2_0000") == g("Celeb-synthesis/id2_id3_0000") != g("real/id0_0000")
    assert len({g("real/00000"), g("real/00001"), g("real/id0_0000"), g("real/id2_0000")}) == 4
    assert {r.manipulation for r in get_corpus("celebdf", cdf_root, include_real=False).records()} == {
        "Celeb-synthesis"
    }


def test_celebdf_identity_split_keeps_both_people_of_a_test_fake_out_of_training(cdf_root: Path) -> None:
    recs = get_corpus("celebdf", cdf_root).records()
    spec = SplitSpec(
        mode="identity",
        manipulations={"real": {"train": 50, "test": 50}, "Celeb-synthesis": {"train": 50, "test": 50}},
    )
    people = lambda video_ids: {p for v in video_ids for p in re.findall(r"id\d+", v)}  # noqa: E731  (from names)
    for seed in range(6):
        split = assign_splits(manifest_from_records(recs, frames=1), spec.model_copy(update={"seed": seed}))
        train = people(split.loc[split["split"] == "train", "video_id"])
        test_fakes = people(split.loc[(split["split"] == "test") & (split["label"] == 1), "video_id"])
        assert not train & test_fakes, f"seed {seed}: {train & test_fakes} train and appear in a test fake"


def test_celebdf_layout_variants_and_errors(tmp_path: Path, cdf_root: Path) -> None:
    # Videos one level down in videos/, the YouTube folder spelled "Youtube-real", no test list.
    root = tmp_path / "sbi-layout"
    touch(
        root,
        "Celeb-real/videos/id5_0003.mp4",
        "Youtube-real/videos/00042.mp4",
        "Celeb-synthesis/videos/id5_id6_0001.mp4",
    )
    by_id = {r.video_id: r for r in get_corpus("celebdf", root).records()}
    assert set(by_id) == {
        "celebdf/real/id5_0003",
        "celebdf/real/00042",
        "celebdf/Celeb-synthesis/id5_id6_0001",
    }
    assert {r.official_split for r in by_id.values()} == {None}

    (tmp_path / "elsewhere" / "videos").mkdir(parents=True)
    with pytest.raises(
        CrossfakeError,
        match=r"not a Celeb-DF v2 root: expected folders 'Celeb-real/', "
        r"'Celeb-synthesis/' and 'YouTube-real/'.*found: videos/",
    ):
        get_corpus("celebdf", tmp_path / "elsewhere")
    with pytest.raises(CrossfakeError, match="invalid options for corpus 'celebdf'"):
        get_corpus("celebdf", cdf_root, compression="c23")
    with pytest.raises(CrossfakeError, match="test list .*nowhere.txt does not exist"):
        get_corpus("celebdf", cdf_root, test_list=tmp_path / "nowhere.txt")

    test_list = cdf_root / "List_of_testing_videos.txt"
    test_list.write_text("0 YouTube-real/00000.mp4\n")  # a list in crossfake's convention (1 = fake)
    with pytest.raises(
        CrossfakeError, match=r"line 1 .*label 0 disagrees with the folder YouTube-real \(real\)"
    ):
        get_corpus("celebdf", cdf_root).records()
    test_list.write_text("1 YouTube-real/00000.mp4\nreal Celeb-real/id0_0000.mp4\n")
    with pytest.raises(CrossfakeError, match=r"line 2 .*expected '<label> <folder>/<video>.mp4'"):
        get_corpus("celebdf", cdf_root).records()
    test_list.write_text("1 Celeb-df/id0_0000.mp4\n")
    with pytest.raises(CrossfakeError, match="must be in one of Celeb-real, YouTube-real, Celeb-synthesis"):
        get_corpus("celebdf", cdf_root).records()


def test_prepare_celebdf_through_the_cli(cdf_root: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "prepared"
    args = [
        "prepare",
        str(cdf_root),
        "--corpus",
        "celebdf",
        "--out",
        str(out),
        "--workers",
        "0",
        "--face-detector",
        "haar",
        "--frames",
        "2",
        "--size",
        "48",
    ]
    assert cli_main(args) == 0
    df = read_manifest(out)
    assert df["video_id"].nunique() == len(CDF_VIDEOS) and len(df) == 2 * len(CDF_VIDEOS)
    assert set(df["corpus"]) == {"celebdf"} and set(df["manipulation"]) == {"real", "Celeb-synthesis"}
    row = df[df["video_id"] == "celebdf/Celeb-synthesis/id2_id3_0000"].iloc[0]
    assert (row["label"], row["target_id"], row["source_id"], row["official_split"]) == (
        1,
        "id2",
        "id3",
        "test",
    )
    assert (
        row["identity_group"] == df.loc[df["video_id"] == "celebdf/real/id2_0000", "identity_group"].iloc[0]
    )
    assert "crops written" in capsys.readouterr().out


# -- DeepFakeDetection -------------------------------------------------------------------------------------

DFD_VIDEOS = (
    "original_sequences/actors/c23/videos/01__kitchen_pan.mp4",
    "original_sequences/actors/c23/videos/02__kitchen_pan.mp4",
    "original_sequences/actors/c23/videos/03__talking_against_wall.mp4",
    "manipulated_sequences/DeepFakeDetection/c23/videos/01_02__kitchen_pan__YVGY8LOK.mp4",
    "manipulated_sequences/DeepFakeDetection/c23/videos/04_05__walking_outside__1ZE4CGRN.mp4",
    "manipulated_sequences/DeepFakeDetection/c23/videos/garbage.mp4",
    # FF++'s own sequences beside DFD are not DFD's.
    "original_sequences/youtube/c23/videos/000.mp4",
    "manipulated_sequences/FaceSwap/c23/videos/000_003.mp4",
)


@pytest.fixture
def dfd_root(tmp_path: Path) -> Path:
    root = tmp_path / "FaceForensics++"
    touch(root, *DFD_VIDEOS)
    return root


def test_dfd_names_labels_and_actor_identities(dfd_root: Path) -> None:
    recs = get_corpus("dfd", dfd_root).records()
    by_id = {r.video_id: r for r in recs}
    assert set(by_id) == {
        "dfd/real/01__kitchen_pan",
        "dfd/real/02__kitchen_pan",
        "dfd/real/03__talking_against_wall",
        "dfd/DeepFakeDetection/01_02__kitchen_pan__YVGY8LOK",
        "dfd/DeepFakeDetection/04_05__walking_outside__1ZE4CGRN",
    }
    fake = by_id["dfd/DeepFakeDetection/01_02__kitchen_pan__YVGY8LOK"]
    assert (fake.label, fake.target_id, fake.source_id, fake.compression) == (1, "01", "02", "c23")
    real = by_id["dfd/real/03__talking_against_wall"]
    assert (real.label, real.manipulation, real.target_id) == (0, "real", "03")
    assert {r.official_split for r in recs} == {None}  # DFD has no official split
    groups = identity_groups(recs)
    g = lambda vid: groups[f"dfd/{vid}"]  # noqa: E731
    assert (
        g("real/01__kitchen_pan")
        == g("real/02__kitchen_pan")
        == g("DeepFakeDetection/01_02__kitchen_pan__YVGY8LOK")
    )
    assert g("real/03__talking_against_wall") != g("real/01__kitchen_pan")
    assert g("DeepFakeDetection/04_05__walking_outside__1ZE4CGRN") not in {
        g("real/01__kitchen_pan"),
        g("real/03__talking_against_wall"),
    }
    fakes = get_corpus("dfd", dfd_root, include_real=False).records()
    assert {r.manipulation for r in fakes} == {"DeepFakeDetection"}


def test_dfd_errors(dfd_root: Path, tmp_path: Path) -> None:
    with pytest.raises(
        CrossfakeError,
        match=r"no videos at .*DeepFakeDetection/c40/videos \(compression 'c40'\); found in .*: c23/",
    ):
        get_corpus("dfd", dfd_root, compression="c40")
    with pytest.raises(CrossfakeError, match="invalid options for corpus 'dfd'"):
        get_corpus("dfd", dfd_root, manipulations=["FaceSwap"])
    # An FF++ root without DFD: the expected folders, and what its sequence folders hold.
    ffpp = tmp_path / "ffpp-only"
    touch(ffpp, "original_sequences/youtube/c23/videos/000.mp4")
    with pytest.raises(
        CrossfakeError,
        match=r"not a DeepFakeDetection root: expected folders "
        r"'original_sequences/actors/' and 'manipulated_sequences/"
        r"DeepFakeDetection/'.*found: original_sequences/; "
        r"in original_sequences/: youtube/",
    ):
        get_corpus("dfd", ffpp)
    empty = tmp_path / "empty-dfd"
    (empty / "manipulated_sequences/DeepFakeDetection/c23/videos").mkdir(parents=True)
    with pytest.raises(CrossfakeError, match="no DeepFakeDetection videos found"):
        get_corpus("dfd", empty, include_real=False).records()


# -- WildDeepfake ------------------------------------------------------------------------------------------


def write_clip(folder: Path, frames: int, seed: int = 0, names=None) -> None:
    """A WildDeepfake clip: numbered PNG frames of a face that Haar finds."""
    folder.mkdir(parents=True, exist_ok=True)
    bg = background(160, 120, seed)
    for i, name in enumerate(names or [f"{k}.png" for k in range(frames)]):
        img = draw_face(bg.copy(), 80 + i % 3, 60, 80)
        cv2.imwrite(str(folder / name), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))


@pytest.fixture(scope="module")
def wdf_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("wdf") / "WildDeepfake"
    write_clip(root / "real_train/1/real/0", 3, names=["0.png", "2.png", "10.png"])
    write_clip(root / "real_train/1/real/1", 2)
    write_clip(root / "fake_train/4/fake/0", 2)
    write_clip(root / "real_test/2/real/0", 2)
    write_clip(root / "fake_test/3/fake/0", 2)
    write_clip(root / "fake_test/3/fake/5", 2)
    write_clip(root / "fake_test/9", 2)  # a flattened clip, directly under its split folder
    (root / "fake_test/readme.txt").write_text("not a clip")
    return root


def test_wilddeepfake_clips_labels_splits_and_groups(wdf_root: Path) -> None:
    recs = get_corpus("wilddeepfake", wdf_root).records()
    by_id = {r.video_id: r for r in recs}
    assert set(by_id) == {
        "wilddeepfake/real/real_train/1/real/0",
        "wilddeepfake/real/real_train/1/real/1",
        "wilddeepfake/fake/fake_train/4/fake/0",
        "wilddeepfake/real/real_test/2/real/0",
        "wilddeepfake/fake/fake_test/3/fake/0",
        "wilddeepfake/fake/fake_test/3/fake/5",
        "wilddeepfake/fake/fake_test/9",
    }
    clip = by_id["wilddeepfake/fake/fake_test/3/fake/5"]
    assert (clip.label, clip.manipulation, clip.official_split) == (1, "fake", "test")
    assert clip.path == wdf_root / "fake_test/3/fake/5" and clip.path.is_dir()
    assert {(r.label, r.official_split) for r in recs if r.name.startswith("real_train")} == {(0, "train")}
    # Clips of one video (first folder below the split folder) share a group; nothing else does.
    groups = identity_groups(recs)
    g = lambda vid: groups[f"wilddeepfake/{vid}"]  # noqa: E731
    assert g("fake/fake_test/3/fake/0") == g("fake/fake_test/3/fake/5") != g("fake/fake_test/9")
    assert g("real/real_train/1/real/0") == g("real/real_train/1/real/1")
    assert len(set(groups.values())) == 5
    # A clip's frames are read in the numeric order of their names.
    assert [p.name for p in frame_files(wdf_root / "real_train/1/real/0")] == ["0.png", "2.png", "10.png"]
    indices, frames = sample_frames(wdf_root / "real_train/1/real/0", "all")
    assert indices == [0, 1, 2] and len(list(frames)) == 3
    assert [i for i, _ in sample_frames(wdf_root / "real_train/1/real/0", "uniform", frames=2)[1]] == [0, 2]
    reals = get_corpus("wilddeepfake", wdf_root, include_real=False).records()
    assert {r.manipulation for r in reals} == {"fake"}


def test_wilddeepfake_groups_clips_by_their_video_below_wrapper_folders(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``real_train/extracted/<archive>/<clip>/`` (a wrapper folder): clips group by their archive's folder,
    not all of a split into one group; ``<video>/fake/<clip>/`` by the video; video files by their folder.
    The listing is one ``os.walk``, never a ``rglob`` over every frame."""
    root = tmp_path / "wdf"
    for rel in ["real_train/extracted/1/0", "real_train/extracted/1/1", "real_train/extracted/2/0",
                "fake_train/7/fake/0", "fake_train/7/fake/1", "fake_train/8/fake/0", "fake_test/fake/3"]:
        touch(root, f"{rel}/0.png", f"{rel}/1.png")
    touch(root, "real_test/wrap/5/a.mp4", "real_test/wrap/5/b.mp4", "real_test/c.mp4", "real_test/.hidden/9/0.png")
    monkeypatch.setattr(Path, "rglob", lambda *a, **k: pytest.fail("rglob lists every frame"))
    recs = get_corpus("wilddeepfake", root).records()
    names = [r.name for r in recs]
    assert names == [
        "real_train/extracted/1/0", "real_train/extracted/1/1", "real_train/extracted/2/0",
        "fake_train/7/fake/0", "fake_train/7/fake/1", "fake_train/8/fake/0",
        "real_test/c", "real_test/wrap/5/a", "real_test/wrap/5/b", "fake_test/fake/3",
    ]
    group = {r.name: r.target_id for r in recs}
    assert group["real_train/extracted/1/0"] == group["real_train/extracted/1/1"] == "real_train/extracted/1"
    assert group["real_train/extracted/2/0"] == "real_train/extracted/2"
    assert group["fake_train/7/fake/0"] == group["fake_train/7/fake/1"] == "fake_train/7"
    assert group["fake_train/8/fake/0"] == "fake_train/8"
    assert group["real_test/wrap/5/a"] == group["real_test/wrap/5/b"] == "real_test/wrap/5"
    assert group["real_test/c"] == "real_test/c"  # directly below its split folder: a group of its own
    assert group["fake_test/fake/3"] == "fake_test/fake/3"  # below a bare fake/: its own group too
    assert get_corpus("wilddeepfake", root).records() == recs  # deterministic


def test_wilddeepfake_errors(tmp_path: Path) -> None:
    (tmp_path / "wdf" / "real").mkdir(parents=True)
    with pytest.raises(
        CrossfakeError,
        match=r"not a WildDeepfake root: expected folders 'real_train/', "
        r"'fake_train/', 'real_test/', 'fake_test/', found: real/",
    ):
        get_corpus("wilddeepfake", tmp_path / "wdf")
    packed = tmp_path / "packed"
    touch(packed, "real_test/1.tar.gz", "fake_test/1.tar.gz")
    with pytest.raises(CrossfakeError, match=r"still packed \(2 archive\(s\).*tar -xzf"):
        get_corpus("wilddeepfake", packed).records()
    empty = tmp_path / "empty"
    (empty / "fake_test/3/fake/0").mkdir(parents=True)
    with pytest.raises(CrossfakeError, match="no WildDeepfake clips found .*fake_test/"):
        get_corpus("wilddeepfake", empty).records()


def test_prepare_wilddeepfake_frame_folders_through_the_cli(wdf_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "prepared"
    args = [
        "prepare",
        str(wdf_root),
        "--corpus",
        "wilddeepfake",
        "--out",
        str(out),
        "--workers",
        "0",
        "--face-detector",
        "haar",
        "--frames",
        "2",
        "--size",
        "48",
    ]
    assert cli_main(args) == 0
    df = read_manifest(out)
    assert df["video_id"].nunique() == 7 and len(df) == 14  # two frames of every clip
    first = df[df["video_id"] == "wilddeepfake/real/real_train/1/real/0"].sort_values("frame_idx")
    assert list(first["frame_idx"]) == [0, 2] and (first["official_split"] == "train").all()
    assert first["video_path"].iloc[0] == str((wdf_root / "real_train/1/real/0").resolve())
    assert set(df.loc[df["label"] == 1, "official_split"]) == {"train", "test"}
