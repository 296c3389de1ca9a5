"""The DFDC adapter: training parts' metadata.json, the public test set's labels.csv, the real folder."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from crossfake.cli.main import main as cli_main
from crossfake.data.corpora import get_corpus, list_corpora
from crossfake.data.identity import identity_groups
from crossfake.utils.errors import CrossfakeError


def make_part(root: Path, part: str, metadata: dict[str, dict], present: list[str]) -> Path:
    folder = root / part
    folder.mkdir(parents=True)
    (folder / "metadata.json").write_text(json.dumps(metadata))
    for name in present:
        (folder / name).touch()
    return folder


def fake(original: str) -> dict[str, str]:
    return {"label": "FAKE", "split": "train", "original": original}


REAL = {"label": "REAL", "split": "train", "original": None}


@pytest.fixture
def dfdc_root(tmp_path: Path) -> Path:
    root = tmp_path / "dfdc"
    make_part(
        root, "dfdc_train_part_0",
        {"aaa.mp4": fake("bbb.mp4"), "bbb.mp4": REAL, "ccc.mp4": fake("bbb.mp4"), "gone.mp4": fake("bbb.mp4")},
        present=["aaa.mp4", "bbb.mp4", "ccc.mp4", "stray.mp4"],
    )
    make_part(root, "dfdc_train_part_1", {"ddd.mp4": fake("eee.mp4"), "eee.mp4": REAL}, ["ddd.mp4", "eee.mp4"])
    return root


def test_dfdc_is_registered_and_offered_by_prepare(capsys: pytest.CaptureFixture[str]) -> None:
    assert "dfdc" in list_corpora()
    with pytest.raises(SystemExit):
        cli_main(["prepare", "--help"])
    assert "dfdc" in capsys.readouterr().out


def test_dfdc_parts_labels_identities_and_missing_videos(dfdc_root: Path, caplog: pytest.LogCaptureFixture) -> None:
    corpus = get_corpus("dfdc", dfdc_root)
    with caplog.at_level(logging.WARNING, logger="crossfake"):
        recs = corpus.records()
    by_id = {r.video_id: r for r in recs}
    assert set(by_id) == {"dfdc/fake/aaa", "dfdc/real/bbb", "dfdc/fake/ccc", "dfdc/fake/ddd", "dfdc/real/eee"}
    a = by_id["dfdc/fake/aaa"]
    assert (a.label, a.manipulation, a.target_id, a.source_id, a.official_split) == (1, "fake", "bbb", "bbb", "train")
    assert a.path == dfdc_root / "dfdc_train_part_0" / "aaa.mp4"
    assert (by_id["dfdc/real/bbb"].label, by_id["dfdc/real/bbb"].target_id) == (0, "bbb")
    # A fake and its original share an identity group; another original's videos do not.
    groups = identity_groups(recs)
    assert groups["dfdc/fake/aaa"] == groups["dfdc/real/bbb"] == groups["dfdc/fake/ccc"]
    assert groups["dfdc/fake/ddd"] == groups["dfdc/real/eee"] != groups["dfdc/real/bbb"]
    # Listed but absent: skipped and counted; on disk but unlisted: skipped with a warning.
    assert corpus.missing == [dfdc_root / "dfdc_train_part_0" / "gone.mp4"]
    messages = [r.getMessage() for r in caplog.records]
    assert any("1 video(s) listed in DFDC metadata" in m and "gone.mp4" in m for m in messages)
    assert any("stray.mp4" in m and "not in its metadata" in m for m in messages)
    reals = get_corpus("dfdc", dfdc_root, include_real=False).records()
    assert {r.manipulation for r in reals} == {"fake"}


def test_dfdc_single_part_and_public_test_set(tmp_path: Path) -> None:
    part = make_part(tmp_path, "one_part", {"aaa.mp4": fake("bbb.mp4"), "bbb.mp4": REAL}, ["aaa.mp4", "bbb.mp4"])
    assert {r.name for r in get_corpus("dfdc", part).records()} == {"aaa", "bbb"}

    test = tmp_path / "test"
    test.mkdir()
    (test / "labels.csv").write_text("filename,label\nxxx.mp4,1\nyyy.mp4,0\nabsent.mp4,1\n")
    (test / "xxx.mp4").touch()
    (test / "yyy.mp4").touch()
    corpus = get_corpus("dfdc", tmp_path / "test")
    by_id = {r.video_id: r for r in corpus.records()}
    assert set(by_id) == {"dfdc/fake/xxx", "dfdc/real/yyy"}
    assert by_id["dfdc/fake/xxx"].label == 1 and by_id["dfdc/real/yyy"].label == 0
    assert {r.official_split for r in by_id.values()} == {"test"}
    assert by_id["dfdc/fake/xxx"].target_id == "xxx"  # labels.csv names no original
    assert corpus.missing == [test / "absent.mp4"]


def test_dfdc_errors(tmp_path: Path, dfdc_root: Path) -> None:
    (tmp_path / "elsewhere" / "videos").mkdir(parents=True)
    with pytest.raises(CrossfakeError, match=r"not a DFDC root: expected folders 'dfdc_train_part_<k>/'.*found: videos/"):
        get_corpus("dfdc", tmp_path / "elsewhere")
    with pytest.raises(CrossfakeError, match="invalid options for corpus 'dfdc'"):
        get_corpus("dfdc", dfdc_root, compression="c23")

    meta = dfdc_root / "dfdc_train_part_1" / "metadata.json"
    meta.write_text("{not json")
    with pytest.raises(CrossfakeError, match="dfdc_train_part_1/metadata.json is not readable JSON"):
        get_corpus("dfdc", dfdc_root).records()
    meta.write_text(json.dumps(["ddd.mp4"]))
    with pytest.raises(CrossfakeError, match="must be a JSON object"):
        get_corpus("dfdc", dfdc_root).records()
    meta.write_text(json.dumps({"ddd.mp4": {"label": "MAYBE"}}))
    with pytest.raises(CrossfakeError, match="'ddd.mp4' must have \"label\": \"FAKE\" or \"REAL\""):
        get_corpus("dfdc", dfdc_root).records()
    meta.write_text(json.dumps({"aaa.mp4": REAL}))
    (dfdc_root / "dfdc_train_part_1" / "aaa.mp4").touch()
    with pytest.raises(CrossfakeError, match="'aaa' is listed in both .*part_0 and .*part_1"):
        get_corpus("dfdc", dfdc_root).records()

    empty = make_part(tmp_path, "empty", {"nothere.mp4": REAL}, [])
    with pytest.raises(CrossfakeError, match="no DFDC videos found .*1 video\\(s\\) listed in the metadata of empty"):
        get_corpus("dfdc", empty).records()
    labels = tmp_path / "labelled"
    labels.mkdir()
    (labels / "labels.csv").write_text("file,is_fake\n")
    with pytest.raises(CrossfakeError, match="labels.csv must have columns filename,label"):
        get_corpus("dfdc", labels).records()
    (labels / "labels.csv").write_text("filename,label\nx.mp4,FAKE\n")
    with pytest.raises(CrossfakeError, match="label of 'x.mp4' must be 0 \\(real\\) or 1 \\(fake\\)"):
        get_corpus("dfdc", labels).records()


def test_dfdc_real_folder(realdata: Path) -> None:
    root = realdata / "dfdc"
    listed: dict[str, dict] = {}
    for meta in sorted(root.glob("*/metadata.json")):
        listed |= {str(meta.parent / name): entry for name, entry in json.loads(meta.read_text()).items()}
    present = {p for p in listed if Path(p).is_file()}
    assert present and len(present) < len(listed)  # the shared copy lacks some listed videos

    corpus = get_corpus("dfdc", root)
    recs = corpus.records()
    assert {str(r.path) for r in recs} == present
    assert {str(p) for p in corpus.missing} == set(listed) - present
    for r in recs:
        entry = listed[str(r.path)]
        assert r.label == (1 if entry["label"] == "FAKE" else 0)
        assert r.manipulation == ("fake" if r.label else "real")
        assert r.official_split == entry["split"]
        if r.label:
            assert r.target_id == Path(entry["original"]).stem  # the original names the identity
    assert {r.name for r in recs} >= {"brtujopkby", "widuwuoiur", "yhffcuhhjy"}
    assert {r.target_id for r in recs} >= {"gnmmhlbzge", "ybqmttnept", "wdpsifpppf"}
