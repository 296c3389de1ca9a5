"""`crossfake detect` end to end: synth -> prepare -> split -> train (all through the CLI) -> detect.

The run is a tiny linear probe trained on crops that `crossfake prepare` made from `crossfake synth`
videos, so detect must find its crop settings (64 px crops) in the prepared folder's prepare.json, and
its scores for the frames prepare sampled must equal those `crossfake evaluate` computes from the saved
crops. Then: every output format, figures, several faces, frames without a face, folders, and a table
of bad inputs that must each give a clear message and no traceback.
"""

from __future__ import annotations

import csv
import io
import json
import math
import shutil
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
import torch
import yaml
from test_preprocess import write_video

from crossfake.cli.main import main
from crossfake.data.manifest import read_manifest
from crossfake.data.predictions import PredictionColumns
from crossfake.data.preprocess import CropSpec, register_face_detector
from crossfake.data.preprocess.face_detectors import Face, box_iou
from crossfake.data.preprocess.video import decode_frames
from crossfake.data.synth import SynthConfig, synthesize
from crossfake.inference import AGGREGATION_RULE, DetectPipeline, FrameSampling, InputError
from crossfake.inference.detect import FAKE, NO_FACE, REAL, crop_spec_for_run
from crossfake.inference.media import IMAGE, VIDEO, open_media, sniff_kind
from crossfake.methods.base import Detector, MethodConfig
from crossfake.runs.directory import read_run_info
from crossfake.scoring.predict import predict_manifest

