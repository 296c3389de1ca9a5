"""Shared fixtures: a fake FF++ tree (empty files, for adapter and split logic) and manifests built from it."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pandas as pd
import pytest

from crossfake.data.corpora.base import VideoRecord
from crossfake.data.identity import identity_groups
from crossfake.data.manifest import COLUMNS, coerce

MANIPULATIONS = ("FaceSwap", "NeuralTextures", "Face2Face")


def make_ffpp_tree(root: Path, n_pairs: int = 20, manipulations=MANIPULATIONS, compression: str = "c23") -> Path:
    """FF++ layout with empty video files, official split files and a conversion dict.

    Originals 2k and 2k+1 form pair k. Originals 000/002 share a YouTube video within train, and 004 and
    the last original share one across the official train/test boundary (like FF++'s 605/606).
    """
    ids = [f"{i:03d}" for i in range(2 * n_pairs)]
    pairs = [[ids[2 * k], ids[2 * k + 1]] for k in range(n_pairs)]
    real = root / "original_sequences/youtube" / compression / "videos"
    real.mkdir(parents=True)
    for i in ids:
        (real / f"{i}.mp4").touch()
    for m in manipulations:
        d = root / "manipulated_sequences" / m / compression / "videos"
        d.mkdir(parents=True)
        for a, b in pairs:
            (d / f"{a}_{b}.mp4").touch()
            (d / f"{b}_{a}.mp4").touch()
    n_train, n_val = int(0.72 * n_pairs), int(0.14 * n_pairs)
    for name, chunk in (("train", pairs[:n_train]), ("val", pairs[n_train : n_train + n_val]),
                        ("test", pairs[n_train + n_val :])):
        (root / f"{name}.json").write_text(json.dumps(chunk))
    conv = {i: f"yt{int(i):09d}_0" for i in ids}
    conv["002"] = conv["000"].replace("_0", "_1")
    conv[ids[-1]] = conv["004"].replace("_0", "_1")
    (root / "conversion_dict.json").write_text(json.dumps(conv))
    return root


def manifest_from_records(records: list[VideoRecord], frames: int = 3) -> pd.DataFrame:
    """A manifest as `prepare` would write it, without decoding anything (``frames`` rows per video)."""
    groups = identity_groups(records)
    rows = []
    for r in records:
        for f in range(frames):
            rows.append({
                "sample_id": f"{r.video_id}/{f:06d}", "path": f"crops/{r.video_id}/{f:06d}.png",
                "corpus": r.corpus, "manipulation": r.manipulation, "video_id": r.video_id, "video_path": str(r.path),
                "frame_idx": f, "label": r.label, "target_id": r.target_id, "source_id": r.source_id,
                "identity_group": groups[r.video_id], "official_split": r.official_split,
                "face_x0": 0.0, "face_y0": 0.0, "face_x1": 10.0, "face_y1": 10.0, "det_score": 1.0,
                "num_faces": 1, "face_detector": "none", "track_id": 0, "interpolated": False,
            })
    df = pd.DataFrame(rows, columns=list(COLUMNS))
    return coerce(df)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip tests marked ``gpu`` without a CUDA device and ``bitsandbytes`` without the package."""
    import importlib.util

    missing = {
        "gpu": None if _cuda() else "no CUDA device",
        "bitsandbytes": None if importlib.util.find_spec("bitsandbytes") else "bitsandbytes is not installed",
    }
    for item in items:
        for mark, reason in missing.items():
            if reason and mark in item.keywords:
                item.add_marker(pytest.mark.skip(reason=reason))


def _cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


@pytest.fixture(autouse=True, scope="session")
def _no_downloads(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Tests never download: model files come from an empty cache of their own (YuNet's weights are
    passed explicitly, from the real-media folder)."""
    patch = pytest.MonkeyPatch()
    patch.setenv("CROSSFAKE_CACHE", str(tmp_path_factory.mktemp("model-cache")))
    patch.setenv("CROSSFAKE_OFFLINE", "1")
    yield
    patch.undo()


@pytest.fixture
def ffpp_tree(tmp_path: Path) -> Path:
    return make_ffpp_tree(tmp_path / "ffpp")


@pytest.fixture(scope="session")
def realdata() -> Path:
    """The shared real-media folder (``$CROSSFAKE_REALDATA``); CI (CROSSFAKE_REQUIRE_REALDATA=1) must have it."""
    value = os.environ.get("CROSSFAKE_REALDATA")
    root = Path(value).expanduser() if value else None
    if root is None or not root.is_dir():
        reason = (
            f"CROSSFAKE_REALDATA={value} is not a folder" if value
            else "CROSSFAKE_REALDATA is not set"
        ) + " (expected the shared real-media folder, ../shared/realdata beside the repository)"
        if os.environ.get("CROSSFAKE_REQUIRE_REALDATA") == "1":
            pytest.fail(f"CROSSFAKE_REQUIRE_REALDATA=1 but {reason}")
        pytest.skip(reason)
    return root


@pytest.fixture(scope="session")
def browser():
    """Headless Debian chromium driven by selenium; CI (CROSSFAKE_REQUIRE_BROWSER=1) must have it."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    chromedriver = shutil.which("chromedriver")
    if not (chromium and chromedriver):
        reason = "Debian's chromium and chromium-driver are not installed (apt-get install chromium chromium-driver)"
        if os.environ.get("CROSSFAKE_REQUIRE_BROWSER") == "1":
            pytest.fail(f"CROSSFAKE_REQUIRE_BROWSER=1 but {reason}")
        pytest.skip(reason)
    webdriver = pytest.importorskip("selenium.webdriver")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=chromedriver))
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()
