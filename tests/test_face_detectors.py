"""The face detectors on real photos, and where YuNet's weights come from.

On dlib's 43 hand-annotated faces YuNet (the default for real corpora) and dlib find >= 95% with <= 2 false
positives; their five landmarks sit on the face in image-left-first order; YuNet counts the people in
multi-person photos; a frame larger than a face detector's ``max_side`` gives boxes and landmarks in the
frame's own pixels. YuNet's weights are downloaded from a real local HTTP server, checked and cached, and
refused offline or with a wrong checksum; dlib's absence names the extra to install.

The photos and the weights are read from the shared real-media folder (``realdata`` fixture) at test time
and copied only into ``tmp_path``, never into the repository.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import re
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

import crossfake.data.preprocess.face_detectors.yunet as yunet_module
from crossfake.data.preprocess.face_detectors import Face, FaceDetector, box_iou, create_face_detector
from crossfake.data.preprocess.video import read_image
from crossfake.utils.errors import CrossfakeError

Box = tuple[float, float, float, float]

YUNET_FILE = "face_detection_yunet_2023mar.onnx"
YUNET_SHA256 = "8f2383e4dd3cfbb4553ea8718107fc0423210dc964f9f4280604804ed2552fa4"
NO_FACE = "dogs.jpg"  # in faces/dlib/ beside the annotated photos: every detection there is false


def yunet_weights(realdata: Path) -> Path:
    return realdata / "weights" / YUNET_FILE


def annotated_boxes(folder: Path) -> dict[str, list[Box]]:
    """Face boxes of ``training.xml`` + ``testing.xml`` (dlib imglab: ``<box top left width height>``)."""
    boxes: dict[str, list[Box]] = {}
    for xml in ("training.xml", "testing.xml"):
        for image in ET.parse(folder / xml).getroot().iter("image"):
            boxes[image.get("file", "")] = [
                (float(b.get("left")), float(b.get("top")),
                 float(b.get("left")) + float(b.get("width")), float(b.get("top")) + float(b.get("height")))
                for b in image.iter("box") if b.get("ignore") != "1"
            ]
    return boxes


def count_matches(faces: list[Face], truth: list[Box], min_iou: float = 0.3) -> int:
    """Annotated boxes found: greedy one-to-one matching, highest IoU first, IoU >= ``min_iou``."""
    pairs = sorted(((box_iou(f.box, t), i, j) for i, f in enumerate(faces) for j, t in enumerate(truth)),
                   reverse=True)
    used_f: set[int] = set()
    used_t: set[int] = set()
    for iou, i, j in pairs:
        if iou >= min_iou and i not in used_f and j not in used_t:
            used_f.add(i)
            used_t.add(j)
    return len(used_t)


@pytest.fixture(scope="module")
def face_detectors(realdata: Path) -> dict[str, FaceDetector]:
    """Every face detector with its default options (YuNet's weights from the real-media folder)."""
    return {
        "haar": create_face_detector("haar"),
        "yunet": create_face_detector("yunet", weights=yunet_weights(realdata)),
        "dlib": create_face_detector("dlib"),
    }


@pytest.fixture(scope="module")
def photos(realdata: Path) -> dict[str, tuple[np.ndarray, list[Box]]]:
    """The annotated photos of ``faces/dlib/`` with their boxes, and the face-free ``dogs.jpg`` (no boxes)."""
    folder = realdata / "faces" / "dlib"
    boxes = annotated_boxes(folder)
    boxes[NO_FACE] = []
    return {name: (read_image(folder / name), truth) for name, truth in boxes.items()}


@pytest.fixture(scope="module")
def found(face_detectors: dict[str, FaceDetector], photos) -> dict[str, dict[str, list[Face]]]:
    """Faces each face detector finds in each photo of :func:`photos` (detected once for the module)."""
    return {name: {photo: det(rgb) for photo, (rgb, _) in photos.items()} for name, det in face_detectors.items()}


# -- accuracy on annotated faces -------------------------------------------------------------------------


def test_the_annotations_hold_43_faces(photos) -> None:
    assert sum(len(truth) for _, truth in photos.values()) == 43
    assert len(photos) == 10


@pytest.mark.parametrize("name", ["yunet", "dlib"])
def test_face_detector_finds_95_percent_of_annotated_faces_with_at_most_2_false(name: str, photos, found) -> None:
    faces_total = matched = false = 0
    for photo, (_, truth) in photos.items():
        faces = found[name][photo]
        hits = count_matches(faces, truth)
        faces_total += len(truth)
        matched += hits
        false += len(faces) - hits
    assert matched / faces_total >= 0.95, f"{name}: {matched}/{faces_total} faces found"
    assert false <= 2, f"{name}: {false} false positives (dogs.jpg: {len(found[name][NO_FACE])})"


def test_haar_runs_and_its_boxes_lie_inside_the_image(photos, found) -> None:
    assert sum(len(faces) for faces in found["haar"].values()) > 0
    for photo, (rgb, _) in photos.items():
        h, w = rgb.shape[:2]
        for f in found["haar"][photo]:
            assert 0 <= f.x0 < f.x1 <= w and 0 <= f.y0 < f.y1 <= h, (photo, f)
            assert np.isfinite(f.score)


# -- landmarks -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["yunet", "dlib"])
def test_landmarks_are_five_points_on_the_face_image_left_first(name: str, face_detectors, found) -> None:
    assert face_detectors[name].gives_landmarks
    faces = [f for by_photo in found[name].values() for f in by_photo]
    assert len(faces) >= 43
    for f in faces:
        assert f.landmarks is not None and len(f.landmarks) == 5, f
        mx, my = 0.1 * f.width, 0.1 * f.height
        for x, y in f.landmarks:
            assert f.x0 - mx <= x <= f.x1 + mx and f.y0 - my <= y <= f.y1 + my, f
        (eye_l, eye_r, _nose, mouth_l, mouth_r) = f.landmarks
        assert eye_l[0] < eye_r[0], f"eyes not image-left first: {f}"
        assert mouth_l[0] < mouth_r[0], f"mouth corners not image-left first: {f}"
        assert max(eye_l[1], eye_r[1]) < min(mouth_l[1], mouth_r[1]), f"eyes not above the mouth: {f}"


def test_haar_gives_no_landmarks(face_detectors, found) -> None:
    assert not face_detectors["haar"].gives_landmarks
    assert all(f.landmarks is None for faces in found["haar"].values() for f in faces)


# -- multi-person photos ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("photo", "people"),
    [("two_people.jpg", 2), ("3faces.png", 3), ("4faces.png", 4), ("1face.png", 1), ("obama.jpg", 1),
     ("biden.jpg", 1), ("astronaut.png", 1)],
)
def test_yunet_counts_the_people_in_a_photo(photo: str, people: int, realdata: Path, face_detectors) -> None:
    faces = face_detectors["yunet"](read_image(realdata / "faces" / "multi" / photo))
    assert len(faces) == people


