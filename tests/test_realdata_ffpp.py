"""FaceForensics++'s real metadata: YouTube videos grouped, the official split's straddles audited.

The tree is FF++'s real names (1000 originals, both fakes of every official pair) as empty files in
tmp_path; the real ``conversion_dict.json`` and ``train/val/test.json`` are read from the shared real-data
folder (``realdata`` fixture) at test time, never copied into the repository.
"""

from __future__ import annotations

import json
import shutil
from collections import defaultdict
from pathlib import Path

import pandas as pd
import pytest

from crossfake.cli.main import main as cli_main
from crossfake.data.audit import audit_split
from crossfake.data.corpora import VideoRecord, get_corpus
from crossfake.data.corpora.ffpp import youtube_key
from crossfake.data.identity import identity_groups
from crossfake.data.manifest import write_manifest
from crossfake.data.splits import SplitSpec, assign_splits, load_spec
from tests.conftest import MANIPULATIONS, manifest_from_records

# FF++'s originals cut from one YouTube video that its official split puts on two sides (DESIGN.md, Data).
STRADDLING = {("605", "606"), ("639", "640"), ("755", "756"), ("837", "838"), ("875", "876"),
              ("954", "955"), ("982", "983")}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("nUNnFudF2pA 0", "nUNnFudF2pA"),  # the real file's form
        ("nUNnFudF2pA_0", "nUNnFudF2pA"),  # the form some copies (and crossfake synth, once) use
        ("-7K_Oz8lswo 1", "-7K_Oz8lswo"),  # real ids contain '_' and '-'
        ("-7K_Oz8lswo_1", "-7K_Oz8lswo"),
        ("22mAllXi_-g 12", "22mAllXi_-g"),
        ("abc_def 0", "abc_def"),
        ("abc_def_0", "abc_def"),
        ("a-b_c_2_3", "a-b_c_2"),  # only the last index goes
        ("abcdefghi_1", "abcdefghi_1"),  # a bare 11-character id has no index to drop
        (" nUNnFudF2pA 2 ", "nUNnFudF2pA"),
        ("nUNnFudF2pA", "nUNnFudF2pA"),
    ],
)
def test_conversion_dict_values_give_the_youtube_id(value: str, expected: str) -> None:
    assert youtube_key(value) == expected


# -- on the real metadata ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def metadata(realdata: Path) -> Path:
    folder = realdata / "ffpp" / "metadata"
    names = {"conversion_dict.json", "train.json", "val.json", "test.json"}
    assert names <= {p.name for p in folder.iterdir()}, f"{folder} lacks some of {sorted(names)}"
    return folder


@pytest.fixture(scope="module")
def conversion(metadata: Path) -> dict[str, str]:
    return json.loads((metadata / "conversion_dict.json").read_text())


@pytest.fixture(scope="module")
def multi_sequence(conversion: dict[str, str]) -> dict[str, list[str]]:
    """YouTube id -> its originals, for the YouTube videos that supply several (parsed here on its own)."""
    by_video: dict[str, list[str]] = defaultdict(list)
    for original, value in conversion.items():
        video, index = value.rsplit(" ", 1)  # the real form: "<youtube id> <index>"
        assert index.isdigit(), value
        by_video[video].append(original)
    return {v: sorted(ids) for v, ids in by_video.items() if len(ids) > 1}


@pytest.fixture(scope="module")
def records(tmp_path_factory: pytest.TempPathFactory, metadata: Path) -> list[VideoRecord]:
    """The FF++ adapter's records over a tree of FF++'s real names (empty files) and real metadata."""
    root = tmp_path_factory.mktemp("ffpp-real-names")
    pairs = [p for s in ("train", "val", "test") for p in json.loads((metadata / f"{s}.json").read_text())]
    real = root / "original_sequences/youtube/c23/videos"
    real.mkdir(parents=True)
    for original in json.loads((metadata / "conversion_dict.json").read_text()):
        (real / f"{original}.mp4").touch()
    for manipulation in MANIPULATIONS:
        fakes = root / "manipulated_sequences" / manipulation / "c23/videos"
        fakes.mkdir(parents=True)
        for a, b in pairs:
            (fakes / f"{a}_{b}.mp4").touch()
            (fakes / f"{b}_{a}.mp4").touch()
    shutil.copyfile(metadata / "conversion_dict.json", root / "conversion_dict.json")  # tmp, not the repo
    return get_corpus("ffpp", root, split_dir=metadata).records()


@pytest.fixture(scope="module")
def manifest(records: list[VideoRecord]) -> pd.DataFrame:
    return manifest_from_records(records, frames=1)


