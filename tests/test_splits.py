"""Splits: identity-safe default, literal reproduction of the reports' tables, leaky frame split, audit."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from crossfake.data.audit import audit_split
from crossfake.data.corpora import get_corpus
from crossfake.data.splits import (
    SplitMode,
    SplitSpec,
    assign_splits,
    builtin_specs,
    load_spec,
    train_fraction,
)
from crossfake.utils.errors import CrossfakeError
from tests.conftest import make_ffpp_tree, manifest_from_records


@pytest.fixture
def manifest(tmp_path: Path) -> pd.DataFrame:
    root = make_ffpp_tree(tmp_path / "ffpp", n_pairs=50)
    return manifest_from_records(get_corpus("ffpp", root).records(), frames=3)


def people_by_split(df: pd.DataFrame) -> dict[str, set[str]]:
    used = df[df["split"].notna()]
    return {
        s: set(g["target_id"]) | set(g["source_id"]) for s, g in used.groupby("split")
    }


def test_every_shipped_spec_parses():
    assert {"report1", "report1-literal", "report2", "report2-literal", "ffpp-official"} <= set(builtin_specs())
    for name in builtin_specs():
        spec = load_spec(name)
        assert spec.name == name


def test_identity_split_has_no_shared_person(manifest: pd.DataFrame):
    df = assign_splits(manifest, load_spec("report1"))
    people = people_by_split(df)
    assert not (people["train"] & people["test"]) and not (people["train"] & people["val"])
    assert not (people["val"] & people["test"])
    report = audit_split(df)
    assert not report.leaks
    assert report.overlaps[["people", "groups", "videos"]].to_numpy().sum() == 0
    # Manipulations take part only where their share is non-zero.
    by = df.groupby(["manipulation", "split"])["video_id"].nunique().unstack(fill_value=0)
    assert by.loc["NeuralTextures", ["train", "val"]].sum() == 0 and by.loc["NeuralTextures", "test"] > 0
    assert by.loc["FaceSwap", "test"] == 0 and by.loc["FaceSwap", "train"] > 0
    # NeuralTextures test = the NeuralTextures videos of the test identities.
    test_groups = set(df.loc[(df["split"] == "test") & (df["manipulation"] == "real"), "identity_group"])
    nt = df[df["manipulation"] == "NeuralTextures"]
    assert set(nt.loc[nt["split"] == "test", "identity_group"]) == test_groups & set(nt["identity_group"])
    # Identity shares follow the real row (80/10/10) closely.
    real = df[df["manipulation"] == "real"].drop_duplicates("video_id")["split"].value_counts(normalize=True)
    assert real["train"] == pytest.approx(0.8, abs=0.05) and real["test"] == pytest.approx(0.1, abs=0.05)


def test_identity_split_is_deterministic_and_seeded(manifest: pd.DataFrame):
    spec = load_spec("report2")
    a, b = assign_splits(manifest, spec), assign_splits(manifest, spec)
    pd.testing.assert_series_equal(a["split"], b["split"])
    other = assign_splits(manifest, spec.model_copy(update={"seed": 1}))
    assert not a["split"].equals(other["split"])


def test_literal_mode_reproduces_the_table_counts(manifest: pd.DataFrame):
    df = assign_splits(manifest, load_spec("report1-literal"))
    videos = df.drop_duplicates("video_id")
    counts = videos.groupby(["manipulation", "split"]).size().unstack(fill_value=0)
    assert counts.loc["real"].to_dict() == {"train": 80, "val": 10, "test": 10}
    assert counts.loc["FaceSwap"].to_dict() == {"train": 90, "val": 10, "test": 0}
    assert counts.loc["NeuralTextures"].to_dict() == {"train": 0, "val": 0, "test": 100}
    # Frames follow videos: three rows per video, all on one side.
    assert (df.groupby("video_id")["split"].nunique() == 1).all()
    # ...and the audit shows how the literal table leaks identities.
    report = audit_split(df)
    assert report.leaks
    seen = report.test_seen_in_train.set_index("manipulation")
    assert seen.loc["NeuralTextures", "seen"] > 50


def test_frame_mode_is_leaky_on_purpose(manifest: pd.DataFrame):
    spec = load_spec("report2").model_copy(update={"mode": "frame"})
    df = assign_splits(manifest, spec)
    assert (df.groupby("video_id")["split"].nunique() > 1).any()
    assert audit_split(df).overlaps["videos"].sum() > 0


def test_pooled_spec_gives_every_manipulation_the_same_shares(manifest: pd.DataFrame) -> None:
    """The reports' leaky split: every manipulation, the test manipulation's included, on every side, frame by frame."""
    spec = load_spec("report2")
    pooled = spec.pooled(["real", "NeuralTextures", "real"])
    assert pooled.mode == SplitMode.frame and list(pooled.manipulations) == ["real", "NeuralTextures"]
    assert pooled.manipulations["NeuralTextures"].as_tuple() == (70, 20, 10)
    df = assign_splits(manifest, pooled)
    assert set(df.loc[df["manipulation"] == "NeuralTextures", "split"].dropna()) == {"train", "val", "test"}
    assert df.loc[df["manipulation"] == "FaceSwap", "split"].isna().all()  # not listed: no split
    assert (df.groupby("video_id")["split"].nunique() > 1).any()
    with pytest.raises(CrossfakeError, match=r"report2.*no manipulation\(s\) \['Deepfakes'\]"):
        spec.pooled(["real", "Deepfakes"])


def test_official_mode_keeps_pairs_and_reports_youtube_straddle(manifest: pd.DataFrame):
    df = assign_splits(manifest, load_spec("ffpp-official"))
    assert (df["split"] == df["official_split"]).all()
    report = audit_split(df)
    # 004 (train) and 099 (test) come from one YouTube video: same group on two sides.
    assert report.overlaps.set_index("pair").loc["train-test", "groups"] >= 1
    assert report.overlaps["people"].sum() == 0
    # ...and names that group with the people on each side, not only a count.
    shared = report.shared_groups.set_index("group")
    assert shared.loc["ffpp:person:004", ["splits", "train", "val", "test"]].tolist() == [
        "train, test", ["004", "005"], [], ["098", "099"]
    ]
    assert "ffpp:person:004   train: 004, 005   test: 098, 099" in report.format()
    assert report.to_dict()["shared_groups"] == shared.reset_index().to_dict(orient="records")


def test_unlisted_and_zero_share_rows_get_no_split(manifest: pd.DataFrame):
    spec = SplitSpec.parse({"manipulations": {"real": {"train": 50, "test": 50}, "FaceSwap": {"train": 100}}})
    df = assign_splits(manifest, spec)
    assert df.loc[df["manipulation"] == "Face2Face", "split"].isna().all()
    assert not (df["split"] == "val").any()


def test_bad_specs_fail_at_parse_time(manifest: pd.DataFrame, tmp_path: Path):
    with pytest.raises(CrossfakeError, match="exceeds 100%"):
        SplitSpec.parse({"manipulations": {"real": {"train": 80, "val": 20, "test": 10}}})
    with pytest.raises(CrossfakeError, match="manipulations.real.tarin: unknown key"):
        SplitSpec.parse({"manipulations": {"real": {"tarin": 80}}})
    with pytest.raises(CrossfakeError, match="mode: Input should be"):
        SplitSpec.parse({"mode": "random", "manipulations": {"real": {"train": 80}}})
    with pytest.raises(CrossfakeError, match="identity mode needs"):
        SplitSpec.parse({"manipulations": {"FaceSwap": {"train": 80}}})
    with pytest.raises(CrossfakeError, match=r"no split spec at report9 \(shipped: .*report1"):
        load_spec("report9")
    bad = tmp_path / "bad.yaml"
    bad.write_text("manipulations: [1, 2\n")
    with pytest.raises(CrossfakeError, match="bad.yaml is not valid YAML"):
        load_spec(bad)
    spec = SplitSpec.parse({"manipulations": {"real": {"train": 80}, "Deepfakes": {"test": 100}}})
    with pytest.raises(CrossfakeError, match="Deepfakes.*absent from the manifest"):
        assign_splits(manifest, spec)


def test_train_fraction_samples_whole_training_videos(manifest: pd.DataFrame):
    df = assign_splits(manifest, load_spec("report2"))
    half = train_fraction(df, 0.5, seed=0)
    n = lambda d, s: d.loc[d["split"] == s, "video_id"].nunique()  # noqa: E731
    assert n(half, "train") == pytest.approx(n(df, "train") / 2, abs=2)
    assert n(half, "test") == n(df, "test") and n(half, "val") == n(df, "val")
    assert (half.groupby("video_id").size() == 3).all()
    with pytest.raises(CrossfakeError):
        train_fraction(df, 0)


def test_identity_assignment_depends_on_neither_row_order_nor_other_groups(ffpp_tree: Path) -> None:
    # Groups are visited in a seeded order of their names: shuffled rows (which reorder value_counts' ties)
    # or one lost video (a group one video smaller) must not reshuffle the other groups' sides.
    df = manifest_from_records(get_corpus("ffpp", ffpp_tree).records())
    spec = load_spec("report1")
    sides = assign_splits(df, spec).groupby("identity_group")["split"].first()
    shuffled = assign_splits(df.sample(frac=1, random_state=3), spec)
    assert shuffled.groupby("identity_group")["split"].first().equals(sides)
    lost = df["video_id"] == df.loc[df["manipulation"] == "FaceSwap", "video_id"].iloc[0]
    fewer = assign_splits(df[~lost], spec).groupby("identity_group")["split"].first()
    assert fewer.equals(sides.loc[fewer.index])


def test_old_split_spec_key_sources_is_read_as_manipulations(manifest: pd.DataFrame, tmp_path: Path) -> None:
    shares = {"real": {"train": 80, "val": 10, "test": 10}, "FaceSwap": {"train": 100}}
    new = SplitSpec.parse({"name": "s", "manipulations": shares})
    assert SplitSpec.parse({"name": "s", "sources": shares}) == new
    old_file = tmp_path / "old.yaml"
    old_file.write_text("name: s\nsources:\n  real: {train: 80, val: 10, test: 10}\n  FaceSwap: {train: 100}\n")
    assert load_spec(old_file) == new
    with pytest.raises(CrossfakeError, match="both `sources`.*and `manipulations`"):
        SplitSpec.parse({"sources": shares, "manipulations": shares})


def test_a_manifest_written_before_the_rename_still_reads_and_splits(manifest: pd.DataFrame, tmp_path: Path) -> None:
    """Manifests of earlier versions name the columns dataset, method and detector."""
    from crossfake.data.manifest import read_manifest

    old = manifest.rename(columns={"corpus": "dataset", "manipulation": "method", "face_detector": "detector"})
    path = tmp_path / "manifest.parquet"
    old.to_parquet(path, index=False)
    df = read_manifest(path)
    assert {"corpus", "manipulation", "face_detector"} <= set(df.columns)
    assert not {"dataset", "method", "detector"} & set(df.columns)
    assert (df["manipulation"] == manifest["manipulation"]).all() and (df["corpus"] == "ffpp").all()
    split = assign_splits(df, load_spec("report1"))
    pd.testing.assert_series_equal(split["split"], assign_splits(manifest, load_spec("report1"))["split"])