# -- downscaling -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["yunet", "dlib", "haar"])
def test_a_frame_above_max_side_gives_boxes_in_its_own_pixels(name: str, face_detectors, photos, found) -> None:
    """A photo upscaled 3x is detected on a downscaled copy; its faces come back at 3x the photo's."""
    photo = "2008_002506.jpg"  # 500x375, three large faces
    rgb = photos[photo][0]
    big = cv2.resize(rgb, None, fx=3, fy=3, interpolation=cv2.INTER_CUBIC)
    face_detector = face_detectors[name]
    assert max(big.shape[:2]) > face_detector.max_side >= max(rgb.shape[:2])  # only the big one is downscaled
    small_faces = found[name][photo]
    big_faces = face_detector(big)
    assert len(small_faces) == 3 and len(big_faces) == 3
    for small in small_faces:
        expected = small.scaled(3)
        best = max(big_faces, key=lambda f: box_iou(f.box, expected.box))
        assert box_iou(best.box, expected.box) >= 0.7, (expected, best)
        if expected.landmarks is not None:
            assert best.landmarks is not None
            gap = np.abs(np.subtract(best.landmarks, expected.landmarks)).max()
            assert gap <= 0.1 * expected.width, (expected.landmarks, best.landmarks)


# -- YuNet's weights: download, cache, checksum, offline -------------------------------------------------


