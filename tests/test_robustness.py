"""The DeeperForensics perturbations and `crossfake robustness` on a tiny trained run.

Perturbations: DeeperForensics' parameters, determinism, strength growing with the level for every type,
clear errors for unknown codes and levels. The study: a linear probe on the tiny random CLIP trained
through the CLI on synthetic 64 px crops (fakes carry a checker pattern), then scored clean and under a
few perturbations; the table, the figure and resuming (counted scoring calls) are checked.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

from crossfake.cli.main import main
from crossfake.data.perturbations import (
    LEVELS,
    PERTURBATIONS,
    PerturbTransform,
    check_level,
    compress_clip,
    get_perturbation,
    parse_levels,
    parse_perturbations,
)
from crossfake.experiments import robustness
from crossfake.experiments.robustness import run_robustness
from crossfake.utils.errors import CrossfakeError
from tests.test_training import make_tiny_split

# --- perturbations ------------------------------------------------------------------------------------


def _textured(size: int = 96, seed: int = 0) -> Image.Image:
    """A colour image with natural images' 1/f amplitude spectrum (detail at every scale), so that every
    distortion changes it and removing detail or adding noise shows in the pixels."""
    rng = np.random.default_rng(seed)
    f = np.hypot(np.fft.fftfreq(size)[:, None], np.fft.fftfreq(size)[None, :])
    amplitude = 1 / np.maximum(f, 1 / size)
    channels = []
    for _ in range(3):
        x = np.real(np.fft.ifft2(amplitude * np.exp(2j * np.pi * rng.random((size, size)))))
        channels.append((x - x.mean()) / x.std())
    return Image.fromarray((128 + 40 * np.stack(channels, axis=-1)).clip(0, 255).astype(np.uint8))


def _distance(a: Image.Image, b: Image.Image) -> float:
    return float(np.abs(np.asarray(a, dtype=float) - np.asarray(b, dtype=float)).mean())


def test_parameters_are_deeperforensics() -> None:
    # github.com/EndlessSora/DeeperForensics-1.0, perturbation/add_distortion_to_video.py
    expected = {
        "CS": (0.4, 0.3, 0.2, 0.1, 0.0),
        "CC": (0.85, 0.725, 0.6, 0.475, 0.35),
        "BW": (16, 32, 48, 64, 80),
        "GNC": (0.001, 0.002, 0.005, 0.01, 0.05),
        "GB": (7, 9, 13, 17, 21),
        "JPEG": (2, 3, 4, 5, 6),
        "VC": (30, 32, 35, 38, 40),
    }
    assert {code: p.parameters for code, p in PERTURBATIONS.items()} == expected
    assert [p.code for p in PERTURBATIONS.values() if p.per_video] == ["VC"]


@pytest.mark.parametrize("size", [64, 256])
@pytest.mark.parametrize("code", list(PERTURBATIONS))
def test_deterministic_and_stronger_with_each_level(code: str, size: int) -> None:
    p = PERTURBATIONS[code]
    image = _textured(size)
    outs = [p.apply(image, level, np.random.default_rng(7)) for level in LEVELS]
    for level, out in zip(LEVELS, outs, strict=True):
        assert out.size == image.size and out.mode == "RGB"
        again = p.apply(image, level, np.random.default_rng(7))
        assert np.array_equal(np.asarray(out), np.asarray(again)), (
            f"{code} level {level} is not deterministic"
        )
    distances = [_distance(image, out) for out in outs]
    assert distances[0] > 0, f"{code} level 1 leaves the image unchanged"
    assert all(a < b for a, b in zip(distances, distances[1:], strict=False)), f"{code}: {distances}"


def test_random_perturbations_follow_the_generator() -> None:
    image = _textured()
    for code in ("BW", "GNC"):
        a = PERTURBATIONS[code].apply(image, 3, np.random.default_rng(1))
        b = PERTURBATIONS[code].apply(image, 3, np.random.default_rng(2))
        assert not np.array_equal(np.asarray(a), np.asarray(b))
    # the array form gives the PIL form's result, and a greyscale image is taken as RGB
    array = np.asarray(image)
    same = PERTURBATIONS["GB"].apply(array, 2)
    assert np.array_equal(np.asarray(same), np.asarray(PERTURBATIONS["GB"].apply(image, 2)))
    assert PERTURBATIONS["CS"].apply(image.convert("L"), 1).mode == "RGB"


def test_saturation_level_5_is_greyscale_and_contrast_scales_values() -> None:
    image = _textured()
    grey = np.asarray(PERTURBATIONS["CS"].apply(image, 5)).astype(int)
    assert np.abs(grey[..., 0] - grey[..., 1]).max() <= 1 and np.abs(grey[..., 1] - grey[..., 2]).max() <= 1
    dark = np.asarray(PERTURBATIONS["CC"].apply(image, 5)).astype(float)
    assert np.allclose(dark, np.rint(np.asarray(image) * 0.35), atol=0.5)


def test_perturb_transform_is_seeded_per_image_and_picklable() -> None:
    a, b = _textured(seed=0), _textured(seed=1)
    transform = PerturbTransform("gnc", 2, seed=3)
    first = np.asarray(transform(a))
    assert np.array_equal(first, np.asarray(PerturbTransform("GNC", 2, seed=3)(a)))  # any instance, any time
    assert np.array_equal(first, np.asarray(pickle.loads(pickle.dumps(transform))(a)))
    assert not np.array_equal(first, np.asarray(PerturbTransform("GNC", 2, seed=4)(a)))
    assert not np.array_equal(first - np.asarray(a), np.asarray(transform(b)) - np.asarray(b))


def test_video_compression_keeps_frames_and_sizes() -> None:
    frames = [_textured(33, seed=i).crop((0, 0, 33, 31)) for i in range(3)] + [_textured(48)]
    out = compress_clip(frames, 35)
    assert [f.size for f in out] == [f.size for f in frames]
    again = compress_clip(frames, 35)
    assert all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(out, again, strict=True))
    assert _distance(frames[0], compress_clip(frames, 40)[0]) > _distance(
        frames[0], compress_clip(frames, 30)[0]
    )


def test_bad_names_and_levels_are_clear_errors() -> None:
    with pytest.raises(CrossfakeError, match=r"unknown perturbation 'XX'.*CS \(colour saturation change\)"):
        get_perturbation("XX")
    for bad in (0, 6, 2.5, True, "3"):
        with pytest.raises(CrossfakeError, match="level must be an integer from 1 to 5"):
            check_level(bad)  # type: ignore[arg-type]
    with pytest.raises(CrossfakeError, match="level must be an integer from 1 to 5"):
        PERTURBATIONS["GB"].apply(_textured(), 6)
    assert (
        parse_levels("1-3") == [1, 2, 3]
        and parse_levels("5, 1,1") == [1, 5]
        and parse_levels(None) == [1, 2, 3, 4, 5]
    )
    with pytest.raises(CrossfakeError, match="not a level or a range"):
        parse_levels("one")
    with pytest.raises(CrossfakeError, match="level must be an integer"):
        parse_levels("4-7")
    assert [p.code for p in parse_perturbations("cs, gb,CS")] == ["CS", "GB"]
    assert len(parse_perturbations("all")) == 7
    with pytest.raises(CrossfakeError, match="no perturbation given"):
        parse_perturbations(" , ")


# --- the study on a tiny trained run -------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A linear probe on the tiny random CLIP, trained through `crossfake train`."""
    root = tmp_path_factory.mktemp("robustness")
    manifest = make_tiny_split(root / "data")  # 3 crops per video; test: 3 real, 3 NeuralTextures
    config = root / "probe.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "method": {"name": "linear_probe", "backbone": "tiny"},
                "data": {"manifest": str(manifest)},
                "train": {
                    "batch_size": 8,
                    "lr": 1e-2,
                    "epochs": 2,
                    "num_workers": 0,
                    "cache_dir": str(root / "cache"),
                },
            }
        )
    )
    assert main(["train", str(config), "--out", str(root / "run"), "--no-progress"]) == 0
    return root / "run"


