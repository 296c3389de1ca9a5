"""The demo behind ``make demo``: the whole job on the embedded synthetic FF++, one command at a time.

It runs the same ``crossfake`` commands a user would type (printed before each runs), driven by
``configs/demo.yaml``: synth → prepare → split (report 1's table, by identity) → audit → for every method
train on Real + FaceSwap and evaluate on the unseen NeuralTextures and Face2Face test videos. It ends
with a headline table. Finished steps are skipped on a re-run: each command resumes on its own.

    python -m crossfake.demo --out runs/demo
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from importlib import resources
from pathlib import Path

import yaml

from crossfake.cli.main import main as crossfake
from crossfake.evaluation.aggregate import Evaluation
from crossfake.evaluation.tables import render
from crossfake.utils.errors import CrossfakeError

HEADLINE = (("frame", "auc", "frame AUC"), ("frame", "eer", "frame EER"), ("frame", "balanced_accuracy", "BalAcc"),
            ("frame", "f1", "F1"), ("video_mean", "auc", "video AUC"))


def load_demo_config(path: str | Path | None = None) -> dict:
    if path is None:
        return yaml.safe_load((resources.files("crossfake") / "configs" / "demo.yaml").read_text())
    return yaml.safe_load(Path(path).read_text())


def step(*args: str) -> None:
    """Run one crossfake command, echoing it first; stop the demo if it fails."""
    print(f"\n$ crossfake {shlex.join(args)}", flush=True)
    status = crossfake(list(args))
    if status != 0:
        raise SystemExit(f"demo stopped: `crossfake {shlex.join(args)}` exited with status {status}")


def headline(out: Path, methods: list[str]) -> str:
    """A table of each method's test metrics per unseen manipulation (at the validation threshold)."""
    rows = []
    for method in methods:
        record = json.loads((out / "runs" / method / "metrics_test.json").read_text())
        ev = Evaluation.from_dict(record["metrics"]["val EER"])
        for group in sorted(set(ev.results["group"]) - {"all", "real"}):
            cells = [method, group]
            for level, metric, _ in HEADLINE:
                try:
                    cells.append(f"{ev.value(level, group, metric):.3f}")
                except KeyError:
                    cells.append("-")
            rows.append(cells)
    return render(["method", "test set", *(h for *_, h in HEADLINE)], rows, fmt="text")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m crossfake.demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("runs/demo"), help="where everything is written")
    parser.add_argument("--config", type=Path, help="a demo YAML (default: the shipped configs/demo.yaml)")
    args = parser.parse_args(argv)
    cfg = load_demo_config(args.config)
    out = args.out
    data, prepared = out / "data", out / "prepared"
    split = prepared / f"split_{cfg['split']}.parquet"

    s = cfg["synth"]
    step("synth", str(data), "--videos", str(s["videos"]), "--frames", str(s["frames"]), "--seed", str(s["seed"]))
    step("prepare", str(data), "--out", str(prepared), "--frames", str(cfg["prepare"]["frames"]))
    step("split", str(prepared / "manifest.parquet"), "--spec", cfg["split"], "--out", str(split))
    step("audit", str(split), "--strict")
    methods = list(cfg["methods"])
    for method in methods:
        overrides = {"data.manifest": str(split), **cfg["train"], **(cfg["methods"][method] or {})}
        sets = [a for k, v in overrides.items() for a in ("--set", f"{k}={v}")]
        run_dir = out / "runs" / method
        step("train", method, "--out", str(run_dir), *sets)
        step("evaluate", str(run_dir), "--split", "test", "--group-col", "method")

    print("\nHeadline: trained on Real + FaceSwap, tested on manipulations never seen in training "
          "(identity-disjoint test videos, threshold chosen on validation)\n")
    print(headline(out, methods))
    print(f"\nEverything is in {out}/: data/, prepared/ (crops, manifest, split), runs/<method>/ "
          "(config, weights, predictions, metrics, ROC figures).")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except CrossfakeError as e:
        sys.exit(f"demo: error: {e}")
