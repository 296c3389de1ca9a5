"""The synthetic FaceForensics++: layout, metadata, determinism, detectability, artifacts, resuming."""

from __future__ import annotations

import json
import re
from pathlib import Path

import av
import numpy as np
import pytest

from crossfake.cli.main import main as cli_main
from crossfake.data.synth import SynthConfig, synthesize
from crossfake.data.synth.faces import face_detected
from crossfake.data.synth.manipulations import MANIPULATIONS
from crossfake.data.synth.writer import plan_corpus
from crossfake.utils.errors import CrossfakeError

SMALL = SynthConfig(n_videos=8, n_frames=8)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synthesize(tmp_path_factory.mktemp("synth") / "ffpp", SMALL)


def decode(path: Path) -> np.ndarray:
    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


def real_path(root: Path, name: str, compression: str = "c23") -> Path:
    return root / "original_sequences" / "youtube" / compression / "videos" / f"{name}.mp4"


def fake_path(root: Path, manipulation: str, name: str, compression: str = "c23") -> Path:
    return root / "manipulated_sequences" / manipulation / compression / "videos" / f"{name}.mp4"


def load(root: Path, name: str) -> object:
    return json.loads((root / name).read_text())


# -- layout and metadata --------------------------------------------------------------------------


def test_layout_is_exactly_ffpp(corpus: Path) -> None:
    pairs = [tuple(p) for s in ("train", "val", "test") for p in load(corpus, f"{s}.json")]
    names = [f"{i:03d}" for i in range(SMALL.n_videos)]
    expected = {f"original_sequences/youtube/c23/videos/{n}.mp4" for n in names}
    for manipulation in MANIPULATIONS:
        for a, b in pairs:
            expected |= {
                f"manipulated_sequences/{manipulation}/c23/videos/{a}_{b}.mp4",
                f"manipulated_sequences/{manipulation}/c23/videos/{b}_{a}.mp4",
            }
    expected |= {"train.json", "val.json", "test.json", "conversion_dict.json", "synth.json"}
    found = {str(p.relative_to(corpus)) for p in corpus.rglob("*") if p.is_file()}
    assert found == expected  # no temporary files left behind either

    video = decode(real_path(corpus, "000"))
    assert video.shape == (SMALL.n_frames, 192, 256, 3)
    with av.open(str(real_path(corpus, "000"))) as c:
        stream = c.streams.video[0]
        assert (stream.codec_context.name, stream.codec_context.pix_fmt) == ("h264", "yuv420p")
        assert stream.average_rate == 25


def test_split_files_pair_every_original_once(corpus: Path) -> None:
    splits = {s: load(corpus, f"{s}.json") for s in ("train", "val", "test")}
    for pairs in splits.values():
        assert pairs and all(
            isinstance(p, list) and len(p) == 2 and all(re.fullmatch(r"\d{3}", i) for i in p) for p in pairs
        )
    ids = [i for pairs in splits.values() for p in pairs for i in p]
    assert sorted(ids) == [f"{i:03d}" for i in range(SMALL.n_videos)]
    assert [len(splits[s]) for s in ("train", "val", "test")] == [2, 1, 1]
    # Both fakes of every pair exist (so both sit in the pair's split).
    for a, b in (p for pairs in splits.values() for p in pairs):
        for manipulation in MANIPULATIONS:
            assert (
                fake_path(corpus, manipulation, f"{a}_{b}").is_file()
                and fake_path(corpus, manipulation, f"{b}_{a}").is_file()
            )


@pytest.mark.parametrize(
    ("n_videos", "expected"), [(8, (2, 1, 1)), (24, (8, 2, 2)), (100, (36, 7, 7)), (1000, (360, 70, 70))]
)
def test_split_proportions_follow_ffpp(n_videos: int, expected: tuple[int, int, int]) -> None:
    plan = plan_corpus(SynthConfig(n_videos=n_videos))
    assert tuple(len(plan.splits[s]) for s in ("train", "val", "test")) == expected