#: The study's scoring function, before any test wraps it.
SCORE = robustness._score


class _Counted:
    """Wraps ``robustness._score``: counts calls, records what each scored, can fail at the n-th call."""

    def __init__(self, fail_at: int | None = None) -> None:
        self.calls: list[dict] = []
        self.fail_at = fail_at
        self.inner = SCORE

    def __call__(self, run_dir, rows, out, transform, options):
        if self.fail_at is not None and len(self.calls) + 1 == self.fail_at:
            raise KeyboardInterrupt
        self.calls.append(
            {
                "cell": out.parent.name,
                "transform": transform,
                "paths_exist": all(Path(p).is_file() for p in rows["path"] if Path(p).is_absolute()),
                "paths": rows["path"].tolist(),
            }
        )
        return self.inner(run_dir, rows, out, transform, options)


def _study(run_dir: Path, out: Path, **kwargs):
    options = robustness.ScoreOptions(progress=False, num_workers=0)
    return run_robustness(
        run_dir, out=out, perturbations="CS,GB,VC", levels="1,5", bootstrap=20, options=options, **kwargs
    )


def test_study_writes_table_and_figure_and_resumes(
    tiny_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "rob"
    cells = ["clean", "CS-1", "CS-5", "GB-1", "GB-5", "VC-1", "VC-5"]

    # Interrupted at the fourth cell: the three before it are finished.
    monkeypatch.setattr(robustness, "_score", _Counted(fail_at=4))
    with pytest.raises(KeyboardInterrupt):
        _study(tiny_run, out)
    assert sorted(p.parent.name for p in (out / "cells").glob("*/metrics.json")) == sorted(cells[:3])

    # The re-run scores only the four missing cells.
    counted = _Counted()
    monkeypatch.setattr(robustness, "_score", counted)
    result = _study(tiny_run, out)
    assert [c["cell"] for c in counted.calls] == cells[3:]
    assert result.skipped == cells[:3] and result.scored == cells[3:]

    # Per-image perturbations go in as a transform; VC as compressed files, which are gone afterwards.
    by_cell = {c["cell"]: c for c in counted.calls}
    assert repr(by_cell["GB-5"]["transform"]) == "PerturbTransform('GB', level=5, seed=0)"
    assert by_cell["VC-1"]["transform"] is None and by_cell["VC-1"]["paths_exist"]
    assert all(p.startswith(str(out / "vc_crops" / "1")) for p in by_cell["VC-1"]["paths"])
    assert not (out / "vc_crops").exists()

    table = result.table
    assert table["cell"].tolist() == cells
    assert table.loc[0, "frame_drop"] == 0 and table.loc[0, "level"] == 0
    assert table[["frame_auc", "video_auc", "frame_low", "frame_high"]].notna().all().all()
    assert (table["frames"] == 18).all() and (table["videos"] == 6).all()
    assert np.allclose(table["frame_drop"], table["frame_auc"] - table.loc[0, "frame_auc"])
    # The perturbations reach the detector: perturbed scores differ from the clean ones.
    clean = pd.read_parquet(out / "cells/clean/predictions.parquet")
    for cell in cells[1:]:
        preds = pd.read_parquet(out / "cells" / cell / "predictions.parquet")
        assert preds["sample_id"].tolist() == clean["sample_id"].tolist()
        assert not np.allclose(preds["score"], clean["score"]), f"{cell} scored like the clean crops"

    for name in ("robustness.md", "robustness.csv", "robustness.json", "robustness.png"):
        assert (out / name).is_file()
    md = (out / "robustness.md").read_text()
    assert "## Frame AUC [95% CI]" in md and "## Video AUC" in md and "| GB (Gaussian blur) |" in md
    assert pd.read_csv(out / "robustness.csv")["cell"].tolist() == cells
    record = json.loads((out / "robustness.json").read_text())
    assert record["manipulations"] == {"real": 9, "NeuralTextures": 9}
    assert (
        record["perturbations"]["VC"]["parameters"] == [30, 32, 35, 38, 40] and record["skipped"] == cells[:3]
    )
    with Image.open(out / "robustness.png") as figure:
        assert figure.size[0] > 800

    # Finished: nothing is scored again. Another seed changes the random perturbations: all are redone.
    counted = _Counted()
    monkeypatch.setattr(robustness, "_score", counted)
    assert _study(tiny_run, out).scored == [] and counted.calls == []
    redone = run_robustness(
        tiny_run,
        out=out,
        perturbations="CS",
        levels="1",
        bootstrap=20,
        seed=1,
        options=robustness.ScoreOptions(progress=False, num_workers=0),
    )
    assert redone.scored == ["clean", "CS-1"] and len(counted.calls) == 2


def test_cli(
    tiny_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # a relative --out (the compressed crops must still be found)
    out = tmp_path / "cli"
    argv = [
        "robustness",
        str(tiny_run),
        "--perturbations",
        "JPEG,VC",
        "--levels",
        "2",
        "--bootstrap",
        "10",
        "--out",
        "cli",
        "--no-progress",
        "--num-workers",
        "0",
    ]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "JPEG-2" in printed and "VC-2" in printed and str(out / "robustness.md") in printed
    assert main(argv) == 0 and "0 cells scored, 3 finished earlier" in capsys.readouterr().out

    for extra, message in (
        (["--perturbations", "XX"], "unknown perturbation 'XX'"),
        (["--levels", "7"], "level must be an integer from 1 to 5"),
        (["--split", "holdout"], "no rows in split 'holdout'"),
        (["--manipulations", "real,Nope"], "--manipulations real,Nope: Nope; split 'test' of"),
        (["--sources", "real"], "has only real labelled rows"),  # the flag's old name still works
    ):
        assert main([*argv, *extra]) == 2
        assert message in capsys.readouterr().err
    assert main(["robustness", str(tmp_path), "--no-progress"]) == 2
    assert "not a crossfake run directory" in capsys.readouterr().err