FPS = 25  # synth's frame rate
N_FRAMES = 25  # one second of video


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Synthetic FF++ (8 originals + 8 FaceSwap fakes, 1 s each), prepared, split and trained on."""
    root = tmp_path_factory.mktemp("detect")
    data = synthesize(
        root / "data", SynthConfig(n_videos=8, n_frames=N_FRAMES, manipulations=("FaceSwap",)), workers=0
    )
    prepared = root / "prepared"
    flags = ["--frames", "3", "--size", "64", "--workers", "0", "--face-detector", "haar"]
    assert main(["prepare", str(data), "--out", str(prepared), *flags]) == 0
    assert main(["split", str(prepared), "--mode", "official"]) == 0
    config = root / "probe.yaml"
    config.write_text(yaml.safe_dump({
        "method": {"name": "linear_probe", "backbone": "tiny"},
        "data": {"manifest": str(prepared / "split_default_official.parquet")},
        "train": {"batch_size": 8, "lr": 1e-2, "num_workers": 0, "epochs": 2, "cache_dir": str(root / "cache")},
    }))
    assert main(["train", str(config), "--out", str(root / "run"), "--no-progress"]) == 0
    videos = data / "manipulated_sequences" / "FaceSwap" / "c23" / "videos"
    fake = sorted(videos.glob("*.mp4"))[0]
    real = data / "original_sequences" / "youtube" / "c23" / "videos" / "000.mp4"
    media = root / "media"
    media.mkdir()
    frame = next(decode_frames(fake, [0]))[1]
    image = media / "face.png"
    cv2.imwrite(str(image), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    return {"root": root, "run": root / "run", "prepared": prepared, "fake": fake, "real": real,
            "image": image, "frame": frame}


def detect(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(["detect", *args, "--no-progress"])
    out, err = capsys.readouterr()
    return code, out, err


def jsonl(out: str) -> list[dict]:
    return [json.loads(line) for line in out.splitlines() if line.strip()]


# -- verdicts ---------------------------------------------------------------------------------------------


def test_text_summary_gives_a_verdict_per_video_and_image(chain, capsys) -> None:
    run = chain["run"]
    code, out, err = detect(capsys, str(chain["fake"]), str(chain["real"]), str(chain["image"]), "--model", str(run))
    assert code == 0, err
    threshold = json.loads((run / "run.json").read_text())["threshold"]
    assert f"threshold {threshold:.4f} (validation EER threshold)" in out
    assert f"settings from the run ({run / 'run.json'})" in out  # the training crops' settings
    for path in ("fake", "real", "image"):
        line = next(line for line in out.splitlines() if line.startswith(f"{chain[path]}: "))
        assert ("FAKE: score" in line) or ("REAL: score" in line), line
    assert "25 frames at 25 fps (1.0 s); 2 frames scored (2 frames per second)" in out
    assert "timeline: " in out and "rule: track score = mean over its faces; score = max over tracks" in out
    assert "3 inputs: " in err and "Traceback" not in err


def test_detect_crops_and_scores_exactly_like_prepare_and_evaluate(chain) -> None:
    # The frames prepare sampled (3 evenly spaced), one face each: the scores must equal the scores of
    # the crops prepare saved, read back and scored as `crossfake evaluate` does.
    pipeline = DetectPipeline.from_run(chain["run"], sampling=FrameSampling(frames=3), max_faces=1)
    assert pipeline.crop.size == 64 and pipeline.crop_origin == f"the run ({chain['run'] / 'run.json'})"
    prepared = json.loads((chain["prepared"] / "prepare.json").read_text())["config"]["crop"]
    assert json.loads((chain["run"] / "run.json").read_text())["crop"] == prepared  # recorded at training
    result = pipeline.detect(chain["fake"])
    rows = read_manifest(chain["prepared"]).query(f"video_path == '{chain['fake'].resolve()}'")
    assert [f.index for f in result.frames] == rows["frame_idx"].tolist() == [0, 12, 24]
    boxes = rows[["face_x0", "face_y0", "face_x1", "face_y1"]].to_numpy()
    np.testing.assert_allclose([f.faces[0].box for f in result.frames], boxes)
    expected = predict_manifest(pipeline.detector, rows, batch_size=8, progress=False)["score"].to_numpy()
    np.testing.assert_allclose([f.score for f in result.frames], expected, rtol=0, atol=1e-6)
    assert result.score == pytest.approx(expected.mean())
    assert result.verdict == (FAKE if result.score >= pipeline.threshold else REAL)
    assert result.threshold == read_run_info(chain["run"]).threshold


def test_fps_is_frames_per_second_of_video_and_capped(chain) -> None:
    frames = FrameSampling(fps=8).plan(N_FRAMES, FPS)[0]
    assert frames == [0, 3, 6, 9, 12, 16, 19, 22]  # every 25/8 = 3.125 frames
    assert FrameSampling(fps=100).plan(N_FRAMES, FPS)[0] == list(range(N_FRAMES))  # at most every frame
    capped, note = FrameSampling(fps=8, max_frames=4).plan(N_FRAMES, FPS)
    assert capped == [0, 8, 16, 24] and "capped at 4" in note
    media = open_media(chain["fake"], FrameSampling(fps=4))
    assert (media.kind, media.num_frames, media.fps, media.indices) == (VIDEO, 25, 25.0, [0, 6, 12, 19])
    assert sniff_kind(chain["image"]) == IMAGE


# -- formats ----------------------------------------------------------------------------------------------


def test_jsonl_has_every_frame_and_face_and_the_aggregation(chain, capsys) -> None:
    code, out, _ = detect(capsys, str(chain["fake"]), str(chain["image"]), "--model", str(chain["run"]),
                          "--format", "jsonl", "--fps", "8")
    assert code == 0
    video, image = jsonl(out)
    assert video["kind"] == "video" and video["frames_sampled"] == 8 and video["rule"] == AGGREGATION_RULE
    assert [f["index"] for f in video["frames"]] == [0, 3, 6, 9, 12, 16, 19, 22]
    assert [f["time"] for f in video["frames"]][:2] == [0.0, 0.12]
    for frame in video["frames"]:
        assert frame["score"] == max(face["score"] for face in frame["faces"])
        x0, y0, x1, y1 = frame["faces"][0]["box"]
        assert 0 <= x0 < x1 <= 256 and 0 <= y0 < y1 <= 192
    assert video["score"] == pytest.approx(np.mean([f["score"] for f in video["frames"]]))
    assert video["verdict"] == ("fake" if video["score"] >= video["threshold"] else "real")
    assert image["kind"] == "image" and len(image["frames"]) == 1 and image["frames"][0]["time"] == 0
    assert image["explanation"] is None  # a linear probe writes no explanation


@pytest.fixture(scope="module")
def gappy(chain) -> dict[str, Path]:
    """A video whose frames 8-16 show no face, and an image with two faces side by side."""
    frames = [rgb for _, rgb in decode_frames(chain["fake"], range(N_FRAMES))]
    blank = np.full_like(frames[0], 90)
    gappy = write_video(chain["root"] / "media" / "gappy.mp4", [blank if 8 <= i <= 16 else f for i, f in
                                                               enumerate(frames)])
    two = chain["root"] / "media" / "two_faces.png"
    cv2.imwrite(str(two), cv2.cvtColor(np.hstack([frames[0], frames[12]]), cv2.COLOR_RGB2BGR))
    return {"video": gappy, "two": two}


def test_csv_lists_faces_and_frames_without_a_face(chain, gappy, capsys, tmp_path) -> None:
    out_file = tmp_path / "scores.csv"
    code, out, err = detect(capsys, str(gappy["video"]), str(gappy["two"]), "--model", str(chain["run"]),
                            "--format", "csv", "--fps", "8", "--output", str(out_file))
    assert code == 0 and out == "" and f"wrote csv to {out_file}" in err
    rows = list(csv.DictReader(io.StringIO(out_file.read_text())))
    video = [r for r in rows if r["path"] == str(gappy["video"])]
    assert [int(r["frame"]) for r in video] == [0, 3, 6, 9, 12, 16, 19, 22]
    empty = [int(r["frame"]) for r in video if r["face"] == ""]
    assert empty == [9, 12, 16]  # reported with no face columns, not dropped
    assert all(r["face_score"] == r["frame_score"] == "" for r in video if r["face"] == "")
    scored = [float(r["face_score"]) for r in video if r["face"] != ""]
    assert float(video[0]["video_score"]) == pytest.approx(np.mean(scored), abs=1e-5)
    two = [r for r in rows if r["path"] == str(gappy["two"])]
    assert [r["face"] for r in two] == ["0", "1"] and two[0]["faces_found"] == "2"
    assert float(two[0]["frame_score"]) == pytest.approx(max(float(r["face_score"]) for r in two), abs=1e-5)


def test_text_reports_no_face_frames_and_several_faces(chain, gappy, capsys) -> None:
    code, out, _ = detect(capsys, str(gappy["video"]), str(gappy["two"]), "--model", str(chain["run"]), "--fps", "8")
    assert code == 0
    assert "no face in 3 frames: at 0.4 s, 0.5 s, 0.6 s" in out and "frames with a face: 5 of 8" in out
    assert "timeline: " in out and "···" in out  # the three frames without a face
    assert "faces: 2 faces in 1" in out  # the two-face image
    code, out, _ = detect(capsys, str(gappy["two"]), "--model", str(chain["run"]), "--max-faces", "1")
    assert "track 0: " not in out  # an image's faces are not tracks of a video
    code, out, _ = detect(capsys, str(gappy["video"]), "--model", str(chain["run"]), "--fps", "8", "--format", "jsonl")
    (record,) = jsonl(out)
    assert [t["id"] for t in record["tracks"]] == [0] and record["tracks"][0]["frames"] == 5


def test_figures_are_written(chain, gappy, capsys, tmp_path) -> None:
    code, _, err = detect(capsys, str(gappy["video"]), str(chain["image"]), "--model", str(chain["run"]),
                          "--figures", str(tmp_path / "fig"))
    assert code == 0 and "figures in" in err
    written = sorted(p.name for p in (tmp_path / "fig").iterdir())
    assert written == ["face.annotated.png", "gappy.annotated.png", "gappy.timeline.png"]
    annotated = cv2.imread(str(tmp_path / "fig" / "gappy.annotated.png"))
    assert annotated is not None and max(annotated.shape[:2]) >= 480  # small frames are enlarged
    timeline = cv2.imread(str(tmp_path / "fig" / "gappy.timeline.png"))
    assert timeline is not None and timeline.shape[1] > 600


def test_folder_input_judges_its_media_and_skips_other_files(chain, capsys, tmp_path) -> None:
    folder = tmp_path / "clips"
    (folder / "sub").mkdir(parents=True)
    shutil.copy(chain["fake"], folder / "a.mp4")
    shutil.copy(chain["image"], folder / "sub" / "b.png")
    (folder / "notes.txt").write_text("not media")
    code, out, err = detect(capsys, str(folder), "--model", str(chain["run"]), "--format", "jsonl")
    assert code == 0, err
    assert [r["path"] for r in jsonl(out)] == [str(folder / "a.mp4"), str(folder / "sub" / "b.png")]


# -- tracks -------------------------------------------------------------------------------------------------


def test_detect_judges_the_anchor_not_the_map(chain, realdata: Path) -> None:
    yunet = str(realdata / "weights" / "face_detection_yunet_2023mar.onnx")
    # FF++ 519: a news anchor before a map, which Haar took for a second face in 25 of 61 frames and the
    # demo detector scored 0.98. With the default detector and tracks, the anchor alone is judged.
    crop = CropSpec(face_detector_options={"weights": yunet}, size=64)
    run = DetectPipeline.from_run(chain["run"])
    pipeline = DetectPipeline(run.detector, run.info, crop, sampling=FrameSampling(frames=31))
    result = pipeline.detect(realdata / "ffpp/mini/original_sequences/youtube/c23/videos/519.mp4")
    anchor = (356, 95, 456, 195)  # the anchor's face, averaged over the video
    _, face = result.top_face
    assert box_iou(face.box, anchor) >= 0.5, face.box
    assert [(t.id, t.frames) for t in result.tracks] == [(0, 31)]
    assert result.score == pytest.approx(result.tracks[0].score)
    assert all(f.track == 0 for frame in result.frames for f in frame.faces)


def test_a_one_frame_detection_never_decides(chain) -> None:
    # A detector that sees a "face" in one frame only (a patch of background): it is dropped, not scored.
    @register_face_detector("test-flicker")
    class Flicker:
        gives_landmarks = False

        def __init__(self) -> None:
            self.calls = 0

        def __call__(self, rgb: np.ndarray) -> list[Face]:
            self.calls += 1
            faces = [Face(60, 40, 160, 140, 1.0)]
            return faces + [Face(0, 0, 40, 40, 1.0)] if self.calls == 2 else faces

    run = DetectPipeline.from_run(chain["run"])
    crop = CropSpec(face_detector="test-flicker", size=64)
    pipeline = DetectPipeline(run.detector, run.info, crop, sampling=FrameSampling(frames=5))
    result = pipeline.detect(chain["fake"])
    assert [t.frames for t in result.tracks] == [5]
    assert [f.faces_found for f in result.frames] == [1, 2, 1, 1, 1] and all(len(f.faces) == 1 for f in result.frames)


# -- bad input --------------------------------------------------------------------------------------------


def _truncated(chain, tmp: Path, keep: float = 0.5, **container: str) -> Path:
    """The first ``keep`` of a video; with moov at the front (faststart) the first frames still decode."""
    frames = [rgb for _, rgb in decode_frames(chain["fake"], range(N_FRAMES))]
    full = write_video(tmp / "full.mp4", frames, **container)
    data = full.read_bytes()
    out = tmp / "truncated.mp4"
    out.write_bytes(data[: int(len(data) * keep)])
    return out


BAD_INPUTS = {
    # name: (make(chain, tmp) -> path, message expected on stderr)
    "missing": (lambda c, t: t / "nope.mp4", "nope.mp4: no such file"),
    "empty": (lambda c, t: _write(t / "empty.mp4", b""), "the file is empty"),
    "text as mp4": (lambda c, t: _write(t / "notes.mp4", b"just some text\n" * 50),
                    "not a video or image that can be read"),
    "pdf": (lambda c, t: _write(t / "paper.pdf", b"%PDF-1.4\n" + b"x" * 500), "not a video or image"),
    "truncated (index at the end)": (lambda c, t: _truncated(c, t), "it may be truncated, corrupt"),
    "corrupt png": (lambda c, t: _write(t / "bad.png", b"\x89PNG\r\n\x1a\n" + b"\x00" * 100),
                    "not a readable image (truncated or corrupt)"),
    "no face": (lambda c, t: _image(t / "wall.png", np.full((120, 160, 3), 128, np.uint8)),
                "no face found in the image: no verdict"),
    "huge image": (lambda c, t: _image(t / "huge.png", np.zeros((1200, 1000, 3), np.uint8)),
                   "1000×1200 = 1.2 megapixels exceed the limit of 1 (--max-pixels)"),
    "folder without media": (lambda c, t: _write(t / "docs" / "readme.txt", b"hi").parent,
                             "folder holds no video or image"),
}


def _write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _image(path: Path, rgb: np.ndarray) -> Path:
    cv2.imwrite(str(path), rgb)
    return path


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_inputs_get_a_clear_message(case: str, chain, capsys, tmp_path) -> None:
    make, message = BAD_INPUTS[case]
    path = make(chain, tmp_path)
    code, out, err = detect(capsys, str(path), str(chain["image"]), "--model", str(chain["run"]),
                            "--max-pixels", "1", "--format", "jsonl")
    assert code == 1  # some input got no verdict; the good one still did
    assert message in err or message in out, (err, out)
    assert "Traceback" not in err
    first, good = jsonl(out)
    assert good["verdict"] in ("fake", "real")
    if case == "no face":
        assert first["verdict"] == NO_FACE and first["score"] is None and first["frames"][0]["faces"] == []
    else:
        assert first["error"] and first["status"] in (404, 413, 415, 422)


def test_truncated_video_with_index_first_is_judged_on_what_decodes(chain, tmp_path) -> None:
    path = _truncated(chain, tmp_path, keep=0.8, movflags="+faststart")
    result = DetectPipeline.from_run(chain["run"], sampling=FrameSampling(fps=8)).detect(path)
    assert 0 < len(result.frames) < 8 and result.verdict in (FAKE, REAL)
    assert any("did not decode" in note or "part-way" in note for note in result.notes)


def test_run_directory_errors_are_clean(chain, capsys, tmp_path) -> None:
    other = tmp_path / "old_run"
    shutil.copytree(chain["run"], other)
    record = json.loads((other / "run.json").read_text())
    (other / "run.json").write_text(json.dumps({**record, "format": "crossfake-run/0"}))
    code, _, err = detect(capsys, str(chain["image"]), "--model", str(other))
    assert code == 2 and "incompatible crossfake version" in err and "Traceback" not in err
    code, _, err = detect(capsys, str(chain["image"]), "--model", str(tmp_path))
    assert code == 2 and "is not a crossfake run directory" in err
    code, _, err = detect(capsys, str(chain["image"]), "--model", str(chain["run"]), "--fps", "0")
    assert code == 2 and "frames per second must be > 0" in err


# -- a VLM's explanation ----------------------------------------------------------------------------------


class _Explaining(Detector):
    """A stand-in VLM: p(fake) from the crop's brightness, and a written answer per crop (declared)."""

    prediction_columns = PredictionColumns(explanation="reasoning", details=("verdict",), raw=("raw_answer",))

    def transform(self, image):
        return torch.from_numpy(np.asarray(image, dtype=np.float32).mean(axis=(0, 1)) / 255)

    def predict_details(self, inputs):
        logits = (inputs.mean(dim=1) - 0.5) * 10
        answers = [f"brightness {v:.2f}" for v in inputs.mean(dim=1).tolist()]
        return logits, {"verdict": ["fake"] * len(answers), "reasoning": answers, "raw_answer": answers}


