"""Experiment reports: built from a synthetic experiment run directory whose metrics are known in advance."""

from __future__ import annotations

import base64
import io
import json
import shutil
from html.parser import HTMLParser
from pathlib import Path

import matplotlib.image
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from crossfake.cli.main import main
from crossfake.evaluation import metrics
from crossfake.evaluation.plots import plot_heatmap
from crossfake.evaluation.tables import render
from crossfake.reports import build_report, compare_text, headline_text, load_runs, load_summary
from crossfake.reports.collect import collect, read_predictions, summarise_test_sets
from crossfake.runs.experiment import load_experiment
from crossfake.utils.errors import CrossfakeError

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
N_BOOT = 20
FRAMES = 5
#: manipulation -> fake videos; reals are split train/val/test below.
FAKE_VIDEOS = {"FaceSwap": 6, "NeuralTextures": 8, "Face2Face": 4}
N_REAL_TEST = 4
TEST_SETS = {"nt": ["real", "NeuralTextures"], "mixed": ["real", "NeuralTextures", "Face2Face"]}


def split_manifest() -> pd.DataFrame:
    """12 real videos (train 4, val 4, test 4), FaceSwap train/val, NeuralTextures and Face2Face test."""
    rows = []

    def add(manipulation: str, name: str, split: str | None, person: str) -> None:
        for f in range(FRAMES):
            video = f"ffpp/{manipulation}/{name}"
            rows.append({"sample_id": f"{video}/{f:06d}", "video_id": video, "corpus": "ffpp",
                         "manipulation": manipulation, "label": int(manipulation != "real"), "identity_group": f"ffpp:person:{person}",
                         "target_id": person, "source_id": person, "split": split})

    for i in range(12):
        add("real", f"{i:03d}", ("train", "val", "test")[i // 4], f"{i:03d}")
    for i in range(FAKE_VIDEOS["FaceSwap"]):  # people of the real train (000-003) and val (004-005) videos
        add("FaceSwap", f"{i:03d}_fs", "train" if i < 4 else "val", f"{i:03d}")
    for manipulation in ("NeuralTextures", "Face2Face"):
        for i in range(FAKE_VIDEOS[manipulation]):
            add(manipulation, f"{8 + i % 4:03d}_{i}", "test", f"{8 + i % 4:03d}")
    add("Deepfakes", "099", None, "099")  # prepared but in no split
    return pd.DataFrame(rows).astype({"label": "int8"})


def scores(kind: str, labels: np.ndarray, video_codes: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """perfect: AUC 1; coin: every score 0.5 (AUC 0.5); gaussian: video effect + frame noise, fakes shifted."""
    if kind == "perfect":
        return np.where(labels == 1, 0.8, 0.2) + rng.uniform(-0.1, 0.1, len(labels))
    if kind == "coin":
        return np.full(len(labels), 0.5)
    video_effect = rng.normal(0, 0.6, video_codes.max() + 1)[video_codes]
    return 1 / (1 + np.exp(-(labels * 1.0 - 0.5 + video_effect + rng.normal(0, 0.5, len(labels)))))


def make_experiment(root: Path, shift: float = 0.0, name: str = "synthetic", test_sets=TEST_SETS) -> Path:
    """An experiment run directory as `crossfake run` writes it, with synthetic predictions.

    Methods: ``perfect``, ``coin`` (done), ``gaussian`` (done, an explaining method whose columns are not
    the VLM's — ``explanation`` beside a ``verdict``, declared in experiment.json —, no recorded
    threshold: the report derives it from val_predictions), ``broken`` (failed), ``ghost`` (done but its
    predictions are missing) and ``later`` (pending). ``shift`` moves the gaussian fakes' scores.
    """
    root.mkdir(parents=True)
    manifest = split_manifest()
    manifest.to_parquet(root / "split.parquet", index=False)
    rng = np.random.default_rng(7)
    methods = {}
    for kind in ("perfect", "coin", "gaussian"):
        d = root / "methods" / kind
        d.mkdir(parents=True)
        predictions = {}
        for test_set, manipulations in {"val": None, **test_sets}.items():
            if manipulations is None:
                rows = manifest.loc[manifest["split"] == "val"]
            else:
                rows = manifest.loc[(manifest["split"] == "test") & manifest["manipulation"].isin(manipulations)]
            rows = rows[["sample_id", "video_id", "corpus", "manipulation", "label"]].reset_index(drop=True)
            labels = rows["label"].to_numpy()
            s = scores(kind, labels, pd.factorize(rows["video_id"])[0], rng)
            if kind == "gaussian":
                s = np.clip(s + shift * labels, 0, 1)
                rows["verdict"] = np.where(s >= 0.5, "fake", "real")
                rows["explanation"] = [f"blurred jaw line in frame {i}" if i % 3 else None for i in range(len(rows))]
            rows = rows.assign(score=s, logit=np.log(np.clip(s, 1e-6, 1) / np.clip(1 - s, 1e-6, 1)))
            file = d / ("val_predictions.parquet" if manipulations is None else f"predictions_{test_set}.parquet")
            rows.to_parquet(file, index=False)
            if manipulations is not None:
                predictions[test_set] = str(file.relative_to(root))
        methods[kind] = {
            "status": "done", "error": None, "method": "linear_probe", "run_dir": f"methods/{kind}",
            "parameters": {"trainable": 513, "total": 151_277_826, "trainable_percent": 0.000339},
            "wall_time_s": {"train": 75.0, "test": 12.5},
            "threshold": None if kind == "gaussian" else 0.5, "threshold_rule": "val EER",
            "val_auc": 0.9, "predictions": predictions,
            "prediction_columns": ({"explanation": "explanation", "details": ["verdict"]} if kind == "gaussian"
                                   else {}),
        }
    methods["broken"] = {"status": "failed", "error": "RuntimeError: out of memory", "method": "vlm_qlora",
                         "run_dir": "methods/broken", "predictions": {}}
    methods["ghost"] = {"status": "done", "method": "lora", "run_dir": "methods/ghost", "threshold": 0.5,
                        "predictions": {t: f"methods/ghost/predictions_{t}.parquet" for t in test_sets}}
    methods["later"] = {"status": "pending", "method": "visual_prompt"}
    record = {
        "format": "crossfake-experiment/1", "name": name, "description": "synthetic scores, known AUCs",
        "provenance": {"crossfake_version": "0.1.0", "created_utc": "2026-01-01T00:00:00+00:00",
                       "command": ["crossfake", "run", "x.yaml"], "git": {"commit": "abc123", "dirty": False},
                       "packages": {"numpy": "2"}},
        "split": {"spec": "report1", "manifest": "split.parquet"},
        "test_sets": {t: {"split": "test", "manipulations": m} for t, m in test_sets.items()},
        "methods": methods,
    }
    (root / "experiment.json").write_text(json.dumps(record, indent=2))
    (root / "experiment.yaml").write_text(f"name: {name}\ndescription: synthetic\nmethods: [perfect, coin]\n")
    return root


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    run = make_experiment(tmp_path_factory.mktemp("reports") / "run")
    return run, build_report(run, n_boot=N_BOOT)


def value(results: pd.DataFrame, test_set, method, metric, level="frame", threshold="0.5", group="all") -> float:
    r = results
    hit = r.loc[(r["test_set"] == test_set) & (r["method"] == method) & (r["metric"] == metric)
                & (r["level"] == level) & (r["threshold"] == threshold) & (r["group"] == group), "value"]
    assert len(hit) == 1, (test_set, method, metric, level, threshold, group)
    return float(hit.iloc[0])


def test_files_and_known_numbers(built):
    run, paths = built
    assert paths.root == run / "report"
    for p in (paths.markdown, paths.html, paths.metrics_csv, paths.metrics_json, *paths.figures):
        assert p.is_file(), p
    # Per test set: one frame|video figure per evaluated method and one overlay.
    assert len(paths.figures) == len(TEST_SETS) * (3 + 1)
    assert not [p for p in run.iterdir() if p.name.startswith(".report")]  # no temporary folder left

    results = pd.read_csv(paths.metrics_csv)
    assert value(results, "nt", "perfect", "auc") == 1.0 and value(results, "nt", "perfect", "eer") == 0.0
    assert value(results, "nt", "perfect", "balanced_accuracy") == 1.0
    # Every score 0.5 is called fake at 0.5: F1 looks fine, balanced accuracy shows the coin.
    n_real, n_fake = N_REAL_TEST * FRAMES, FAKE_VIDEOS["NeuralTextures"] * FRAMES
    assert value(results, "nt", "coin", "auc") == 0.5
    assert value(results, "nt", "coin", "accuracy") == pytest.approx(n_fake / (n_real + n_fake))
    assert value(results, "nt", "coin", "f1") == pytest.approx(2 * n_fake / (2 * n_fake + n_real))
    assert value(results, "nt", "coin", "balanced_accuracy") == 0.5
    assert value(results, "nt", "coin", "real_acc") == 0.0 and value(results, "nt", "coin", "fake_acc") == 1.0

    # The gaussian method's numbers are those of the metric functions on its predictions file.
    preds = pd.read_parquet(run / "methods/gaussian/predictions_nt.parquet")
    assert value(results, "nt", "gaussian", "auc") == pytest.approx(metrics.roc_auc(preds["label"], preds["score"]))
    videos = preds.groupby("video_id").agg(score=("score", "mean"), label=("label", "first"))
    assert value(results, "nt", "gaussian", "auc", level="video_mean") == pytest.approx(
        metrics.roc_auc(videos["label"], videos["score"]))
    # No threshold in experiment.json: the EER threshold of its validation predictions is used.
    val = pd.read_parquet(run / "methods/gaussian/val_predictions.parquet")
    threshold = metrics.eer(val["label"], val["score"]).threshold
    at_val = results.loc[(results["method"] == "gaussian") & (results["threshold"] == "val")]
    assert np.allclose(at_val["threshold_value"], threshold)
    assert value(results, "nt", "gaussian", "accuracy", threshold="val") == pytest.approx(
        metrics.confusion_at(preds["label"], preds["score"], threshold)["accuracy"])
    # The mixed test set is also evaluated per manipulation; CIs are there.
    assert value(results, "mixed", "perfect", "auc", group="Face2Face") == 1.0
    assert results.loc[results["metric"] == "auc", "ci_low"].notna().all()

    md = paths.markdown.read_text()
    assert "| perfect | 1.000 [1.000, 1.000] | 0.000 |" in md
    assert "513 (0.00034%) | 75 s |" in md  # trainable params, train time
    assert "| broken | (failed) |" in md and "RuntimeError: out of memory" in md
    assert "| ghost | (missing) |" in md and "predictions file missing: expected" in md
    assert "| later | (pending) |" in md
    assert "## Data split" in md and "| Deepfakes | 0 / 0 / 0 | 0 / 0 / 0 | 0 / 0 / 0 | 1 / 5 / 1 |" in md
    assert "| total | 8 / 40 / 4 |" in md  # train: 4 real + 4 FaceSwap videos of the same 4 people
    assert "no person, identity group or video is shared between splits" in md
    assert "## Example explanations" in md and "blurred jaw line" in md
    assert "name: synthetic\ndescription: synthetic" in md  # experiment.yaml verbatim
    assert "abc123" in md and "## Provenance" in md

    record = json.loads(paths.metrics_json.read_text())
    assert record["format"] == "crossfake-report/1"
    assert record["methods"]["ghost"]["status"] == "missing" and record["methods"]["broken"]["status"] == "failed"
    assert record["methods"]["gaussian"]["threshold_origin"].startswith("EER of val_predictions")

    text = headline_text(run)
    assert "Test set nt" in text and "Test set mixed" in text and "frame AUC [CI]" in text
    perfect = next(line for line in text.splitlines() if line.startswith("perfect"))
    assert perfect.split()[1:3] == ["1.000", "[1.000,"]
    # The cross-test-set table: no test set's manipulation was trained on (FaceSwap is train/val only).
    assert "Frame AUC across test sets" in text and "nt (unseen)" in text and "mixed (unseen)" in text
    assert load_summary(run).seen == {"nt": "unseen", "mixed": "unseen"}  # kept in metrics.json


def test_test_sets_say_whether_their_manipulations_were_trained_on():
    manifest = split_manifest()
    sets = {"fs": {"split": "val", "manipulations": ["real", "FaceSwap"]}, "nt": {"split": "test"},
            "val": {"split": "val"}}
    assert dict(zip(*summarise_test_sets(manifest, sets)[["test_set", "seen"]].T.values, strict=True)) == {
        "fs": "seen", "nt": "unseen", "val": "seen"}
    manifest.loc[manifest["manipulation"] == "NeuralTextures", "split"] = "val"  # val: FaceSwap and NeuralTextures
    assert summarise_test_sets(manifest, {"val": {"split": "val"}})["seen"].tolist() == ["partly"]
    assert summarise_test_sets(manifest, {"reals": {"manipulations": ["real"]}})["seen"].tolist() == ["no fakes"]


class _Images(HTMLParser):
    """Collects every src/href and tag of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.srcs: list[str] = []
        self.links: list[str] = []
        self.tags: set[str] = set()

    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)
        attrs = dict(attrs)
        if "src" in attrs:
            self.srcs.append(attrs["src"])
        if "href" in attrs:
            self.links.append(attrs["href"])


def test_html_is_self_contained_and_its_images_load(built):
    _, paths = built
    page = _Images()
    page.feed(paths.html.read_text())
    page.close()
    assert {"html", "head", "style", "table", "img"} <= page.tags
    assert not page.tags & {"script", "link", "iframe"}
    assert all(href.startswith("#") for href in page.links)  # table of contents only
    assert len(page.srcs) == len(paths.figures)
    for src in page.srcs:
        prefix = "data:image/png;base64,"
        assert src.startswith(prefix)
        data = base64.b64decode(src[len(prefix):], validate=True)
        assert data.startswith(PNG_SIGNATURE)
        image = matplotlib.image.imread(io.BytesIO(data), format="png")
        assert image.ndim == 3 and min(image.shape[:2]) > 100
        with Image.open(io.BytesIO(data)) as im:
            im.verify()


def test_html_report_renders_in_a_browser(built, browser):
    """The page opens in headless chromium and every figure decodes to a real image."""
    _, paths = built
    browser.get(paths.html.resolve().as_uri())
    images = browser.execute_script(
        "return Array.from(document.images).map(i => [i.complete, i.naturalWidth, i.naturalHeight])"
    )
    assert len(images) == len(paths.figures) > 0
    assert all(done and w > 100 and h > 100 for done, w, h in images), images
    assert browser.execute_script("return document.querySelectorAll('table').length") > 0
    assert "AUC" in browser.find_element("tag name", "body").text


def test_report_command_rebuilds_identically_from_predictions(built, tmp_path, capsys):
    run, paths = built
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    before = {p.relative_to(paths.root): p.read_bytes() for p in paths.root.rglob("*") if p.is_file()}
    shutil.rmtree(copy / "report")
    shutil.rmtree(copy / "methods/perfect/best", ignore_errors=True)  # no model: only predictions are read
    # --strict: the report is written, and the exit status says some methods have no numbers.
    assert main(["report", str(copy), "--bootstrap", str(N_BOOT), "--strict"]) == 1
    out = capsys.readouterr().out
    assert "Test set nt" in out and "incomplete: broken (failed), ghost (missing), later (pending)" in out
    after = {p.relative_to(copy / "report"): p.read_bytes() for p in (copy / "report").rglob("*") if p.is_file()}
    assert after.keys() == before.keys()
    for name in after:
        if name.name == "metrics.json":
            a, b = json.loads(after[name]), json.loads(before[name])
            a.pop("report_provenance"), b.pop("report_provenance")
            assert a == b
        else:
            assert after[name] == before[name], name


def test_report_reads_files_written_with_the_old_column_names(built, tmp_path):
    """Predictions and a split manifest from before the rename (``dataset``, ``method``) give the same
    numbers and tables: they are read as ``corpus`` and ``manipulation``."""
    run, paths = built
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    shutil.rmtree(copy / "report")
    old = {"corpus": "dataset", "manipulation": "method"}
    for path in [*copy.glob("methods/*/*.parquet"), copy / "split.parquet"]:
        pd.read_parquet(path).rename(columns=old).to_parquet(path, index=False)
    assert "method" in pd.read_parquet(copy / "methods/gaussian/predictions_nt.parquet").columns
    preds = read_predictions(copy / "methods/gaussian/predictions_nt.parquet")
    assert list(preds.columns[:5]) == ["sample_id", "video_id", "corpus", "manipulation", "label"]
    rebuilt = build_report(copy, n_boot=N_BOOT)
    pd.testing.assert_frame_equal(pd.read_csv(rebuilt.metrics_csv), pd.read_csv(paths.metrics_csv))
    md = rebuilt.markdown.read_text()
    assert "| Deepfakes | 0 / 0 / 0 | 0 / 0 / 0 | 0 / 0 / 0 | 1 / 5 / 1 |" in md

    def without_inputs(text: str) -> list[str]:  # the list of files read differs: their checksums
        return [line for line in text.splitlines() if ".parquet |" not in line]

    assert without_inputs(md) == without_inputs(paths.markdown.read_text())


def test_stale_report_is_rebuilt(tmp_path):
    run = make_experiment(tmp_path / "run", test_sets={"nt": TEST_SETS["nt"]})
    first = load_summary(run, n_boot=0)  # builds it
    assert (run / "report/metrics.json").is_file()
    auc = first.results.query("test_set == 'nt' and method == 'coin' and metric == 'auc'")["value"].iloc[0]
    path = run / "methods/coin/predictions_nt.parquet"
    preds = pd.read_parquet(path)
    preds.assign(score=preds["label"] * 0.5 + 0.25).to_parquet(path, index=False)  # now perfect
    with pytest.raises(CrossfakeError, match="no current report"):
        load_summary(run, rebuild="never")
    second = load_summary(run, n_boot=0)
    auc2 = second.results.query("test_set == 'nt' and method == 'coin' and metric == 'auc'")["value"].iloc[0]
    assert (auc, auc2) == (0.5, 1.0)


def test_compare_two_runs(built, tmp_path, capsys):
    run_a, _ = built
    run_b = make_experiment(tmp_path / "better", shift=0.3, name="better", test_sets={"nt": TEST_SETS["nt"]})
    summaries = load_runs([run_a, run_b], n_boot=N_BOOT)
    assert list(summaries) == ["synthetic", "better"]
    text = compare_text(summaries, ["auc", "balanced_accuracy"])
    assert "synthetic: frame AUC" in text and "better: BalAcc" in text and "(failed)" in text

    out = tmp_path / "cmp"
    assert main(["compare", str(run_a), str(run_b), "--out", str(out), "--metric", "auc",
                 "--metric", "video_auc"]) == 0
    printed = capsys.readouterr().out
    assert "Test set mixed" in printed and str(out / "compare.html") in printed
    assert "(absent)" in printed  # the second run has no test set "mixed"
    table = pd.read_csv(out / "compare.csv")
    pick = table.set_index(["run", "test_set", "method", "metric"])["value"]
    assert pick[("synthetic", "nt", "perfect", "auc")] == 1.0
    assert pick[("better", "nt", "gaussian", "auc")] > pick[("synthetic", "nt", "gaussian", "auc")]
    page = _Images()
    page.feed((out / "compare.html").read_text())
    assert "table" in page.tags and not page.tags & {"script", "link"}
    # One heatmap of the first metric per test set, embedded in the page.
    assert sorted(p.name for p in (out / "figures").iterdir()) == ["auc_mixed.png", "auc_nt.png"]
    assert len(page.srcs) == 2 and all(src.startswith("data:image/png;base64,") for src in page.srcs)
    md = (out / "compare.md").read_text()
    assert "| perfect | 1.000 | 1.000 | 1.000 | 1.000 |" in md and "(figures/auc_nt.png)" in md


def test_bad_run_directories(tmp_path, capsys):
    with pytest.raises(CrossfakeError, match="no experiment run directory at"):
        build_report(tmp_path / "nowhere")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(CrossfakeError, match=r"expected .*experiment\.json, written by `crossfake run`"):
        build_report(empty)
    (empty / "experiment.json").write_text("{not json")
    with pytest.raises(CrossfakeError, match="is not valid JSON"):
        build_report(empty)
    (empty / "experiment.json").write_text(json.dumps({"format": "crossfake-run/1"}))
    with pytest.raises(CrossfakeError, match="expected format 'crossfake-experiment/1', found 'crossfake-run/1'"):
        build_report(empty)
    (empty / "experiment.json").write_text(json.dumps({"format": "crossfake-experiment/1", "name": "x",
                                                       "test_sets": {"t": {}}, "methods": []}))
    with pytest.raises(CrossfakeError, match="methods must be a dict, not list"):
        build_report(empty)
    (empty / "experiment.json").write_text(json.dumps({
        "format": "crossfake-experiment/1", "name": "x", "test_sets": {"t": {"split": "test"}},
        "methods": {"a": {"status": "done", "predictions": {"t": "methods/a/predictions_t.parquet"}}}}))
    with pytest.raises(CrossfakeError, match=r"no method has usable test predictions.*predictions_t\.parquet"):
        build_report(empty)
    assert not (empty / "report").exists()
    # At the end of an experiment whose every method failed, the report still lists them.
    paths = build_report(empty, allow_empty=True)
    assert "| a | missing | t: predictions file missing: expected methods/a/predictions_t.parquet |" in (
        paths.markdown.read_text())

    shutil.rmtree(empty / "report")
    assert main(["report", str(empty)]) == 2
    assert "crossfake report: error: " in capsys.readouterr().err
    assert main(["compare", str(empty), "--bootstrap", "0"]) == 2


def test_plot_heatmap(tmp_path):
    grid = pd.DataFrame([{"rank": r, "alpha": a, "auc": 0.8 + r / 1000 + a / 10_000}
                         for r in (8, 16, 32) for a in (16, 32, 64) if (r, a) != (32, 16)])
    path = plot_heatmap(grid, "rank", "alpha", "auc", tmp_path / "h.png", title="LoRA ablation")
    assert path.read_bytes().startswith(PNG_SIGNATURE)
    assert matplotlib.image.imread(path).ndim == 3
    with pytest.raises(CrossfakeError, match=r"several rows for \(rank, alpha\)"):
        plot_heatmap(pd.concat([grid, grid.head(1)]), "rank", "alpha", "auc", tmp_path / "d.png")
    with pytest.raises(CrossfakeError, match=r"column\(s\) \['dropout'\] not in the table"):
        plot_heatmap(grid, "rank", "dropout", "auc", tmp_path / "d.png")


def test_render_html_escapes_cells():
    table = render(["method", "AUC"], [["<b>x</b> & y", "0.5"]], "html")
    assert "&lt;b&gt;x&lt;/b&gt; &amp; y" in table and '<td class="num">0.5</td>' in table


def test_training_figures_of_pseudo_fakes_are_copied_into_the_report(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from crossfake.reports.build import copy_training_figures
    from crossfake.runs.experiment import MethodEntry
    from crossfake.runs.record import RunRecord

    def run_json(pseudo_fakes: dict | None) -> str:
        return json.dumps(RunRecord(method="lora", parameters={}, steps=1, best_step=1, best_val_auc=0.5,
                                    threshold=0.5, wall_time_s=1.0, pseudo_fakes=pseudo_fakes).to_json())

    runs = {}
    for name, text in (("lora_sbi", run_json({"kind": "sbi", "examples": "sbi_examples.png"})),
                       ("lora", run_json(None)), ("unfinished", None), ("broken", '{"format": 1')):
        run_dir = tmp_path / "methods" / name
        run_dir.mkdir(parents=True)
        if text is not None:
            (run_dir / "run.json").write_text(text)
        runs[name] = MethodEntry(name, run_dir=run_dir)
    (runs["broken"].run_dir / "sbi_examples.png").write_bytes(b"\x89PNG figure")  # no readable record: skipped
    (runs["lora_sbi"].run_dir / "sbi_examples.png").write_bytes(b"\x89PNG figure")
    data = SimpleNamespace(experiment=SimpleNamespace(methods=runs))
    copied = copy_training_figures(data, tmp_path / "report")
    assert copied == {"lora_sbi": "figures/pseudo_fakes__lora_sbi.png"}
    assert (tmp_path / "report" / copied["lora_sbi"]).read_bytes() == b"\x89PNG figure"


def test_examples_follow_the_declared_prediction_columns(tmp_path):
    """Reports show a method's explanation from the columns it declares, whatever they are called; an entry
    that declares none shows none even with such a column; an entry written before methods declared
    their columns (no key) reads the VLM's columns of crossfake 0.1."""
    run = make_experiment(tmp_path / "run")
    record = json.loads((run / "experiment.json").read_text())
    gaussian = record["methods"]["gaussian"]

    def examples(declared) -> dict:
        entry = dict(gaussian)
        if declared is None:
            entry.pop("prediction_columns")
        else:
            entry["prediction_columns"] = declared
        (run / "experiment.json").write_text(json.dumps({**record, "methods": {"gaussian": entry}}))
        return collect(load_experiment(run), n_boot=0).examples

    shown = examples({"explanation": "explanation", "details": ["verdict"]})
    assert shown and all(list(e.rows.columns) == ["sample_id", "label", "score", "verdict", "explanation"]
                         for e in shown.values())
    assert examples({}) == {}  # declares no explanation: the column is just data
    assert examples({"explanation": "verdict"}) != {}  # any column can be the explanation
    assert examples(None) == {}  # 0.1 entries: the VLM's `reasoning`, which these predictions lack
    for path in (run / "methods" / "gaussian").glob("predictions_*.parquet"):
        pd.read_parquet(path).rename(columns={"explanation": "reasoning"}).to_parquet(path, index=False)
    legacy = examples(None)
    assert legacy and all("explanation" in e.rows.columns for e in legacy.values())