@contextlib.contextmanager
def http_server(folder: Path) -> Iterator[str]:
    """``python -m http.server`` serving ``folder`` on a free port of 127.0.0.1; yields its base URL."""
    proc = subprocess.Popen(
        [sys.executable, "-u", "-m", "http.server", "0", "--bind", "127.0.0.1", "--directory", str(folder)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    try:
        line = proc.stdout.readline()  # "Serving HTTP on 127.0.0.1 port 40123 (http://127.0.0.1:40123/) ..."
        port = re.search(r" port (\d+)", line)
        assert port, f"http.server did not start: {line!r}"
        yield f"http://127.0.0.1:{port.group(1)}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        proc.stdout.close()


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty ``$CROSSFAKE_CACHE``, downloads allowed, 127.0.0.1 reached without any proxy."""
    folder = tmp_path / "cache"
    monkeypatch.setenv("CROSSFAKE_CACHE", str(folder))
    for var in ("CROSSFAKE_OFFLINE", "HF_HUB_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    for var in ("no_proxy", "NO_PROXY"):
        monkeypatch.setenv(var, "127.0.0.1,localhost")
    return folder


def point_yunet_at(monkeypatch: pytest.MonkeyPatch, base_url: str) -> str:
    """Make YuNet's pinned download URL ``base_url/<file>`` (sha256 unchanged); return that URL."""
    spec = dataclasses.replace(yunet_module.YUNET_WEIGHTS, url=f"{base_url}/{YUNET_FILE}")
    monkeypatch.setattr(yunet_module, "YUNET_WEIGHTS", spec)
    return spec.url


def files_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def test_yunet_weights_are_downloaded_once_checked_and_cached(
    realdata: Path, tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    served = tmp_path / "served"
    served.mkdir()
    shutil.copyfile(yunet_weights(realdata), served / YUNET_FILE)
    photo = read_image(realdata / "faces" / "multi" / "two_people.jpg")
    with http_server(served) as base_url:
        url = point_yunet_at(monkeypatch, base_url)
        face_detector = create_face_detector("yunet")
        assert files_under(cache) == [cache / "models" / YUNET_FILE]
        assert hashlib.sha256((cache / "models" / YUNET_FILE).read_bytes()).hexdigest() == YUNET_SHA256
        assert len(face_detector(photo)) == 2
    with pytest.raises(urllib.error.URLError):  # the server is gone: a second download would fail
        urllib.request.urlopen(url, timeout=5)
    assert len(create_face_detector("yunet")(photo)) == 2


def test_yunet_weights_with_a_wrong_sha256_are_refused_and_not_cached(
    tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    served = tmp_path / "served"
    served.mkdir()
    (served / YUNET_FILE).write_bytes(b"not the YuNet model " * 100)
    with http_server(served) as base_url:
        point_yunet_at(monkeypatch, base_url)
        with pytest.raises(CrossfakeError, match="sha256") as err:
            create_face_detector("yunet")
    assert YUNET_SHA256 in str(err.value)
    assert files_under(cache) == []


@pytest.mark.parametrize("var", ["CROSSFAKE_OFFLINE", "HF_HUB_OFFLINE"])
def test_offline_without_cached_weights_is_a_one_line_error_naming_file_and_flag(
    var: str, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(var, "1")
    point_yunet_at(monkeypatch, "http://127.0.0.1:9")  # never contacted
    with pytest.raises(CrossfakeError) as err:
        create_face_detector("yunet")
    message = str(err.value)
    assert "\n" not in message
    assert YUNET_FILE in message and "--face-detector-weights" in message and var in message
    assert files_under(cache) == []


def test_a_missing_explicit_weights_file_is_named(tmp_path: Path, cache: Path) -> None:
    missing = tmp_path / "nowhere" / "yunet.onnx"
    with pytest.raises(CrossfakeError, match=re.escape(str(missing))):
        create_face_detector("yunet", weights=missing)


# -- dlib is an extra ------------------------------------------------------------------------------------


def test_dlib_missing_names_the_faces_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "dlib", None)  # `import dlib` raises ImportError
    with pytest.raises(CrossfakeError, match="'faces' extra"):
        create_face_detector("dlib")
