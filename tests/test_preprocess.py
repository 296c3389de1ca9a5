"""Frame sampling, decoding, face detection, cropping and the resumable ``prepare`` runner."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import cv2
import numpy as np
import pandas as pd
import pytest

from crossfake.data.corpora import get_corpus
from crossfake.data.corpora.base import VideoRecord
from crossfake.data.manifest import COLUMNS, FAILURE_COLUMNS, read_manifest, resolve_paths
from crossfake.data.preprocess import (
    Face,
    PrepareConfig,
    VideoReadError,
    create_face_detector,
    largest_face,
    list_face_detectors,
    prepare,
    register_face_detector,
    sample_frames,
    sample_indices,
    square_box,
)
from crossfake.data.preprocess.crop import center_box, crop_square
from crossfake.data.preprocess.face_detectors.haar import HaarDetector
from crossfake.data.preprocess.video import count_frames, decode_frames
from crossfake.data.synth import SynthConfig, synthesize
from crossfake.utils.errors import CrossfakeError

# -- media fixtures -----------------------------------------------------------------------------------


def draw_face(img: np.ndarray, cx: int, cy: int, h: int) -> np.ndarray:
    """Draw a shaded cartoon face of height ``h`` centred at (cx, cy); Haar's frontal cascade finds it."""
    w = int(h * 0.78)
    cv2.ellipse(img, (cx, cy), (w // 2, h // 2), 0, 0, 360, (205, 170, 150), -1, cv2.LINE_AA)
    cv2.ellipse(
        img, (cx, cy - int(h * 0.32)), (w // 2, int(h * 0.2)), 0, 180, 360, (60, 40, 30), -1, cv2.LINE_AA
    )
    ey, ex = cy - int(h * 0.08), int(w * 0.22)
    for s in (-1, 1):
        x = cx + s * ex
        cv2.ellipse(
            img, (x, ey), (int(w * 0.11), int(h * 0.045)), 0, 0, 360, (245, 245, 245), -1, cv2.LINE_AA
        )
        cv2.circle(img, (x, ey), int(h * 0.035), (40, 30, 30), -1, cv2.LINE_AA)
        brow = ((x - int(w * 0.13), ey - int(h * 0.1)), (x + int(w * 0.13), ey - int(h * 0.11)))
        cv2.line(img, *brow, (50, 35, 30), max(2, int(h * 0.03)), cv2.LINE_AA)
    nose = np.array(
        [
            [cx, ey + int(h * 0.02)],
            [cx - int(w * 0.09), cy + int(h * 0.14)],
            [cx + int(w * 0.05), cy + int(h * 0.15)],
        ],
        np.int32,
    )
    cv2.fillPoly(img, [nose], (165, 130, 115), cv2.LINE_AA)
    cv2.ellipse(
        img,
        (cx, cy + int(h * 0.28)),
        (int(w * 0.2), int(h * 0.06)),
        0,
        0,
        360,
        (140, 60, 60),
        -1,
        cv2.LINE_AA,
    )
    return img


def background(w: int, h: int, seed: int = 0) -> np.ndarray:
    """Dark, smooth noise: a plausible scene on which the cartoon face stands out."""
    noise = np.random.default_rng(seed).integers(20, 90, (h, w, 3), dtype=np.uint8)
    return cv2.GaussianBlur(noise, (0, 0), 3)


def write_video(path: Path, frames: list[np.ndarray], fps: int = 25, **container_options: str) -> Path:
    """Encode RGB frames with H.264 (yuv420p) into ``path``."""
    h, w = frames[0].shape[:2]
    with av.open(str(path), "w", options=container_options) as c:
        stream = c.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        for img in frames:
            c.mux(stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")))
        c.mux(stream.encode())
    return path


def face_video(path: Path, n: int = 10, size: tuple[int, int] = (240, 180), face: bool = True) -> Path:
    w, h = size
    bg = background(w, h)
    frames = [
        draw_face(bg.copy(), w // 2 + i % 5, h // 2, int(h * 0.6)) if face else bg.copy() for i in range(n)
    ]
    return write_video(path, frames)


def coded_frame(i: int, w: int = 128, h: int = 96) -> np.ndarray:
    """A frame whose top carries ``i`` in 8 black/white blocks and whose bottom is pure red."""
    img = np.zeros((h, w, 3), np.uint8)
    for bit in range(8):
        if i >> bit & 1:
            img[: h * 2 // 3, bit * w // 8 : (bit + 1) * w // 8] = 255
    img[h * 3 // 4 :] = (255, 0, 0)
    return img


def read_code(rgb: np.ndarray) -> int:
    h, w = rgb.shape[:2]
    top = rgb[4 : h * 2 // 3 - 4].mean(axis=(0, 2))
    return sum(1 << bit for bit in range(8) if top[bit * w // 8 + 4 : (bit + 1) * w // 8 - 4].mean() > 128)


def record(
    path: Path, manipulation: str = "real", name: str | None = None, label: int | None = None
) -> VideoRecord:
    name = name or path.stem
    return VideoRecord(
        path=path,
        corpus="test",
        manipulation=manipulation,
        name=name,
        label=int(manipulation != "real") if label is None else label,
        target_id=name,
        source_id=name,
    )


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One of each kind of input the runner must handle, written once for the module."""
    d = tmp_path_factory.mktemp("media")
    out = {
        "face": face_video(d / "face.mp4", n=10),
        "face2": face_video(d / "face2.mp4", n=6, size=(200, 160)),
        "noface": face_video(d / "noface.mp4", n=4, face=False),
        "coded": write_video(d / "coded.mp4", [coded_frame(i) for i in range(30)]),
        "coded_mkv": write_video(d / "coded.mkv", [coded_frame(i) for i in range(30)]),
    }
    image = draw_face(background(200, 200, seed=1), 100, 100, 120)
    cv2.imwrite(str(d / "still.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    out["image"] = d / "still.png"
    (d / "empty.mp4").write_bytes(b"")
    out["empty"] = d / "empty.mp4"
    (d / "corrupt.mp4").write_bytes(np.random.default_rng(0).bytes(20_000))
    out["corrupt"] = d / "corrupt.mp4"
    # moov atom first, then cut in half: opens with a frame count of 30 but decoding fails part-way.
    full = write_video(
        d / "full.mp4", [background(160, 120, seed=i) for i in range(30)], movflags="faststart"
    )
    (d / "truncated.mp4").write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    out["truncated"] = d / "truncated.mp4"
    with av.open(str(d / "audio.m4a"), "w") as c:
        stream = c.add_stream("aac", rate=16000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        frame.sample_rate = 16000
        c.mux(stream.encode(frame))
        c.mux(stream.encode())
    out["audio"] = d / "audio.m4a"
    return out


# -- sampling and decoding ----------------------------------------------------------------------------


def test_uniform_sampling_matches_deepfakebench() -> None:
    assert sample_indices(100, "uniform", frames=5) == [0, 24, 49, 74, 99]
    assert sample_indices(300, "uniform", frames=32) == np.linspace(0, 299, 32, dtype=int).tolist()
    assert len(set(sample_indices(33, "uniform", frames=32))) == 32


def test_short_videos_give_all_their_frames() -> None:
    assert sample_indices(5, "uniform", frames=32) == [0, 1, 2, 3, 4]
    assert sample_indices(1, "uniform", frames=32) == [0]
    assert sample_indices(0, "uniform", frames=32) == []


def test_every_and_all_sampling() -> None:
    assert sample_indices(10, "every", every=3) == [0, 3, 6, 9]
    assert sample_indices(2, "every", every=5) == [0]
    assert sample_indices(4, "all") == [0, 1, 2, 3]
    with pytest.raises(ValueError):
        sample_indices(10, "sometimes")


def test_decode_returns_the_requested_frames_as_rgb(media: dict[str, Path]) -> None:
    got = dict(decode_frames(media["coded"], [0, 7, 13, 29]))
    assert sorted(got) == [0, 7, 13, 29]
    for idx, rgb in got.items():
        assert rgb.dtype == np.uint8 and rgb.shape == (96, 128, 3)
        assert read_code(rgb) == idx
        red = rgb[80:].reshape(-1, 3).mean(axis=0)
        assert red[0] > 200 and red[1] < 60 and red[2] < 60, "channels are not in RGB order"


def test_indices_past_the_end_are_absent(media: dict[str, Path]) -> None:
    assert [i for i, _ in decode_frames(media["coded"], [28, 29, 30, 45])] == [28, 29]


def test_frame_count_with_and_without_container_metadata(media: dict[str, Path]) -> None:
    with av.open(str(media["coded_mkv"])) as c:
        assert c.streams.video[0].frames == 0  # Matroska stores no count: packets are counted instead
    assert count_frames(media["coded"]) == 30
    assert count_frames(media["coded_mkv"]) == 30
    indices, frames = sample_frames(media["coded_mkv"], "uniform", frames=4)
    assert indices == [0, 9, 19, 29]
    assert [read_code(rgb) for _, rgb in frames] == indices


def test_image_is_a_single_frame(media: dict[str, Path]) -> None:
    indices, frames = sample_frames(media["image"], "uniform", frames=32)
    frames = list(frames)
    assert indices == [0] and frames[0][0] == 0 and frames[0][1].shape == (200, 200, 3)


@pytest.mark.parametrize(
    ("kind", "stage", "reason"),
    [
        ("empty", "open", "Invalid data found when processing input"),
        ("corrupt", "open", "Invalid data found when processing input"),
        ("audio", "open", "no video stream"),
    ],
)
def test_unreadable_files_raise_with_a_reason(
    media: dict[str, Path], kind: str, stage: str, reason: str
) -> None:
    with pytest.raises(VideoReadError) as info:
        sample_frames(media[kind])
    assert info.value.stage == stage and info.value.reason == reason
    assert isinstance(info.value, CrossfakeError)


def test_missing_and_broken_images_raise(tmp_path: Path) -> None:
    (tmp_path / "broken.png").write_bytes(b"not a png")
    for name, reason in (("broken.png", "not a readable image"), ("absent.jpg", "No such file or directory")):
        with pytest.raises(VideoReadError, match=reason):
            sample_frames(tmp_path / name)


def test_truncated_video_gives_a_prefix_of_its_frames(media: dict[str, Path]) -> None:
    indices, frames = sample_frames(media["truncated"], "all")
    assert len(indices) == 30  # the container still claims 30 frames
    decoded = []
    try:
        for idx, _ in frames:
            decoded.append(idx)
    except VideoReadError as e:  # whether the cut packet raises depends on where it falls
        assert e.stage == "decode"
    assert 0 < len(decoded) < 30 and decoded == list(range(len(decoded)))


# -- face detectors --------------------------------------------------------------------------------------


def test_haar_finds_the_drawn_face_and_scores_it(media: dict[str, Path]) -> None:
    face_detector = create_face_detector("haar")
    for _, rgb in decode_frames(media["face"], range(10)):
        faces = face_detector(rgb)
        assert len(faces) == 1
        f = faces[0]
        # The face is drawn 108 px tall around (120 + i, 90); the box must overlap it well.
        assert abs((f.x0 + f.x1) / 2 - 122) < 15 and abs((f.y0 + f.y1) / 2 - 90) < 15
        assert 60 < f.width < 140 and f.score > 0
    assert face_detector(background(240, 180)) == []


def test_haar_downscales_large_frames_and_maps_boxes_back() -> None:
    frame = draw_face(background(1280, 960), 640, 480, 480)
    full = HaarDetector(max_side=None)(frame)
    small = HaarDetector(max_side=320)(frame)
    assert len(full) == 1 and len(small) == 1
    for a, b in zip(
        (full[0].x0, full[0].y0, full[0].x1, full[0].y1),
        (small[0].x0, small[0].y0, small[0].x1, small[0].y1),
        strict=True,
    ):
        assert abs(a - b) < 0.08 * full[0].width


def test_face_detector_registry_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert {"haar", "yunet", "dlib"} <= set(list_face_detectors())
    with pytest.raises(CrossfakeError, match="unknown face detector 'retinaface'"):
        create_face_detector("retinaface")
    monkeypatch.setenv("CROSSFAKE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("CROSSFAKE_OFFLINE", "1")
    with pytest.raises(CrossfakeError, match="face_detection_yunet_2023mar.onnx.*--face-detector-weights"):
        create_face_detector("yunet")
    with pytest.raises(CrossfakeError, match="does not exist"):
        create_face_detector("yunet", weights=tmp_path / "yunet.onnx")
    with pytest.raises(CrossfakeError, match="haar.*threshold"):
        create_face_detector("haar", threshold=0.5)
    with pytest.raises(CrossfakeError, match="not found"):
        create_face_detector("haar", weights=tmp_path / "missing.xml")


# -- crop geometry --------------------------------------------------------------------------------------


def test_largest_face_by_area() -> None:
    faces = [Face(0, 0, 10, 10, 0.9), Face(50, 50, 80, 75, 0.1), Face(0, 0, 20, 5, 1.0)]
    assert largest_face(faces) == faces[1]
    assert largest_face([]) is None


def test_square_box_grows_the_longer_side_around_the_centre() -> None:
    assert square_box(Face(100, 50, 140, 130, 1.0), margin=1.3) == (
        68,
        38,
        172,
        142,
    )  # side 104 around (120, 90)
    assert square_box(Face(10, 10, 20, 20, 1.0), margin=1.0) == (10, 10, 20, 20)
    assert center_box(200, 100) == (50, 0, 150, 100)


def test_crop_pads_with_black_outside_the_frame() -> None:
    image = np.full((100, 100, 3), 200, np.uint8)
    crop = crop_square(image, (-50, -50, 50, 50), size=100)
    assert crop.shape == (100, 100, 3)
    assert (crop[:50, :] == 0).all() and (crop[:, :50] == 0).all() and (crop[50:, 50:] == 200).all()
    assert crop_square(image, (0, 0, 100, 100), size=32).shape == (32, 32, 3)


# -- the runner -----------------------------------------------------------------------------------------


@register_face_detector("test-two-faces")
class TwoFaces:
    """Two fixed boxes per frame: a small confident one and a larger, less confident one."""

    def __init__(self) -> None:
        pass

    def __call__(self, rgb: np.ndarray) -> list[Face]:
        return [Face(0, 0, 20, 20, 0.99), Face(100, 40, 160, 120, 0.5)]


@register_face_detector("test-counting")
class CountingHaar(HaarDetector):
    """Haar that counts its calls (runs in this process only: use workers=0)."""

    calls = 0

    def __call__(self, rgb: np.ndarray) -> list[Face]:
        type(self).calls += 1
        return super().__call__(rgb)


@register_face_detector("test-slow")
class SlowHaar(HaarDetector):
    """Haar taking at least 30 ms a frame, so that a run can be killed part-way through a video."""

    def __call__(self, rgb: np.ndarray) -> list[Face]:
        time.sleep(0.03)
        return super().__call__(rgb)


def config(**kw) -> PrepareConfig:
    return PrepareConfig(**{"frames": 4, "size": 64, "workers": 0, "face_detector": "haar", **kw})


def test_config_validation(tmp_path: Path) -> None:
    for bad, field in (
        ({"frames": 0}, "frames"),
        ({"margin": 0.9}, "crop.margin"),
        ({"size": 16}, "crop.size"),
        ({"workers": -1}, "workers"),
        ({"detector": "retinaface"}, "crop.face_detector"),
        ({"sampling": "random"}, "sampling"),
        ({"frame": 8}, "frame"),
    ):
        with pytest.raises(CrossfakeError, match=f"prepare config is invalid: {field}"):
            PrepareConfig.parse(bad)
    assert PrepareConfig(workers=3).crop_hash() == PrepareConfig(workers=0).crop_hash()
    assert PrepareConfig(size=128).crop_hash() != PrepareConfig().crop_hash()
    (tmp_path / "c.yaml").write_text("frames: 8\nno_face: center\nsizee: 3\n")
    with pytest.raises(CrossfakeError, match="c.yaml.*sizee"):
        PrepareConfig.from_yaml(tmp_path / "c.yaml")
    (tmp_path / "c.yaml").write_text("- frames: 8\n")
    with pytest.raises(CrossfakeError, match="c.yaml: expected a mapping with prepare settings, got list"):
        PrepareConfig.from_yaml(tmp_path / "c.yaml")
    (tmp_path / "c.yaml").write_text("frames: 0\nmargin: 0.9\n")  # every bad key named
    with pytest.raises(CrossfakeError, match=r"c.yaml is invalid: frames: .*; crop.margin: "):
        PrepareConfig.from_yaml(tmp_path / "c.yaml")
    (tmp_path / "c.yaml").write_text("frames: 8\nno_face: center\n")
    assert PrepareConfig.from_yaml(tmp_path / "c.yaml").crop.no_face == "center"
    assert PrepareConfig.from_yaml(tmp_path / "c.yaml", frames=4).frames == 4


def test_crop_keeps_the_largest_face_with_margin(tmp_path: Path, media: dict[str, Path]) -> None:
    summary = prepare(
        [record(media["face"])], tmp_path, config(face_detector="test-two-faces", size=96), progress=False
    )
    df = read_manifest(tmp_path / "manifest.parquet")
    assert summary.crops_written == len(df) == 4
    row = df.iloc[0]
    assert (row.face_x0, row.face_y0, row.face_x1, row.face_y1) == (100, 40, 160, 120)
    assert row.det_score == pytest.approx(0.5) and row.num_faces == 2 and row.face_detector == "test-two-faces"
    crop = cv2.cvtColor(cv2.imread(resolve_paths(df).iloc[0]), cv2.COLOR_BGR2RGB)
    _, rgb = next(decode_frames(media["face"], [int(row.frame_idx)]))
    expected = crop_square(rgb, square_box(Face(100, 40, 160, 120, 0.5), 1.3), 96)
    assert crop.shape == (96, 96, 3) and np.array_equal(crop, expected)  # PNG is lossless


def test_prepare_records_failures_and_keeps_going(tmp_path: Path, media: dict[str, Path]) -> None:
    kinds = ["corrupt", "face", "empty", "noface", "image", "truncated", "audio"]
    records = [record(media[k], manipulation="real" if k in ("face", "image") else "Fake") for k in kinds]
    summary = prepare(records, tmp_path, config(frames=6), progress=False)
    df = read_manifest(tmp_path)
    fails = pd.read_parquet(tmp_path / "failures.parquet")
    assert list(fails.columns) == list(FAILURE_COLUMNS)
    assert sorted(df["video_id"].unique()) == ["test/real/face", "test/real/still"]
    assert (df.groupby("video_id").size() == pd.Series({"test/real/face": 6, "test/real/still": 1})).all()
    whole = fails[fails["frame_idx"].isna()].set_index("video_id")
    assert whole.loc["test/Fake/corrupt", "reason"] == "Invalid data found when processing input"
    assert whole.loc["test/Fake/empty", "stage"] == "open"
    assert whole.loc["test/Fake/audio", "reason"] == "no video stream"
    assert whole.loc["test/Fake/noface", ["stage", "reason"]].tolist() == [
        "detect",
        "no face in any sampled frame",
    ]
    per_frame = fails[fails["frame_idx"].notna()]
    assert (per_frame[per_frame["video_id"] == "test/Fake/noface"]["reason"] == "no face").sum() == 4
    truncated = per_frame[per_frame["video_id"] == "test/Fake/truncated"]
    assert (truncated["stage"] == "decode").any()
    assert summary.done == 2 and summary.failed == 5 and summary.skipped == 0
    assert summary.crops_written == summary.manifest_rows == 7
    # Every sampled frame ends as a manifest row or a per-frame failure.
    assert summary.frames_sampled == len(df) + (per_frame["stage"] == "detect").sum()
    assert summary.failures["detect: no face"] == (per_frame["reason"] == "no face").sum()


def test_decode_error_part_way_fails_the_remaining_frames(
    tmp_path: Path, media: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(path, *args):
        indices, frames = sample_frames(path, *args)

        def gen():
            for n, item in enumerate(frames):
                if n == 2:
                    raise VideoReadError(path, "decode", "Invalid data found when processing input")
                yield item

        return indices, gen()

    monkeypatch.setattr("crossfake.data.preprocess.run.sample_frames", broken)
    summary = prepare([record(media["face"])], tmp_path, config(), progress=False)
    assert summary.done == 1 and summary.crops_written == 2 and summary.frames_sampled == 2
    fails = pd.read_parquet(tmp_path / "failures.parquet")
    assert fails["frame_idx"].tolist() == [6, 9] and (fails["stage"] == "decode").all()


def test_manifest_schema_and_paths(tmp_path: Path, media: dict[str, Path]) -> None:
    records = [record(media["face"]), record(media["face2"], manipulation="FaceSwap", name="face_face2", label=1)]
    prepare(records, tmp_path, config(), progress=False)
    df = read_manifest(tmp_path / "manifest.parquet")
    assert list(df.columns) == list(COLUMNS)
    assert df["sample_id"].is_unique
    assert df["path"].str.startswith("crops/test/").all()
    assert all(Path(p).is_file() for p in resolve_paths(df))
    fake = df[df["manipulation"] == "FaceSwap"].iloc[0]
    assert fake.label == 1 and fake.path == f"crops/test/FaceSwap/face_face2/{fake.frame_idx:06d}.png"
    assert fake.video_path == str(media["face2"].resolve())
    info = json.loads((tmp_path / "prepare.json").read_text())
    assert info["status"] == "complete" and info["config"]["frames"] == 4 and "provenance" in info
    assert info["summary"]["manifest_rows"] == len(df)


def test_no_face_center_keeps_a_centre_crop(tmp_path: Path, media: dict[str, Path]) -> None:
    summary = prepare([record(media["noface"])], tmp_path, config(no_face="center"), progress=False)
    df = read_manifest(tmp_path)
    assert len(df) == 4 and summary.failures == {} and summary.faces_found == 0
    assert (df["num_faces"] == 0).all() and df["det_score"].isna().all() and df["face_x0"].isna().all()


def test_jpg_format(tmp_path: Path, media: dict[str, Path]) -> None:
    prepare([record(media["image"])], tmp_path, config(format="jpg", quality=90), progress=False)
    path = resolve_paths(read_manifest(tmp_path)).iloc[0]
    assert path.endswith("000000.jpg") and cv2.imread(path).shape == (64, 64, 3)


def test_resume_does_no_work_twice(tmp_path: Path, media: dict[str, Path]) -> None:
    records = [record(media["face"]), record(media["face2"]), record(media["noface"])]
    CountingHaar.calls = 0
    first = prepare(records, tmp_path, config(face_detector="test-counting"), progress=False)
    assert CountingHaar.calls == 12
    shards = sorted((tmp_path / ".shards").glob("*.parquet"))
    mtimes = [p.stat().st_mtime_ns for p in shards]
    manifest = pd.read_parquet(tmp_path / "manifest.parquet")

    CountingHaar.calls = 0
    second = prepare(records, tmp_path, config(face_detector="test-counting"), progress=False)
    assert CountingHaar.calls == 0, "the failed video (no face) must not be retried either"
    assert second.skipped == 3 and second.done == second.failed == second.frames_sampled == 0
    assert [p.stat().st_mtime_ns for p in shards] == mtimes
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "manifest.parquet"), manifest)
    assert second.failures == first.failures

    prepare(records, tmp_path, config(face_detector="test-counting"), progress=False, retry_failed=True)
    assert CountingHaar.calls == 4  # only the no-face video again


def test_resume_after_a_crash_redoes_only_the_unfinished_video(
    tmp_path: Path, media: dict[str, Path]
) -> None:
    records = [record(media["face"]), record(media["face2"])]
    prepare(records, tmp_path, config(face_detector="test-counting"), progress=False)
    manifest = pd.read_parquet(tmp_path / "manifest.parquet")
    # What kill -9 in the middle of face2 leaves: some crops, a temporary crop, no shard for face2, and
    # temporary files of a shard and of the manifest being written.
    shard = next(p for p in (tmp_path / ".shards").iterdir() if "face2" in p.name)
    shard.unlink()
    crop_dir = tmp_path / "crops/test/real/face2"
    (crop_dir / ".000005.png.abc123.tmp.png").write_bytes(b"half a png")
    (crop_dir / "000000.png").unlink()
    (tmp_path / ".shards" / f".{shard.name}.xyz.tmp.parquet").write_bytes(b"half")
    (tmp_path / ".manifest.parquet.q1w2.tmp.parquet").write_bytes(b"half")

    CountingHaar.calls = 0
    summary = prepare(records, tmp_path, config(face_detector="test-counting"), progress=False)
    assert CountingHaar.calls == 4 and summary.done == 1 and summary.skipped == 1
    assert not list(tmp_path.rglob("*.tmp*"))
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "manifest.parquet"), manifest)
    assert all(Path(p).is_file() for p in resolve_paths(read_manifest(tmp_path)))


_KILL_SCRIPT = """
import sys
sys.path.insert(0, sys.argv[1])
from pathlib import Path
from test_preprocess import config, prepare, record
records = [record(Path(sys.argv[3]), name=f"v{i}") for i in range(8)]
prepare(records, sys.argv[2], config(face_detector="test-slow"), progress=False)
"""


def test_kill_9_mid_run_then_resume(tmp_path: Path, media: dict[str, Path]) -> None:
    out = tmp_path / "killed"
    proc = subprocess.Popen(
        [sys.executable, "-c", _KILL_SCRIPT, str(Path(__file__).parent), str(out), str(media["face"])]
    )
    deadline = time.monotonic() + 60
    while (
        not list((out / ".shards").glob("*.parquet")) and time.monotonic() < deadline and proc.poll() is None
    ):
        time.sleep(0.01)
    time.sleep(0.05)  # into the next video, mid-crop
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    finished = len(list((out / ".shards").glob("*.parquet")))
    assert 0 < finished < 8 and not (out / "manifest.parquet").exists()

    records = [record(media["face"], name=f"v{i}") for i in range(8)]
    summary = prepare(records, out, config(face_detector="test-slow"), progress=False)
    assert summary.skipped == finished and summary.done == 8 - finished
    assert not list(out.rglob("*.tmp*"))
    prepare(records, tmp_path / "clean", config(face_detector="test-slow"), progress=False)
    pd.testing.assert_frame_equal(read_manifest(out), read_manifest(tmp_path / "clean"))
    assert sorted(p.relative_to(out) for p in (out / "crops").rglob("*.png")) == sorted(
        p.relative_to(tmp_path / "clean") for p in (tmp_path / "clean/crops").rglob("*.png")
    )


def test_changed_settings_are_refused_unless_overwrite(tmp_path: Path, media: dict[str, Path]) -> None:
    records = [record(media["image"])]
    prepare(records, tmp_path, config(), progress=False)
    prepare(records, tmp_path, config(workers=1), progress=False)  # workers do not change the crops
    with pytest.raises(CrossfakeError, match="different crop settings.*--overwrite"):
        prepare(records, tmp_path, config(size=128), progress=False)
    (tmp_path / "prepare.json").unlink()  # the shards alone still carry the hash
    with pytest.raises(CrossfakeError, match="different crop settings"):
        prepare(records, tmp_path, config(size=128), progress=False)
    (tmp_path / "notes.txt").write_text("mine")
    summary = prepare(records, tmp_path, config(size=128), progress=False, overwrite=True)
    assert summary.done == 1 and (tmp_path / "notes.txt").exists()
    assert cv2.imread(resolve_paths(read_manifest(tmp_path)).iloc[0]).shape == (128, 128, 3)


def test_identity_groups_and_record_columns(tmp_path: Path, media: dict[str, Path]) -> None:
    real = VideoRecord(media["face"], "test", "real", "000", 0, "000", "000", official_split="train")
    fake = VideoRecord(media["face2"], "test", "FaceSwap", "001_000", 1, "001", "000")
    prepare([real, fake], tmp_path, config(), progress=False)
    df = read_manifest(tmp_path)
    assert df["identity_group"].nunique() == 1  # the fake shares person 000 with the real video
    assert set(df.loc[df["manipulation"] == "FaceSwap", ["target_id", "source_id"]].iloc[0]) == {"001", "000"}
    assert (df.loc[df["manipulation"] == "real", "official_split"] == "train").all()


def test_duplicate_ids_and_empty_input_are_errors(tmp_path: Path, media: dict[str, Path]) -> None:
    with pytest.raises(CrossfakeError, match="no videos"):
        prepare([], tmp_path, config())
    with pytest.raises(CrossfakeError, match="duplicate video ids"):
        prepare([record(media["face"]), record(media["face2"], name="face")], tmp_path, config())


def test_parallel_workers_give_the_same_manifest(tmp_path: Path, media: dict[str, Path]) -> None:
    records = [record(media[k]) for k in ("face", "face2", "noface", "image", "corrupt")]
    inline = prepare(records, tmp_path / "w0", config(), progress=False)
    parallel = prepare(records, tmp_path / "w2", config(workers=2), progress=False)
    a, b = read_manifest(tmp_path / "w0"), read_manifest(tmp_path / "w2")
    pd.testing.assert_frame_equal(a, b)
    pd.testing.assert_frame_equal(
        pd.read_parquet(tmp_path / "w0/failures.parquet"), pd.read_parquet(tmp_path / "w2/failures.parquet")
    )
    assert inline.failures == parallel.failures and inline.crops_written == parallel.crops_written
    for p in a["path"]:
        assert (tmp_path / "w0" / p).read_bytes() == (tmp_path / "w2" / p).read_bytes()


def test_unwritable_crop_is_a_write_failure(tmp_path: Path, media: dict[str, Path]) -> None:
    blocker = tmp_path / "crops/test/real"
    blocker.parent.mkdir(parents=True)
    blocker.write_text("a file where the crop folder should go")
    summary = prepare([record(media["image"])], tmp_path, config(), progress=False)
    assert summary.failed == 1 and summary.crops_written == 0
    assert [k.split(":")[0] for k in summary.failures] == ["write", "write"]  # the frame, then the video


def test_end_to_end_on_synthetic_ffpp(tmp_path: Path) -> None:
    synth = SynthConfig(n_videos=8, n_frames=8, manipulations=("FaceSwap", "Face2Face"))
    root = synthesize(tmp_path / "ffpp", synth, workers=0)
    records = get_corpus("ffpp", root).records()
    summary = prepare(records, tmp_path / "out", config(frames=4, workers=2), progress=False)
    assert summary.videos == len(records) == 24 and summary.failed == 0
    df = read_manifest(tmp_path / "out")
    assert summary.faces_found >= 0.95 * summary.frames_sampled == 0.95 * 96
    assert set(df["manipulation"]) == {"real", "FaceSwap", "Face2Face"}
    assert (df["label"] == (df["manipulation"] != "real").astype(int)).all() and df["official_split"].notna().all()
    assert (df["det_score"] > 0).all() and (df["num_faces"] >= 1).all() and (df["face_x1"] <= 256).all()
    fake = df[df["manipulation"] == "FaceSwap"].iloc[0]
    target, source = fake.video_id.rsplit("/", 1)[1].split("_")
    assert (fake.target_id, fake.source_id) == (target, source)
    # A fake shares its identity group with both of its originals.
    group = df.drop_duplicates("video_id").set_index("video_id")["identity_group"]
    assert group[fake.video_id] == group[f"ffpp/real/{target}"] == group[f"ffpp/real/{source}"]
    assert cv2.imread(resolve_paths(df).iloc[0]).shape == (64, 64, 3)
