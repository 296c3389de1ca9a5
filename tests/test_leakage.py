"""The identity-leakage study's arms, audit, gaps and tables, without training anything.

The end-to-end run (`crossfake leakage` on a tiny synthetic FF++) is in test_experiments.py.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from crossfake.data.audit import audit_test_set
from crossfake.data.corpora import get_corpus
from crossfake.data.splits import SplitMode, assign_splits
from crossfake.experiments.studies import (
    LeakageArm,
    LeakageConfig,
    _with_gaps,
    leakage_markdown,
    leakage_summary,
)
from crossfake.utils.errors import CrossfakeError
from tests.conftest import make_ffpp_tree, manifest_from_records

TEST_MANIPULATIONS = ["real", "NeuralTextures"]


@pytest.fixture(scope="module")
def ffpp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_ffpp_tree(tmp_path_factory.mktemp("leakage") / "ffpp", n_pairs=20)


@pytest.fixture(scope="module")
def manifest(ffpp: Path) -> pd.DataFrame:
    return manifest_from_records(get_corpus("ffpp", ffpp).records(), frames=10)


def study(ffpp: Path, **changes: Any) -> dict[str, Any]:
    experiment = {
        "name": "tiny", "data": {"root": str(ffpp)}, "split": "report1",
        "methods": {"linear_probe": {"method": {"backbone": "tiny"}},
                    "lora": {"method": {"backbone": "tiny", "r": 4, "alpha": 8}, "train": {"epochs": 3}}},
        "tests": {"NeuralTextures": TEST_MANIPULATIONS, "Face2Face": ["real", "Face2Face"]},
    }
    return {"name": "leak", "experiment": experiment, "method": ["linear_probe", "lora"],
            "test": "NeuralTextures"} | changes


def arm_split(config: LeakageConfig, manifest: pd.DataFrame, arm: LeakageArm, seed: int = 0) -> pd.DataFrame:
    return assign_splits(manifest, config.arm_spec(arm, seed))


# -- the arms ----------------------------------------------------------------------------------------------


def test_each_arm_leaks_what_it_says(ffpp: Path, manifest: pd.DataFrame) -> None:
    config = LeakageConfig.parse(study(ffpp), where="study")
    assert config.arms == list(LeakageArm) and config.reference == LeakageArm.identity
    audits = {arm: audit_test_set(arm_split(config, manifest, arm), TEST_MANIPULATIONS) for arm in LeakageArm}
    for arm, audit in audits.items():
        assert audit["videos"] > 0 and audit["manipulation_frames"] > 0, arm

    # The reports' leaky split: the test manipulation itself trains, and nearly every test video has
    # frames in training (10 frames per video, 80% of them to train).
    every = audits[LeakageArm.frames_all]
    assert every["manipulation_frames_in_train"] > 0.7 * 10 * 40
    assert every["videos_in_train"] == every["videos"] and every["people_in_train"] == every["people"]
    # Frames at random by each manipulation's shares: videos and people leak, the manipulation does not.
    frames = audits[LeakageArm.frames]
    assert frames["manipulation_frames_in_train"] == frames["manipulation_videos_in_train"] == 0
    assert frames["videos_in_train"] > 0 and frames["people_in_train"] > 0
    # Report 1's video-level split: no video on two sides, but the test fakes show people who train.
    videos = audits[LeakageArm.videos]
    assert videos["manipulation_frames_in_train"] == 0 and videos["videos_in_train"] == 0
    assert videos["people_in_train"] > 0 and videos["videos_person_in_train"] > videos["videos"] / 2
    # The reference shares nothing.
    identity = audits[LeakageArm.identity]
    assert identity["people_in_train"] == identity["videos_in_train"] == 0
    assert identity["videos_person_in_train"] == identity["manipulation_frames_in_train"] == 0


def test_arms_split_the_same_manipulations_with_the_seed(ffpp: Path, manifest: pd.DataFrame) -> None:
    config = LeakageConfig.parse(study(ffpp), where="study")
    # The manipulations that train (real, FaceSwap) and the studied test set's; Face2Face belongs to no arm.
    assert config.manipulations() == ["real", "FaceSwap", "NeuralTextures"]
    for arm in LeakageArm:
        spec = config.arm_spec(arm, seed=3)
        assert list(spec.manipulations) == config.manipulations() and spec.seed == 3
        df = arm_split(config, manifest, arm, seed=3)
        assert df.loc[df["manipulation"] == "Face2Face", "split"].isna().all()
        assert not arm_split(config, manifest, arm, seed=4)["split"].equals(df["split"]), arm
    # A second test set brings its manipulation into every arm (and into frames-all's training).
    both = LeakageConfig.parse(study(ffpp, test=["NeuralTextures", "Face2Face"]), where="study")
    assert both.manipulations() == ["real", "FaceSwap", "NeuralTextures", "Face2Face"]
    assert both.arm_spec(LeakageArm.frames_all, 0).manipulations["Face2Face"].as_tuple() == (80, 10, 10)
    every = config.arm_spec(LeakageArm.frames_all, 0)
    assert every.mode == SplitMode.frame
    assert {m: shares.as_tuple() for m, shares in every.manipulations.items()} == dict.fromkeys(
        config.manipulations(), (80, 10, 10))
    assert config.arm_spec(LeakageArm.frames, 0).manipulations["NeuralTextures"].as_tuple() == (0, 0, 100)
    assert config.arm_spec(LeakageArm.videos, 0).mode == SplitMode.literal


def test_experiments_share_the_data_and_set_the_seed(ffpp: Path, tmp_path: Path) -> None:
    config = LeakageConfig.parse(study(ffpp, seeds=[0, 5], arms=["frames-all", "identity"]), where="study")
    experiments = config.experiments(tmp_path / "run")
    assert set(experiments) == {(a, s) for a in (LeakageArm.frames_all, LeakageArm.identity) for s in (0, 5)}
    for (arm, seed), experiment in experiments.items():
        assert experiment.data.root == ffpp.absolute()
        assert experiment.prepare.cache == tmp_path / "run" / "prepared"  # one crop cache for every arm
        assert experiment.split_spec().seed == seed and set(experiment.tests) == {"NeuralTextures"}
        for name in ("linear_probe", "lora"):
            train = experiment.train_config(name, manifest=Path("s"), out=Path("o"), check_paths=False)
            assert train.train.seed == seed
        assert config.arm_dir(tmp_path / "run", arm, seed) == tmp_path / "run" / arm.value / f"seed{seed}"
    # Without a corpus the synthetic FF++ is written once into the study's folder, cropped with Haar.
    synthetic = study(ffpp)
    synthetic["experiment"]["data"] = {"synth": {"videos": 16, "frames": 4}}
    experiment = next(iter(LeakageConfig.parse(synthetic, where="s").experiments(tmp_path / "run").values()))
    assert experiment.data.root == tmp_path / "run" / "data"
    assert experiment.prepare.crop.face_detector == "haar"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"arms": ["frames-all", "frames-all", "identity"]}, r"arms: each arm once"),
        ({"arms": ["frames", "videos"]}, r"reference: 'identity' is not one of the arms \(frames, videos\)"),
        ({"arms": ["frames-all", "pixels"]}, r"arms.1: Input should be 'frames-all', 'frames', 'videos' or"),
        ({"seeds": [0, 0]}, r"seeds: distinct non-negative integers"),
        ({"seeds": []}, r"seeds: List should have at least 1 item"),
        ({"method": ["linear_probe", "nope"]}, r"method 'nope' is not an entry of experiment tiny"),
        ({"test": "Deepfakes"}, r"test set 'Deepfakes' is not in experiment tiny"),
        ({"test": ["NeuralTextures", "X"]}, r"test set 'X' is not in experiment tiny"),
        ({"leaky_mode": "frame"}, r"leaky_mode: unknown key"),
    ],
)
def test_bad_study_configs_name_the_key(ffpp: Path, change: dict, message: str) -> None:
    with pytest.raises(CrossfakeError, match=message):
        LeakageConfig.parse(study(ffpp, **change), where="study.yaml")


def test_an_ablation_still_studies_one_method_on_one_test_set(ffpp: Path) -> None:
    from crossfake.experiments.studies import AblationConfig

    grid = {"grid": {"method.r": [2, 4]}}
    with pytest.raises(CrossfakeError, match="method: an ablation studies one method entry"):
        AblationConfig.parse(study(ffpp, **grid), where="ablation.yaml")
    with pytest.raises(CrossfakeError, match="test: an ablation ranks its cells on one test set"):
        AblationConfig.parse(study(ffpp, method="lora", test=["NeuralTextures", "Face2Face"], **grid), where="a")
    assert list(AblationConfig.parse(study(ffpp, method="lora", **grid), where="a").cells()) == ["r2", "r4"]


# -- audit -------------------------------------------------------------------------------------------------


def test_audit_test_set_counts() -> None:
    def row(video: str, manipulation: str, target: str, source: str, split: str | None, frame: int = 0) -> dict:
        return {"corpus": "d", "video_id": f"d/{manipulation}/{video}", "manipulation": manipulation,
                "target_id": target, "source_id": source, "split": split, "frame_idx": frame}

    df = pd.DataFrame([
        row("a", "real", "a", "a", "train"), row("a", "real", "a", "a", "test", 1),  # a video on two sides
        row("b", "real", "b", "b", "test"),
        row("c_d", "NeuralTextures", "c", "d", "train"),  # the manipulation trains (another video)
        row("a_b", "NeuralTextures", "a", "b", "test"), row("a_b", "NeuralTextures", "a", "b", "test", 1),
        row("e_f", "NeuralTextures", "e", "f", "test"),
        row("c", "FaceSwap", "c", "c", "test"),  # not in the test set
        row("g", "real", "g", "g", None),
    ])
    assert audit_test_set(df, TEST_MANIPULATIONS) == {
        "people": 4, "people_in_train": 1,          # a, b, e, f; a trains
        "videos": 4, "videos_in_train": 1,          # real/a
        "videos_person_in_train": 2,                # real/a, NeuralTextures/a_b
        "manipulation_frames": 3, "manipulation_frames_in_train": 1, "manipulation_videos_in_train": 1,
    }
    with pytest.raises(CrossfakeError, match="no 'split' column"):
        audit_test_set(df.drop(columns="split"), TEST_MANIPULATIONS)


# -- gaps, summary and the table ---------------------------------------------------------------------------


def result_rows(aucs: dict[tuple[str, str, int], float], width: float = 0.05, test: str = "NeuralTextures"
                ) -> pd.DataFrame:
    rows = []
    for (method, arm, seed), auc in aucs.items():
        rows.append({"test": test, "method": method, "arm": arm, "seed": seed, "status": "done", "error": None,
                     "val_auc": 0.9, "frame_auc": auc, "frame_low": auc - width, "frame_high": auc + width,
                     "video_auc": auc + 0.01, "video_low": auc - 2 * width, "video_high": auc + 2 * width,
                     "people": 10, "people_in_train": 10 if arm != "identity" else 0, "videos": 20,
                     "videos_in_train": 20 if arm == "frames-all" else 0, "videos_person_in_train": 0,
                     "manipulation_frames": 80, "manipulation_frames_in_train": 300 if arm == "frames-all" else 0,
                     "manipulation_videos_in_train": 40 if arm == "frames-all" else 0})
    return pd.DataFrame(rows)


def test_gaps_are_to_the_reference_of_the_same_test_set_method_and_seed() -> None:
    table = _with_gaps(pd.concat([result_rows({
        ("lora", "frames-all", 0): 0.95, ("lora", "identity", 0): 0.60,
        ("lora", "frames-all", 1): 0.62, ("lora", "identity", 1): 0.58,
        ("linear_probe", "frames-all", 0): 0.70, ("linear_probe", "identity", 0): 0.50,
    }), result_rows({("lora", "frames-all", 0): 0.90, ("lora", "identity", 0): 0.80}, test="Deepfakes")]),
        LeakageArm.identity)
    gap = table.set_index(["test", "method", "arm", "seed"])
    assert gap.loc[("NeuralTextures", "lora", "frames-all", 0), "frame_gap"] == pytest.approx(0.35)
    assert gap.loc[("NeuralTextures", "lora", "frames-all", 1), "frame_gap"] == pytest.approx(0.04)
    assert gap.loc[("NeuralTextures", "linear_probe", "frames-all", 0), "frame_gap"] == pytest.approx(0.20)
    assert gap.loc[("Deepfakes", "lora", "frames-all", 0), "frame_gap"] == pytest.approx(0.10)
    assert gap.loc[("NeuralTextures", "lora", "identity", 0), "frame_gap"] == 0
    # Seed 0's identity AUC (0.60) lies below frames-all's CI [0.90, 1.00]; seed 1's (0.58) inside [0.57, 0.67].
    assert gap.loc[("NeuralTextures", "lora", "frames-all", 0), "frame_ref_below_ci"]
    assert not gap.loc[("NeuralTextures", "lora", "frames-all", 1), "frame_ref_below_ci"]
    assert not gap.loc[("NeuralTextures", "lora", "identity", 0), "frame_ref_below_ci"]
    assert gap.loc[("Deepfakes", "lora", "frames-all", 0), "frame_ref_below_ci"]  # 0.80 < 0.85, its own reference


def test_summary_and_markdown_over_seeds(ffpp: Path) -> None:
    config = LeakageConfig.parse(study(ffpp, method="lora", arms=["frames-all", "identity"], seeds=[0, 1]),
                                 where="study")
    table = _with_gaps(result_rows({("lora", "frames-all", 0): 0.95, ("lora", "identity", 0): 0.60,
                                    ("lora", "frames-all", 1): 0.85, ("lora", "identity", 1): 0.50}),
                       LeakageArm.identity)
    summary = leakage_summary(table, config).set_index("arm")
    assert summary.loc["frames-all", "seeds"] == 2
    assert summary.loc["frames-all", "frame_auc_mean"] == pytest.approx(0.90)
    assert summary.loc["frames-all", "frame_auc_sd"] == pytest.approx(math.sqrt(0.005))
    assert summary.loc["frames-all", "frame_gap_mean"] == pytest.approx(0.35)
    assert summary.loc["frames-all", "frame_ref_below_ci"] == 2
    md = leakage_markdown(config, config.base(), table, summary.reset_index(), {"lora": "LoRA words"})
    assert "| `frames-all` | 0.900 ± 0.071 |" in md
    assert "| NeuralTextures | `lora` | 0.900 ± 0.071 (+0.350) | 0.550 ± 0.071 |" in md  # the overview
    assert "+0.350 ± 0.000" in md and "2 / 2 of 2" in md
    assert "Per seed:" in md and "| `frames-all` | 1 | 0.850 [0.800, 0.900] |" in md
    assert "| 300 / 80 |" in md  # test-manipulation frames in training / in the test set


def test_single_seed_markdown_shows_cis_and_the_methods_as_configured(ffpp: Path, tmp_path: Path) -> None:
    from crossfake.experiments.studies import describe_entry

    config = LeakageConfig.parse(study(ffpp, arms=["frames-all", "identity"]), where="study")
    base = config.base()
    methods = {name: describe_entry(base, name) for name in config.entries()}
    assert methods["lora"].startswith("lora (alpha=8, dropout=0.05, r=4) on tiny, 3 epochs")
    assert methods["linear_probe"].startswith("linear_probe on tiny, 1 epoch ")
    rows = result_rows({("linear_probe", "frames-all", 0): 0.80, ("linear_probe", "identity", 0): 0.55,
                        ("lora", "frames-all", 0): 0.97, ("lora", "identity", 0): 0.60})
    failed = (rows["method"] == "lora") & (rows["arm"] == "identity")
    rows.loc[failed, ["status", "error"]] = ["failed", "boom"]
    rows.loc[failed, ["frame_auc", "video_auc"]] = math.nan
    table = _with_gaps(rows, LeakageArm.identity)
    md = leakage_markdown(config, base, table, leakage_summary(table, config), methods)
    assert "- `lora`: lora (alpha=8, dropout=0.05, r=4) on tiny" in md
    assert ("| `frames-all` | 0.800 [0.750, 0.850] | 0.810 [0.700, 0.900] | +0.250 / +0.250 | 10 of 10 | 20 of 20 "
            "| 300 / 80 |") in md
    # A failed reference leaves its arm's row and the others' gaps empty, not made up.
    assert "| `identity` | failed: boom |" in md and "Failed: identity seed 0" in md
    assert "| `frames-all` | 0.970 [0.920, 1.020] | 0.980 [0.870, 1.070] | - / - |" in md
    assert "Per seed" not in md and "(reference)" in md
    assert "| NeuralTextures | `linear_probe` | 0.800 [0.750, 0.850] (+0.250) | 0.550 [0.500, 0.600] |" in md
    assert "| NeuralTextures | `lora` | 0.970 [0.920, 1.020] | failed |" in md


def test_cli_exit_status_says_whether_every_arm_finished(ffpp: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    import yaml

    import crossfake.cli.leakage as cli
    from crossfake.cli.main import main

    path = tmp_path / "leak.yaml"
    path.write_text(yaml.safe_dump(study(ffpp)))
    statuses: list[str] = []

    def fake_run(config: LeakageConfig, out: Path, progress: bool, executor=None) -> pd.DataFrame:
        assert config.entries() == ["lora"] and config.seeds == [1, 2]  # --set reaches the study
        out.mkdir(parents=True, exist_ok=True)
        (out / "leakage.md").write_text("# the table\n")
        return pd.DataFrame({"status": statuses})

    monkeypatch.setattr(cli, "run_leakage", fake_run)
    args = ["leakage", str(path), "--out", str(tmp_path / "out"), "--set", "method=lora", "--set", "seeds=[1,2]"]
    statuses[:] = ["done", "done"]
    assert main(args) == 0 and "# the table" in capsys.readouterr().out
    statuses[:] = ["done", "failed"]
    assert main(args) == 1
    assert main(["leakage", str(path), "--set", "arms=[frames, videos]"]) == 2  # a bad study: one line, status 2
    assert "reference: 'identity' is not one of the arms" in capsys.readouterr().err