def test_every_multi_sequence_youtube_video_is_one_identity_group(
    records: list[VideoRecord], conversion: dict[str, str], multi_sequence: dict[str, list[str]]
) -> None:
    assert len(records) == 1000 + len(MANIPULATIONS) * 1000
    assert len(multi_sequence) == 22 and sum(map(len, multi_sequence.values())) == 45
    by_id = {r.name: r for r in records if r.manipulation == "real"}
    assert {youtube_key(v) for v in conversion.values()} == {
        k.removeprefix("youtube:") for r in by_id.values() for k in r.identity_keys
    }
    groups = identity_groups(records)
    for video, originals in multi_sequence.items():
        assert len({groups[f"ffpp/real/{o}"] for o in originals}) == 1, f"{video}: {originals} not grouped"
        assert all(by_id[o].identity_keys == (f"youtube:{video}",) for o in originals)
    # 500 official pairs, linked by the YouTube videos' 23 extra sequences; one link (942/943) is within a pair.
    assert len(set(groups.values())) == 500 - 22


def test_official_split_audit_lists_the_seven_straddling_youtube_videos(
    manifest: pd.DataFrame, multi_sequence: dict[str, list[str]]
) -> None:
    df = assign_splits(manifest, load_spec("ffpp-official"))
    official = df.drop_duplicates("video_id").set_index("video_id")["official_split"]
    straddling = {
        tuple(ids) for ids in multi_sequence.values() if len({official[f"ffpp/real/{i}"] for i in ids}) > 1
    }
    assert straddling == STRADDLING  # the metadata says what DESIGN.md says

    report = audit_split(df)
    assert report.overlaps["people"].sum() == 0  # pairs stay together; only YouTube videos straddle
    assert report.overlaps["groups"].sum() == len(STRADDLING) == len(report.shared_groups)
    for a, b in STRADDLING:
        rows = [
            r for _, r in report.shared_groups.iterrows()
            if any(a in r[s] for s in ("train", "val", "test")) and any(b in r[s] for s in ("train", "val", "test"))
        ]
        assert len(rows) == 1, (a, b)
        side = {s for s in ("train", "val", "test") if a in rows[0][s]}
        other = {s for s in ("train", "val", "test") if b in rows[0][s]}
        assert len(side) == len(other) == 1 and side != other
        assert rows[0]["splits"] == ", ".join(s for s in ("train", "val", "test") if s in side | other)
    text = report.format()
    assert "Identity groups on several sides (7)" in text
    lines = text.splitlines()
    for a, b in STRADDLING:
        assert any(a in line and b in line for line in lines if line.startswith("  ffpp:")), (a, b)
    assert report.leaks


def test_split_and_audit_commands_report_the_straddling_youtube_videos(
    manifest: pd.DataFrame, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "manifest.parquet"
    write_manifest(manifest, path)
    assert cli_main(["split", str(path), "--spec", "ffpp-official"]) == 0
    assert "Identity groups on several sides (7)" in capsys.readouterr().out
    split = tmp_path / "split_ffpp-official_official.parquet"
    assert cli_main(["audit", str(split), "--json", "--strict"]) == 1
    audit = json.loads(capsys.readouterr().out)
    listed = [
        {i for s in ("train", "val", "test") for i in row[s]} for row in audit["shared_groups"]
    ]
    assert len(listed) == 7 and all(any({a, b} <= people for people in listed) for a, b in STRADDLING)
    sidecar = json.loads(split.with_suffix(".json").read_text())
    assert len(sidecar["audit"]["shared_groups"]) == 7


@pytest.mark.parametrize("spec", ["report1", "default 80/10/10"])
def test_identity_splits_share_no_youtube_video(
    manifest: pd.DataFrame, multi_sequence: dict[str, list[str]], spec: str
) -> None:
    if spec == "report1":
        split_spec = load_spec("report1")
    else:
        split_spec = SplitSpec.parse({"manipulations": {m: {"train": 80, "val": 10, "test": 10} for m in ("real", *MANIPULATIONS)}})
    df = assign_splits(manifest, split_spec)
    report = audit_split(df)
    assert not report.leaks and report.shared_groups.empty
    assert report.overlaps[["people", "groups", "videos"]].to_numpy().sum() == 0
    side = df.drop_duplicates("video_id").set_index("video_id")["split"]
    for video, originals in multi_sequence.items():
        assert len({side[f"ffpp/real/{o}"] for o in originals}) == 1, f"{video}: {originals} split apart"
    assert set(side.dropna()) == {"train", "val", "test"}