def test_conversion_dict_shares_youtube_videos_like_ffpp(corpus: Path) -> None:
    conversion = load(corpus, "conversion_dict.json")
    meta = load(corpus, "synth.json")["videos"]
    assert sorted(conversion) == [f"{i:03d}" for i in range(SMALL.n_videos)]
    # FF++'s format: an 11-character YouTube id, a space and the sequence index within that video.
    assert all(re.fullmatch(r"[A-Za-z0-9]{11} \d", v) for v in conversion.values())
    by_video: dict[str, list[str]] = {}
    for name, value in conversion.items():
        by_video.setdefault(value[:11], []).append(name)
    shared = [names for names in by_video.values() if len(names) > 1]
    assert len(shared) == SMALL.shared_youtube and all(len(n) == 2 for n in shared)
    for a, b in shared:
        # Same person, different clip; never the two originals of one pair.
        assert meta[a]["identity"] == meta[b]["identity"]
        assert meta[a]["identity_params"] == meta[b]["identity_params"]
        assert meta[a]["face_boxes"] != meta[b]["face_boxes"]
        assert meta[a]["pair"] != b
    assert any(meta[a]["split"] != meta[b]["split"] for a, b in shared)  # like FF++'s 605/606
    unshared = [n[0] for n in by_video.values() if len(n) == 1]
    assert len({meta[n]["identity"] for n in unshared}) == len(unshared)


@pytest.mark.parametrize("n_videos", [8, 24, 100])
def test_plan_shares_youtube_videos_across_splits_but_never_within_a_pair(n_videos: int) -> None:
    for seed in range(10):
        plan = plan_corpus(SynthConfig(n_videos=n_videos, seed=seed))
        by_video: dict[str, list[str]] = {}
        for o in plan.originals.values():
            by_video.setdefault(o.youtube[:11], []).append(o.split)
        shared = [s for s in by_video.values() if len(s) == 2]
        assert len(shared) == 2 and any(a != b for a, b in shared)
        for a, b in plan.pairs:
            assert plan.originals[a].identity != plan.originals[b].identity


def test_synth_json_records_config_and_ground_truth(corpus: Path) -> None:
    meta = load(corpus, "synth.json")
    assert meta["config"] == SMALL.to_dict()
    assert meta["frame_size"] == [256, 192]
    assert meta["n_identities"] == SMALL.n_videos - SMALL.shared_youtube
    for name, video in meta["videos"].items():
        assert len(video["face_boxes"]) == SMALL.n_frames
        x, y, w, h = video["face_boxes"][0]
        assert 0.3 <= h / 192 <= 0.5  # the face fills 30-50% of the frame height
        assert video["split"] in ("train", "val", "test")
        assert meta["videos"][video["pair"]]["pair"] == name


def test_the_ffpp_reader_accepts_it(corpus: Path) -> None:
    from crossfake.data.corpora.ffpp import FaceForensics

    records = FaceForensics(corpus).records()
    assert len(records) == SMALL.n_videos * (1 + len(MANIPULATIONS))
    assert {r.official_split for r in records} == {"train", "val", "test"}
    assert (
        len(set(FaceForensics(corpus).youtube_videos().values())) == SMALL.n_videos - SMALL.shared_youtube
    )


# -- content --------------------------------------------------------------------------------------


def test_haar_finds_the_face_in_at_least_95_percent_of_frames(corpus: Path) -> None:
    meta = load(corpus, "synth.json")["videos"]
    frames = range(0, SMALL.n_frames, 2)
    kinds = {"original": [(real_path(corpus, n), n) for n in meta]}
    for manipulation in MANIPULATIONS:
        kinds[manipulation] = [
            (p, p.stem.split("_")[0]) for p in sorted(fake_path(corpus, manipulation, "x").parent.iterdir())
        ]
    for kind, videos in kinds.items():
        hits = []
        for path, target in videos:
            video = decode(path)
            hits += [face_detected(video[t], meta[target]["face_boxes"][t]) for t in frames]
        assert np.mean(hits) >= 0.95, f"{kind}: Haar found {sum(hits)}/{len(hits)} faces"


