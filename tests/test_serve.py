"""`crossfake serve`'s web page: the HTTP API, then the page itself in a real headless Chromium.

The server is the real app under uvicorn on a free loopback port, with a tiny linear probe trained by
the trainer. The browser test needs Debian's `chromium` and `chromium-driver`: without them it is
skipped, unless CROSSFAKE_REQUIRE_BROWSER=1 (set by CI), where their absence is a failure.
"""

from __future__ import annotations

import json
import os
import socket
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import cv2
import numpy as np
import pytest
from test_training import make_tiny_split, tiny_config

from crossfake.cli.main import main
from crossfake.data.preprocess.video import decode_frames
from crossfake.data.synth import SynthConfig, synthesize
from crossfake.inference import DetectPipeline, FrameSampling
from crossfake.training import train

uvicorn = pytest.importorskip("uvicorn", reason="the 'serve' extra is not installed")
from crossfake.inference.server import create_app  # noqa: E402  (needs the extra)


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("serve")
    data = synthesize(root / "data", SynthConfig(n_videos=8, n_frames=25, manipulations=("FaceSwap",)), workers=0)
    video = sorted((data / "manipulated_sequences" / "FaceSwap" / "c23" / "videos").glob("*.mp4"))[0]
    image = root / "face.jpg"
    cv2.imwrite(str(image), cv2.cvtColor(next(decode_frames(video, [0]))[1], cv2.COLOR_RGB2BGR))
    bad = root / "notes.mp4"
    bad.write_text("this is not a video\n" * 20)
    wall = root / "wall.png"
    cv2.imwrite(str(wall), np.full((120, 160, 3), 128, np.uint8))
    return {"root": root, "video": video, "image": image, "bad": bad, "wall": wall}


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> DetectPipeline:
    root = tmp_path_factory.mktemp("serve_run")
    train(tiny_config(make_tiny_split(root), root / "run", root / "cache"), progress=False)
    (root / "crop.yaml").write_text("face_detector: haar\n")  # the tiny split's crops come from no prepare
    return DetectPipeline.from_run(root / "run", sampling=FrameSampling(fps=8), crop_config=root / "crop.yaml")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """The app under uvicorn in a thread, on a free loopback port."""

    def __init__(self, app) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> Server:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the test server did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture(scope="module")
def server(pipeline):
    with Server(create_app(pipeline, max_upload_mb=0.05)) as s:  # 50 KB: the synth videos are ~15 KB
        yield s


def upload(url: str, path: Path, name: str | None = None) -> tuple[int, dict]:
    """POST ``path`` as multipart field 'file'; (status, JSON body)."""
    boundary = uuid.uuid4().hex
    head = (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name or path.name}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n").encode()
    body = head + path.read_bytes() + f"\r\n--{boundary}--\r\n".encode()
    request = urllib.request.Request(
        f"{url}/api/detect", data=body, headers={"Content-Type": f"multipart/form-data; boundary={boundary}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def _temp_folders() -> set[str]:
    return {p.name for p in Path(tempfile.gettempdir()).glob("crossfake-serve-*")}


# -- the HTTP API -----------------------------------------------------------------------------------------


def test_upload_gives_verdict_timeline_crops_and_keeps_nothing(server, media) -> None:
    before = _temp_folders()
    status, body = upload(server.url, media["video"])
    assert status == 200, body
    result = body["result"]
    assert result["verdict"] in ("fake", "real") and result["path"] == media["video"].name
    assert result["frames_sampled"] == 8 and len(body["crops"]) == 8
    assert body["timeline"].startswith("data:image/png;base64,") and body["annotated"].startswith("data:image/png")
    assert all(c["image"].startswith("data:image/png;base64,") for c in body["crops"])
    assert _temp_folders() == before  # the upload's temporary folder is gone
    status, body = upload(server.url, media["image"])
    assert status == 200 and body["result"]["kind"] == "image" and body["timeline"] is None


@pytest.mark.parametrize(
    ("case", "status", "message"),
    [
        ("bad", 422, "not a video or image that can be read"),
        ("wall", 422, "no face found in the image"),
        ("type", 415, "not a supported type"),
        ("big", 413, "the limit is 0.05 MB"),
    ],
)
def test_bad_uploads_get_4xx_and_a_message(server, media, tmp_path, case, status, message) -> None:
    path, name = {"bad": (media["bad"], None), "wall": (media["wall"], None), "type": (media["bad"], "notes.txt"),
                  "big": (tmp_path / "big.mp4", None)}[case]
    if case == "big":
        path.write_bytes(os.urandom(200_000))
    got, body = upload(server.url, path, name)
    assert got == status and message in body["error"], body
    assert "Traceback" not in body["error"] and str(tempfile.gettempdir()) not in body["error"]


def test_requests_without_a_file_and_the_info_route(server) -> None:
    request = urllib.request.Request(f"{server.url}/api/detect", data=b"x=1",
                                     headers={"Content-Type": "application/x-www-form-urlencoded"})
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(request, timeout=30)
    assert e.value.code == 400
    with urllib.request.urlopen(f"{server.url}/api/info", timeout=30) as response:
        info = json.loads(response.read())
    assert info["method"] == "linear_probe" and info["max_upload_mb"] == 0.05 and not info["keeps_uploads"]


def test_keep_stores_the_upload_and_its_result(pipeline, media, tmp_path) -> None:
    with Server(create_app(pipeline, keep_dir=tmp_path / "kept")) as s:
        status, _ = upload(s.url, media["image"])
    assert status == 200
    (folder,) = (tmp_path / "kept").iterdir()
    assert sorted(p.name for p in folder.iterdir()) == ["annotated.png", "face.jpg", "result.json"]
    assert json.loads((folder / "result.json").read_text())["kind"] == "image"


def test_serve_cli_rejects_bad_settings_cleanly(capsys) -> None:
    code = main(["serve", "--model", "/nonexistent/run", "--max-upload-mb", "0"])
    assert code == 2 and "--max-upload-mb must be > 0" in capsys.readouterr().err
    code = main(["serve", "--model", "/nonexistent/run"])
    assert code == 2 and "no run directory at /nonexistent/run" in capsys.readouterr().err


# -- the page in a real browser ---------------------------------------------------------------------------


def test_page_uploads_shows_the_result_and_rejects_a_bad_file(browser, server, media) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, 60)
    browser.get(server.url)
    wait.until(lambda d: "linear_probe" in d.find_element(By.ID, "model").text)
    assert "Nothing is kept" in browser.find_element(By.ID, "limits").text

    browser.find_element(By.ID, "file").send_keys(str(media["video"]))
    browser.find_element(By.ID, "submit").click()
    verdict = wait.until(ec.visibility_of_element_located((By.ID, "verdict")))
    assert verdict.text in ("FAKE", "REAL")
    assert "threshold" in browser.find_element(By.ID, "message").text
    timeline = browser.find_element(By.ID, "timeline")
    assert timeline.is_displayed() and browser.execute_script("return arguments[0].naturalWidth", timeline) > 300
    crops = browser.find_elements(By.CSS_SELECTOR, "#crops figure")
    assert len(crops) == 8 and all(c.find_element(By.TAG_NAME, "img").get_attribute("src") for c in crops)
    assert not browser.find_element(By.ID, "error").is_displayed()

    browser.find_element(By.ID, "file").send_keys(str(media["bad"]))
    browser.find_element(By.ID, "submit").click()
    error = wait.until(ec.visibility_of_element_located((By.ID, "error")))
    assert error.text.startswith("HTTP 422: notes.mp4: not a video or image that can be read"), error.text
    assert not browser.find_element(By.ID, "result").is_displayed()