def test_a_vlm_explanation_comes_from_the_most_suspicious_face(chain, gappy) -> None:
    info = read_run_info(chain["run"])
    pipeline = DetectPipeline(
        _Explaining(MethodConfig(method="stub")), info, crop_spec_for_run(info)[0],
        sampling=FrameSampling(fps=8), batch_size=3,  # faces of one frame can span two batches
    )
    result = pipeline.detect(gappy["two"])
    faces = result.frames[0].faces
    top = max(faces, key=lambda f: f.score)
    assert len(faces) == 2 and result.explanation == {"verdict": "fake", "reasoning": top.details["reasoning"]}
    assert result.to_dict()["explanation"]["reasoning"].startswith("brightness")
    video = pipeline.detect(gappy["video"], keep_images=True)
    assert video.key_frame is not None and video.key_frame[0] == video.top_frame.index
    assert all(math.isfinite(face.score) for f in video.frames for face in f.faces)


def test_inputs_are_sniffed_by_content_not_name(chain, tmp_path) -> None:
    disguised = tmp_path / "holiday.mp4"
    shutil.copy(chain["image"], disguised)  # a PNG named .mp4
    assert sniff_kind(disguised) == IMAGE
    with pytest.raises(InputError, match="no such file") as e:
        open_media(tmp_path / "missing.png")
    assert e.value.status == 404
    with av.open(str(chain["fake"])) as container:
        assert container.streams.video  # the real video opens as a video
    assert sniff_kind(chain["fake"]) == VIDEO