def _region_differences(corpus: Path, manipulation: str) -> dict[str, float]:
    """Mean |fake - original| in the upper face (eyes, brows), lower face (mouth) and background."""
    meta = load(corpus, "synth.json")["videos"]
    sums: dict[str, list[float]] = {"upper": [], "lower": [], "background": []}
    for path in sorted(fake_path(corpus, manipulation, "x").parent.iterdir()):
        target = path.stem.split("_")[0]
        diff = np.abs(decode(path).astype(float) - decode(real_path(corpus, target)).astype(float)).mean(-1)
        for t, d in enumerate(diff):
            x, y, w, h = meta[target]["face_boxes"][t]
            sums["upper"].append(d[y : y + int(0.45 * h), x + w // 6 : x + w - w // 6].mean())
            sums["lower"].append(d[y + int(0.7 * h) : y + h, x + w // 4 : x + w - w // 4].mean())
            outside = np.ones_like(d, bool)
            outside[max(0, y - h // 2) : y + 2 * h, max(0, x - w // 2) : x + w + w // 2] = False
            sums["background"].append(d[outside].mean())
    return {k: float(np.mean(v)) for k, v in sums.items()}


def test_each_manipulation_changes_its_own_region(corpus: Path) -> None:
    diff = {m: _region_differences(corpus, m) for m in MANIPULATIONS}
    for manipulation, d in diff.items():
        # The footage around the face is the target's (only re-encoding noise differs).
        assert d["background"] < 1.5, (manipulation, d)
        assert max(d["upper"], d["lower"]) > 2 * d["background"], (manipulation, d)
    # NeuralTextures re-renders only the mouth.
    assert diff["NeuralTextures"]["lower"] > 1.5 * diff["NeuralTextures"]["upper"], diff["NeuralTextures"]
    # The swaps replace the eyes and brows too, by far the most.
    for manipulation in ("FaceSwap", "Deepfakes"):
        assert diff[manipulation]["upper"] > 3 * diff["NeuralTextures"]["upper"], diff
        assert diff[manipulation]["lower"] > 1.5 * diff["NeuralTextures"]["upper"], diff
    # Face2Face keeps the identity: closer to the original than either swap.
    assert diff["Face2Face"]["upper"] < 0.8 * min(diff["FaceSwap"]["upper"], diff["Deepfakes"]["upper"]), diff


def test_fakes_of_one_manipulation_are_not_a_constant_pattern(corpus: Path) -> None:
    residuals = [
        decode(fake_path(corpus, "NeuralTextures", p.stem)).astype(float)
        - decode(real_path(corpus, p.stem.split("_")[0]))
        for p in sorted(fake_path(corpus, "NeuralTextures", "x").parent.iterdir())[:2]
    ]
    assert not np.allclose(residuals[0], residuals[1], atol=2)


# -- determinism ----------------------------------------------------------------------------------


def test_same_seed_same_corpus_other_seed_different(tmp_path: Path) -> None:
    config = SynthConfig(n_videos=8, n_frames=3, manipulations=("FaceSwap",))
    a = synthesize(tmp_path / "a", config, workers=1)
    b = synthesize(tmp_path / "b", config, workers=2)  # the worker count must not matter
    c = synthesize(tmp_path / "c", SynthConfig(n_videos=8, n_frames=3, manipulations=("FaceSwap",), seed=1))
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    for rel in files:
        if rel.suffix == ".json":
            assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel
        else:
            assert np.array_equal(decode(a / rel), decode(b / rel)), rel
    assert not np.array_equal(decode(real_path(a, "000")), decode(real_path(c, "000")))
    fake = next(rel for rel in files if rel.parts[0] == "manipulated_sequences")
    if (c / fake).is_file():  # the other seed pairs the originals differently
        assert not np.array_equal(decode(a / fake), decode(c / fake))
    assert load(a, "conversion_dict.json") != load(c, "conversion_dict.json")


# -- config and resuming --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"n_videos": 7},
        {"n_videos": 6},
        {"n_videos": 1002},
        {"n_frames": 0},
        {"size": 100},
        {"size": 250},
        {"fps": 0},
        {"seed": -1},
        {"manipulations": ("FaceShifter",)},
        {"manipulations": ()},
        {"compression": "c10"},
        {"n_videos": 8, "shared_youtube": 3},
        {"shared_youtube": -1},
        {"n_frames": 2.5},
        {"n_videos": True},
    ],
)
def test_bad_config_raises_crossfake_error(kwargs: dict) -> None:
    with pytest.raises(CrossfakeError, match="synth config"):
        SynthConfig(**kwargs)


def test_manipulations_are_normalised_to_the_official_order() -> None:
    assert SynthConfig(manipulations=["NeuralTextures", "FaceSwap", "FaceSwap"]).manipulations == (
        "FaceSwap",
        "NeuralTextures",
    )


def test_rerun_rewrites_only_missing_videos(tmp_path: Path) -> None:
    config = SynthConfig(n_videos=8, n_frames=2, manipulations=("Deepfakes", "NeuralTextures"), compression="c40")
    root = synthesize(tmp_path / "ffpp", config)
    assert (root / "original_sequences/youtube/c40/videos/000.mp4").is_file()
    files = sorted(p for p in root.rglob("*") if p.is_file())
    victim = sorted(fake_path(root, "NeuralTextures", "x", "c40").parent.iterdir())[0]
    before = decode(victim)
    mtimes = {p: p.stat().st_mtime_ns for p in files}
    victim.unlink()
    stale = victim.parent / f".{victim.name}.abc123.tmp.mp4"  # as a killed run would leave it
    stale.write_bytes(b"half a video")
    synthesize(root, config)
    assert not stale.exists()
    assert np.array_equal(decode(victim), before)
    for p in files:
        if p != victim:
            assert p.stat().st_mtime_ns == mtimes[p], p
    # A synth.json written before `methods` was renamed `manipulations` is the same config.
    meta = json.loads((root / "synth.json").read_text())
    meta["config"]["methods"] = meta["config"].pop("manipulations")
    (root / "synth.json").write_text(json.dumps(meta))
    synthesize(root, config)
    assert decode(victim).shape == before.shape
    with pytest.raises(CrossfakeError, match="not written by crossfake synth"):
        (tmp_path / "real-ffpp" / "original_sequences").mkdir(parents=True)
        synthesize(tmp_path / "real-ffpp", config)
    with pytest.raises(CrossfakeError, match="different config"):
        synthesize(
            root,
            SynthConfig(n_videos=8, n_frames=3, manipulations=("Deepfakes", "NeuralTextures"), compression="c40"),
        )


def test_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cli"
    argv = [
        "synth",
        str(out),
        "--videos",
        "8",
        "--frames",
        "2",
        "--size",
        "128",
        "--manipulations",
        "FaceSwap,Face2Face",
        "--compression",
        "raw",
        "--seed",
        "3",
    ]
    assert cli_main(argv) == 0
    printed = capsys.readouterr().out
    assert "FaceSwap" in printed and "Face2Face" in printed and "Deepfakes" not in printed
    assert sorted(p.name for p in (out / "manipulated_sequences").iterdir()) == ["Face2Face", "FaceSwap"]
    assert decode(real_path(out, "000", "raw")).shape == (2, 96, 128, 3)
    assert load(out, "synth.json")["config"]["seed"] == 3
    assert cli_main(["synth", str(tmp_path / "bad"), "--videos", "9"]) == 2
    assert "n_videos must be even" in capsys.readouterr().err


def test_default_threads_follow_the_shared_worker_rule(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without ``workers``, synth uses :func:`crossfake.utils.workers.default_workers` (at least 1 thread),
    the rule of every other pool, not its own CPU count."""
    from crossfake.data.synth import writer

    used: list[int] = []
    real_map = writer._parallel_map
    monkeypatch.setattr(writer, "default_workers", lambda: 3)
    monkeypatch.setattr(writer, "_parallel_map", lambda fn, items, workers: used.append(workers)
                        or real_map(fn, items, 1))
    synthesize(tmp_path / "a", SynthConfig(n_videos=8, n_frames=2, manipulations=("FaceSwap",)), progress=False)
    assert used and set(used) == {3}
    monkeypatch.setattr(writer, "default_workers", lambda: 0)  # a single CPU: the main thread alone
    used.clear()
    synthesize(tmp_path / "b", SynthConfig(n_videos=8, n_frames=2, manipulations=("FaceSwap",)), progress=False)
    assert set(used) == {1}
