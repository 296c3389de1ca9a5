"""The face pipeline on real media: FF++ c23 videos, a multi-person clip, photos (`detect` on a real news
video is in test_detect.py, beside the run it uses).

Reads the shared real-media folder through the ``realdata`` fixture (skipped where it is absent, required
in CI). The YuNet weights come from that folder too, since nothing may be downloaded here.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from crossfake.cli.main import main
from crossfake.data.manifest import read_manifest
from crossfake.data.preprocess import CropSpec, FaceCropper, FacesPolicy
from crossfake.data.preprocess.crop import landmarks_in_crop
from crossfake.data.preprocess.face_detectors import box_iou
from crossfake.data.preprocess.video import sample_frames

FRAMES = 16


@pytest.fixture(scope="module")
def yunet(realdata: Path) -> str:
    return str(realdata / "weights" / "face_detection_yunet_2023mar.onnx")


@pytest.fixture(scope="module")
def mini(realdata: Path, yunet: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """FF++ mini prepared with the default face detector (YuNet) and alignment."""
    out = tmp_path_factory.mktemp("mini")
    flags = ["--frames", str(FRAMES), "--size", "128", "--workers", "0", "--align", "--face-detector-weights", yunet]
    assert main(["prepare", str(realdata / "ffpp" / "mini"), "--out", str(out), *flags]) == 0
    return out


def test_prepare_finds_the_subject_of_every_real_video(mini: Path) -> None:
    df = read_manifest(mini)
    info = json.loads((mini / "prepare.json").read_text())
    assert info["config"]["crop"]["face_detector"] == "yunet"
    videos = df.groupby("video_id")
    assert videos.ngroups == 7  # 3 originals and one fake of each manipulation
    # The subject in >= 95% of the sampled frames of every video, and nothing but the subject's track.
    assert (videos.size() >= 0.95 * FRAMES).all(), videos.size()
    assert (df["track_id"] == 0).all() and (df["face_detector"] == "yunet").all()
    # Five landmarks for every crop, inside the face box (give or take a tenth of it).
    xs = df[[f"{p}_x" for p in ("eye_l", "eye_r", "nose", "mouth_l", "mouth_r")]].to_numpy()
    pad = 0.1 * (df["face_x1"] - df["face_x0"]).to_numpy()[:, None]
    assert np.isfinite(xs).all()
    assert ((xs >= df[["face_x0"]].to_numpy() - pad) & (xs <= df[["face_x1"]].to_numpy() + pad)).all()


def test_crops_of_a_track_overlap_from_frame_to_frame(mini: Path) -> None:
    df = read_manifest(mini).sort_values(["video_id", "frame_idx"])
    for video_id, rows in df.groupby("video_id"):
        boxes = rows[["crop_x0", "crop_y0", "crop_x1", "crop_y1"]].to_numpy(dtype=float)
        ious = [box_iou(tuple(a), tuple(b)) for a, b in zip(boxes[:-1], boxes[1:], strict=True)]
        assert min(ious) >= 0.5, (video_id, min(ious))


def test_alignment_levels_the_eyes(mini: Path) -> None:
    df = read_manifest(mini)
    assert json.loads((mini / "prepare.json").read_text())["config"]["crop"]["align"] is True
    assert (df["crop_angle"].abs() > 0.5).any()  # real heads tilt
    for row in df.itertuples():
        eyes = np.array([[row.eye_l_x, row.eye_l_y], [row.eye_r_x, row.eye_r_y]])
        box = (row.crop_x0, row.crop_y0, row.crop_x1, row.crop_y1)
        (lx, ly), (rx, ry) = landmarks_in_crop(eyes, box, row.crop_angle, 128)
        assert abs(ly - ry) < 0.5 and lx < rx  # level in the crop, left eye on the left


def test_single_person_originals_make_one_track(realdata: Path, yunet: str) -> None:
    cropper = FaceCropper(CropSpec(face_detector_options={"weights": yunet}, faces=FacesPolicy.ALL))
    for name in ("519", "634"):
        _, frames = sample_frames(realdata / f"ffpp/mini/original_sequences/youtube/c23/videos/{name}.mp4",
                                  "uniform", 32)
        found = cropper.detect(frames)
        assert [t.length for t in found.kept] == [32], name


def test_several_people_make_several_tracks(realdata: Path, yunet: str) -> None:
    cropper = FaceCropper(CropSpec(face_detector_options={"weights": yunet}, faces=FacesPolicy.ALL))
    _, frames = sample_frames(realdata / "faces/multi/short_hamilton_clip.mp4", "uniform", 24)
    found = cropper.detect(frames)
    assert len(found.kept) >= 3  # the clip cuts between shots of several people
    subject_only = FaceCropper(CropSpec(face_detector_options={"weights": yunet}))
    subject_only.track(found)
    assert [t.id for t in found.kept] == [0]
    # Every one-frame detection is dropped, every kept track has 2+ frames.
    assert all(t.length >= 2 for t in found.tracks if t in found.kept)


def test_faces_command_on_photos_and_a_video(realdata: Path, yunet: str, tmp_path: Path) -> None:
    out = tmp_path / "faces.csv"
    paths = [realdata / "faces/multi" / name for name in ("two_people.jpg", "3faces.png", "4faces.png")]
    video = realdata / "ffpp/mini/original_sequences/youtube/c23/videos/519.mp4"
    args = ["faces", *map(str, paths), str(video), "--face-detector-weights", yunet, "--frames", "8",
            "--output", str(out), "--annotate", str(tmp_path / "png")]
    assert main(args) == 0
    df = pd.read_csv(out)
    counts = df[df["kind"] == "image"].groupby("path")["face"].count()
    assert [counts[str(p)] for p in paths] == [2, 3, 4]
    frames = df[df["kind"] == "video"]
    assert len(frames) == 8 and (frames["track"] == 0).all() and frames["eye_l_x"].notna().all()
    assert sorted(p.name for p in (tmp_path / "png").iterdir()) == [
        "3faces.faces.png", "4faces.faces.png", "519.faces.png", "two_people.faces.png"]
