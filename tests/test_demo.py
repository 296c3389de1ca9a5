"""The README's first command, `crossfake run demo`, end to end: its numbers must mean something.

The shipped demo trains every CLIP method on Real + FaceSwap of the synthetic FF++ with the bundled
`synth-tiny` backbone and tests on FaceSwap (seen, other people) and the unseen NeuralTextures and
Face2Face. The runs are deterministic on a given machine; the margins below leave room for another CPU.

The test runs the demo's data, split and test sets with the entries whose numbers it checks (the whole
demo trains nine detectors, several minutes more on a 2-core CI machine); every entry of the shipped
demo is parsed by ``test_experiments.test_every_shipped_experiment_parses``, and each method is trained
on tiny backbones by its own tests.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from crossfake.evaluation.aggregate import ALL
from crossfake.experiments import ExperimentConfig, run_experiment
from crossfake.reports import load_summary

pytestmark = pytest.mark.slow

#: Entries that learn FaceSwap, with the frame AUC each reaches on it at every training seed measured. Over
#: seeds 0, 1, 2 (`crossfake run demo --set defaults.train.seed=S --out runs/demo-seedS`): linear_probe
#: 0.740/0.717/0.751, lora 0.869/0.869/0.882, prompt_tuning 0.697/0.708/0.722 (and visual_prompt
#: 0.776/0.768/0.789, left out here for time: it trains through the backbone like LoRA, 1-2 minutes); on the
#: unseen NeuralTextures and Face2Face every one of them stays at 0.49-0.57, at least 0.18 below its
#: FaceSwap AUC. (reprogramming stays near 0.56 on FaceSwap; the tiny Qwen's answers are noise by
#: construction.)
LEARNERS = {"linear_probe": 0.7, "lora": 0.8, "prompt_tuning": 0.65}


def test_demo_shows_the_cross_manipulation_drop(tmp_path: Path) -> None:
    config = ExperimentConfig.from_yaml("demo", overrides=[f"defaults.train.cache_dir={tmp_path / 'features'}"])
    result = run_experiment(config, tmp_path / "demo", progress=False, only=list(LEARNERS))
    assert not result.failed()
    assert (tmp_path / "demo" / "report" / "report.html").is_file()

    summary = load_summary(tmp_path / "demo")
    assert summary.seen == {"FaceSwap": "seen", "NeuralTextures": "unseen", "Face2Face": "unseen"}
    r = summary.results
    frame = r[(r["threshold"] == "val") & (r["level"] == "frame") & (r["group"] == ALL) & (r["metric"] == "auc")]
    auc = frame.set_index(["test_set", "method"])["value"]
    for method, seen in LEARNERS.items():
        assert auc["FaceSwap", method] >= seen, auc
        for unseen in ("NeuralTextures", "Face2Face"):
            assert auc[unseen, method] <= min(0.6, auc["FaceSwap", method] - 0.12), (method, unseen, auc)
    # The methods differ: fine-tuning the backbone (LoRA) beats a probe of its frozen features.
    assert auc["FaceSwap", "lora"] > auc["FaceSwap", "linear_probe"] + 0.05, auc
