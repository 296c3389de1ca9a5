"""Metrics against scikit-learn and brute force; aggregation, subgroups, bootstrap, input checking, tables."""

from __future__ import annotations

import dataclasses
import json
import math
import warnings

import numpy as np
import pandas as pd
import pytest
import sklearn.metrics as skm

from crossfake.evaluation import aggregate, metrics, tables
from crossfake.evaluation.aggregate import (
    Evaluation,
    bootstrap_ci,
    evaluate_predictions,
    parse_labels,
    stratified_counts,
    to_video_level,
)
from crossfake.evaluation.metrics import UndefinedMetricWarning
from crossfake.evaluation.plots import plot_roc
from crossfake.utils.errors import CrossfakeError

SEEDS = (0, 1, 2, 3)


def random_data(seed: int, n: int = 600, fake_share: float = 1 / 11, decimals: int = 2):
    """Imbalanced (about 1 fake : 10 real) labels and scores rounded so many scores tie across classes."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < fake_share).astype(int)
    s = np.round(rng.normal(0.4 + 0.25 * y, 0.2), decimals)
    return y, s


def video_table(seed: int = 0, n_real: int = 30, n_fake_per_manipulation: int = 20, frames: int = 6):
    """Frame predictions of real videos and of two manipulations, scores correlated within a video."""
    rng = np.random.default_rng(seed)
    rows = []
    for manipulation, n_videos, shift in (("real", n_real, 0.0), ("FaceSwap", n_fake_per_manipulation, 0.35),
                                          ("NeuralTextures", n_fake_per_manipulation, 0.15)):
        for v in range(n_videos):
            base = rng.normal(0.35 + shift, 0.15)
            for f in range(frames):
                rows.append({"video_id": f"ffpp/{manipulation}/{v:03d}", "manipulation": manipulation,
                             "frame_idx": f, "label": int(manipulation != "real"),
                             "score": float(base + rng.normal(0, 0.08))})
    return pd.DataFrame(rows)


# --- pure metrics vs scikit-learn ---------------------------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
def test_auc_ap_and_roc_curve_equal_sklearn(seed):
    y, s = random_data(seed)
    assert len(np.unique(s)) < len(s) / 2  # plenty of ties
    assert metrics.roc_auc(y, s) == pytest.approx(skm.roc_auc_score(y, s), abs=1e-12)
    assert metrics.average_precision(y, s) == pytest.approx(skm.average_precision_score(y, s), abs=1e-12)
    fpr, tpr, thr = metrics.roc_curve(y, s)
    ref_fpr, ref_tpr, ref_thr = skm.roc_curve(y, s, drop_intermediate=False)
    np.testing.assert_allclose(fpr, ref_fpr, rtol=0, atol=1e-12)
    np.testing.assert_allclose(tpr, ref_tpr, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(thr, ref_thr)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("threshold", [0.1, 0.4, 0.5, 0.65, 0.9, 5.0])
def test_threshold_metrics_equal_sklearn(seed, threshold):
    y, s = random_data(seed)
    pred = (s >= threshold).astype(int)
    got = metrics.confusion_at(y, s, threshold)
    assert got["accuracy"] == pytest.approx(skm.accuracy_score(y, pred), abs=1e-12)
    assert got["precision"] == pytest.approx(skm.precision_score(y, pred, zero_division=0), abs=1e-12)
    assert got["recall"] == pytest.approx(skm.recall_score(y, pred, zero_division=0), abs=1e-12)
    assert got["f1"] == pytest.approx(skm.f1_score(y, pred, zero_division=0), abs=1e-12)
    assert got["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(y, pred), abs=1e-12)
    assert got["real_acc"] == pytest.approx(skm.recall_score(y, pred, pos_label=0), abs=1e-12)
    assert got["fake_acc"] == pytest.approx(got["recall"], abs=1e-12)
    tn, fp, fn, tp = skm.confusion_matrix(y, pred, labels=[0, 1]).ravel()
    assert (got["tn"], got["fp"], got["fn"], got["tp"]) == (tn, fp, fn, tp)


def test_no_positive_prediction_gives_zero_precision_and_f1():
    got = metrics.confusion_at([0, 1, 1], [0.1, 0.2, 0.3], threshold=0.9)
    assert got["precision"] == 0 and got["f1"] == 0 and got["recall"] == 0
    assert got["real_acc"] == 1 and got["balanced_accuracy"] == 0.5


def test_ties_count_half():
    y, s = np.array([0, 0, 1, 1]), np.array([0.2, 0.5, 0.5, 0.9])
    # (fake, real) pairs: (0.5, 0.2) 1, (0.5, 0.5) tied 1/2, (0.9, 0.2) 1, (0.9, 0.5) 1 -> 3.5 / 4
    assert metrics.roc_auc(y, s) == 0.875


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("target", [0.01, 0.05, 0.1, 0.3])
def test_tpr_at_fpr_is_best_achievable(seed, target):
    y, s = random_data(seed)
    fpr, tpr, _ = skm.roc_curve(y, s, drop_intermediate=False)
    assert metrics.tpr_at_fpr(y, s, target) == pytest.approx(tpr[fpr <= target].max(), abs=1e-12)


# --- EER ----------------------------------------------------------------------------------------------------


def brute_force_eer(y, s):
    """Scan every threshold (predict fake iff s >= t); return (fpr, fnr, threshold) minimising |FPR - FNR|."""
    best = None
    for t in np.r_[np.inf, np.unique(s)[::-1]]:
        pred = s >= t
        fpr = (pred & (y == 0)).sum() / (y == 0).sum()
        fnr = (~pred & (y == 1)).sum() / (y == 1).sum()
        if best is None or abs(fpr - fnr) < abs(best[0] - best[1]):
            best = (fpr, fnr, t)
    return best


@pytest.mark.parametrize("seed", range(8))
def test_eer_agrees_with_brute_force(seed):
    y, s = random_data(seed, n=300, fake_share=0.3 if seed % 2 else 1 / 11, decimals=1 + seed % 3)
    got = metrics.eer(y, s)
    fpr_b, fnr_b, _ = brute_force_eer(y, s)
    # The brute-force point brackets the crossing: the EER lies between its FPR and FNR, i.e. within the
    # gap between the ROC points on either side of FPR = FNR.
    assert min(fpr_b, fnr_b) - 1e-12 <= got.eer <= max(fpr_b, fnr_b) + 1e-12
    # The threshold returned is a real one whose |FPR - FNR| is as small as any threshold's.
    pred = s >= got.threshold
    fpr = (pred & (y == 0)).sum() / (y == 0).sum()
    fnr = (~pred & (y == 1)).sum() / (y == 1).sum()
    assert abs(fpr - fnr) == pytest.approx(abs(fpr_b - fnr_b), abs=1e-12)


def test_eer_hand_made_cases():
    # A ROC point on FPR = FNR: exact.
    assert metrics.eer([0, 0, 1, 1], [0.1, 0.6, 0.4, 0.9]) == (0.5, 0.6)
    # Crossing half-way along a segment: FPR - FNR is -0.5 at threshold 0.9 and +0.5 at 0.5.
    assert metrics.eer([0, 1, 1], [0.5, 0.4, 0.9]) == (0.5, 0.5)
    # Perfect separation: 0 at the lowest fake score; inverted: 1; all tied: 0.5.
    assert metrics.eer([0, 0, 1, 1], [0.1, 0.2, 0.7, 0.8]) == (0.0, 0.7)
    assert metrics.eer([0, 0, 1, 1], [0.7, 0.8, 0.1, 0.2]) == (1.0, 0.7)
    assert metrics.eer([0, 1, 0, 1], [0.3] * 4) == (0.5, 0.3)


@pytest.mark.parametrize("seed", SEEDS)
def test_eer_point_lies_on_the_roc_polyline(seed):
    y, s = random_data(seed, n=200, decimals=1)
    fpr, tpr, _ = metrics.roc_curve(y, s)
    rate = metrics.eer(y, s).eer
    target = np.array([rate, 1 - rate])
    on_segment = False
    for p0, p1 in zip(np.c_[fpr, tpr][:-1], np.c_[fpr, tpr][1:], strict=True):
        step = p1 - p0
        t = np.dot(target - p0, step) / np.dot(step, step) if step.any() else 0.0
        on_segment |= bool(0 <= t <= 1 and np.allclose(p0 + t * step, target, atol=1e-12))
    assert on_segment


# --- degenerate input ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("y", [[1, 1, 1], [0, 0, 0]])
def test_one_class_gives_nan_with_warning(y):
    s = [0.2, 0.5, 0.9]
    for fn in (metrics.roc_auc, metrics.average_precision, lambda a, b: metrics.eer(a, b).eer,
               lambda a, b: metrics.tpr_at_fpr(a, b, 0.1)):
        with pytest.warns(UndefinedMetricWarning, match="only"):
            assert math.isnan(fn(y, s))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # threshold metrics stay defined and do not warn
        got = metrics.confusion_at(y, s, 0.5)
    assert got["accuracy"] == pytest.approx(2 / 3 if y[0] == 1 else 1 / 3)
    assert math.isnan(got["real_acc" if y[0] == 1 else "fake_acc"])


def test_bad_inputs_raise():
    with pytest.raises(CrossfakeError, match="0 .real. and 1 .fake."):
        metrics.roc_auc([0, 2], [0.1, 0.2])
    with pytest.raises(CrossfakeError, match="NaN or infinite"):
        metrics.roc_auc([0, 1], [0.1, np.nan])
    with pytest.raises(CrossfakeError, match="equal length"):
        metrics.roc_auc([0, 1, 1], [0.1, 0.2])


def test_inputs_are_not_modified():
    y, s = random_data(0)
    y0, s0 = y.copy(), s.copy()
    metrics.roc_curve(y, s), metrics.roc_auc(y, s), metrics.eer(y, s), metrics.average_precision(y, s)
    metrics.confusion_at(y, s, 0.5), metrics.tpr_at_fpr(y, s, 0.05)
    np.testing.assert_array_equal(y, y0)
    np.testing.assert_array_equal(s, s0)


def test_weighted_counts_equal_repeated_samples():
    # The bootstrap's semantics: weight k on a sample == the sample repeated k times.
    y, s = random_data(1, n=120)
    w = np.random.default_rng(0).integers(0, 4, size=(3, len(y)))
    batch = metrics.metrics_from_counts(*metrics.score_counts(y, s, w), 0.5)
    for b in range(3):
        rep = np.repeat(np.arange(len(y)), w[b])
        single = metrics.metrics_from_counts(*metrics.score_counts(y[rep], s[rep]), 0.5)
        for name in metrics.metric_names():
            assert batch[name][b] == pytest.approx(float(single[name]), abs=1e-12), name


# --- labels and table checks --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([0, 1, 1], [0, 1, 1]),
        ([0.0, 1.0], [0, 1]),
        ([False, True], [0, 1]),
        (pd.array([True, False], dtype="boolean"), [1, 0]),
        (["real", "fake"], [0, 1]),
        ([" REAL", "Fake "], [0, 1]),
        (["0", "1"], [0, 1]),
        (["true", "FALSE"], [1, 0]),
        (["pristine", "manipulated"], [0, 1]),
        (pd.Series(["real", "fake"], dtype="string"), [0, 1]),
    ],
)
def test_parse_labels_accepts(values, expected):
    got = parse_labels(values)
    assert got.dtype == np.int8
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize(
    ("values", "shown"),
    [([0, 1, 2], "2"), (["real", "maybe", "nope"], "'maybe', 'nope'"), ([0, None, 1], "1 missing"),
     ([0.5, 1], "0.5"), (["yes"], "'yes'")],
)
def test_parse_labels_rejects(values, shown):
    with pytest.raises(CrossfakeError, match="unexpected label") as e:
        parse_labels(values, "label")
    assert shown in str(e.value)


def test_missing_column_names_it_and_lists_available():
    df = video_table()
    with pytest.raises(CrossfakeError) as e:
        evaluate_predictions(df, score_col="prob", n_boot=0)
    assert "'prob'" in str(e.value) and "video_id" in str(e.value) and "score" in str(e.value)


def test_nan_scores_error_or_drop():
    df = video_table()
    df.loc[[3, 40, 41], "score"] = np.nan
    with pytest.raises(CrossfakeError, match=r"3 row\(s\).*rows 3 \(video ffpp/real/000\), 40") as e:
        evaluate_predictions(df, n_boot=0)
    assert "drop" in str(e.value)
    ev = evaluate_predictions(df, n_boot=0, nan="drop")
    assert ev.info["n_dropped_nan"] == 3
    ref = evaluate_predictions(df.dropna(subset=["score"]), n_boot=0)
    pd.testing.assert_frame_equal(ev.results, ref.results)


def test_single_class_error_or_warning():
    df = video_table()
    fakes = df[df["label"] == 1]
    with pytest.raises(CrossfakeError, match="fake samples only"):
        evaluate_predictions(fakes, n_boot=0, require_both_classes=True)
    with pytest.warns(UndefinedMetricWarning, match="only fake"):
        ev = evaluate_predictions(fakes, n_boot=0)
    assert math.isnan(ev.value("frame", "all", "auc"))
    assert ev.value("frame", "all", "fake_acc") == ev.value("frame", "all", "accuracy")


# --- video level --------------------------------------------------------------------------------------------

HAND = pd.DataFrame({
    "video_id": ["a", "a", "a", "b", "b", "b", "b", "c", "c"],
    "label": ["fake"] * 3 + ["real"] * 4 + ["fake"] * 2,
    "score": [0.9, 0.8, 0.2, 0.1, 0.6, 0.7, 0.2, 0.4, 0.6],
})


def test_to_video_level_mean_and_vote():
    mean = to_video_level(HAND, how="mean")
    assert mean["video_id"].tolist() == ["a", "b", "c"]
    assert mean["label"].tolist() == [1, 0, 1]
    assert mean["n_frames"].tolist() == [3, 4, 2]
    np.testing.assert_allclose(mean["score"], [1.9 / 3, 0.4, 0.5])
    vote = to_video_level(HAND, how="vote", threshold=0.5)
    np.testing.assert_allclose(vote["score"], [2 / 3, 0.5, 0.5])
    np.testing.assert_allclose(to_video_level(HAND, how="vote", threshold=0.65)["score"], [2 / 3, 0.25, 0.0])


def test_video_level_verdicts():
    ev = evaluate_predictions(HAND, n_boot=0)
    # mean at 0.5 (>=): a 0.63 fake, b 0.4 real, c 0.5 fake -> all right.
    assert ev.value("video_mean", "all", "accuracy") == 1.0
    # vote: a 2/3 fake; b and c exactly half -> real (strict majority) -> c is missed.
    assert ev.value("video_vote", "all", "accuracy") == pytest.approx(2 / 3)
    assert ev.value("video_vote", "all", "real_acc") == 1.0
    assert ev.value("video_vote", "all", "fake_acc") == 0.5
    assert ev.value("video_mean", "all", "auc") == 1.0


def test_video_with_mixed_labels_is_an_error():
    bad = HAND.assign(label=["fake", "real", "fake"] + ["real"] * 4 + ["fake"] * 2)
    with pytest.raises(CrossfakeError, match="'a'"):
        to_video_level(bad)
    with pytest.raises(CrossfakeError, match="'a'"):
        evaluate_predictions(bad, n_boot=0)


# --- evaluate_predictions -----------------------------------------------------------------------------------


def test_overall_and_subgroups_match_pure_functions():
    df = video_table()
    ev = evaluate_predictions(df, group_col="manipulation", n_boot=0)
    auc = metrics.roc_auc(df["label"], df["score"])
    assert ev.value("frame", "all", "auc") == pytest.approx(auc, abs=1e-12)
    videos = to_video_level(df)
    assert ev.value("video_mean", "all", "auc") == pytest.approx(
        metrics.roc_auc(videos["label"], videos["score"]), abs=1e-12
    )
    # A manipulation is scored against every real row.
    sub = df[df["manipulation"].isin(["real", "FaceSwap"])]
    assert ev.value("frame", "FaceSwap", "auc") == pytest.approx(metrics.roc_auc(sub["label"], sub["score"]))
    fs = ev.results.query("level == 'frame' and group == 'FaceSwap'").iloc[0]
    assert (fs["n_real"], fs["n_fake"]) == (180, 120)
    # The real group: accuracy only.
    real = ev.results.query("group == 'real'")
    assert set(real["metric"]) == {"accuracy", "real_acc"}
    assert set(real["level"]) == {"frame", "video_mean", "video_vote"}
    assert ev.value("frame", "real", "accuracy") == ev.value("frame", "all", "real_acc")
    groups = ("all", "FaceSwap", "NeuralTextures")
    assert set(ev.curves) == {(lv, g) for lv in aggregate.LEVELS for g in groups}


def test_frame_only_without_video_column():
    df = video_table().drop(columns="video_id")
    ev = evaluate_predictions(df, video_col=None, levels=("frame",), n_boot=50)
    assert set(ev.results["level"]) == {"frame"}
    with pytest.raises(CrossfakeError, match="video column"):
        evaluate_predictions(df, video_col=None, n_boot=0)


# --- bootstrap ----------------------------------------------------------------------------------------------


def test_stratified_counts_keep_class_sizes():
    labels = np.array([0] * 5 + [1] * 3, dtype=np.int8)
    counts = stratified_counts(labels, 200, np.random.default_rng(0))
    assert counts.shape == (200, 8)
    assert (counts[:, :5].sum(axis=1) == 5).all() and (counts[:, 5:].sum(axis=1) == 3).all()


def test_bootstrap_contains_point_and_is_deterministic():
    df = video_table()
    ev = evaluate_predictions(df, group_col="manipulation", n_boot=200, seed=7)
    r = ev.results.dropna(subset=["ci_low"])
    assert len(r) > 0.9 * len(ev.results)
    assert ((r["ci_low"] <= r["value"] + 1e-12) & (r["value"] <= r["ci_high"] + 1e-12)).all()
    again = evaluate_predictions(df, group_col="manipulation", n_boot=200, seed=7)
    pd.testing.assert_frame_equal(ev.results, again.results)
    other = evaluate_predictions(df, group_col="manipulation", n_boot=200, seed=8)
    assert not np.allclose(ev.results["ci_low"].fillna(0), other.results["ci_low"].fillna(0))


def test_frame_bootstrap_resamples_whole_videos():
    # Every frame of a video has the video's score: frame level is video level with each video counted 6
    # times. A cluster bootstrap resamples the same videos at both levels, so the intervals coincide; a
    # bootstrap of single frames would pretend 6x more data and give a much narrower interval.
    df = video_table(frames=6)
    df["score"] = df.groupby("video_id")["score"].transform("first")
    ev = evaluate_predictions(df, n_boot=400, seed=3)
    frame = ev.results.query("level == 'frame'").set_index("metric")
    video = ev.results.query("level == 'video_mean'").set_index("metric")
    for metric in ("auc", "eer", "ap", "accuracy", "f1"):
        assert frame.loc[metric, "ci_low"] == pytest.approx(video.loc[metric, "ci_low"], abs=1e-12)
        assert frame.loc[metric, "ci_high"] == pytest.approx(video.loc[metric, "ci_high"], abs=1e-12)
    iid = bootstrap_ci(df["label"].to_numpy(), df["score"].to_numpy(), None, n_boot=400, seed=3)
    width = frame.loc["auc", "ci_high"] - frame.loc["auc", "ci_low"]
    assert iid["auc"][1] - iid["auc"][0] < 0.6 * width


def test_bootstrap_1000_resamples_is_fast():
    import time

    df = video_table(n_real=50, n_fake_per_manipulation=100, frames=10)  # 2500 frames, 250 videos
    start = time.perf_counter()
    evaluate_predictions(df, group_col="manipulation", n_boot=1000)
    assert time.perf_counter() - start < 10


# --- serialisation, tables, plots ---------------------------------------------------------------------------


def test_to_dict_is_strict_json_and_round_trips():
    ev = evaluate_predictions(video_table(), group_col="manipulation", n_boot=20)
    text = json.dumps(ev.to_dict(), allow_nan=False)
    back = Evaluation.from_dict(json.loads(text))
    pd.testing.assert_frame_equal(back.results, ev.results, check_dtype=False)
    curve, orig = back.curves[("frame", "FaceSwap")], ev.curves[("frame", "FaceSwap")]
    np.testing.assert_array_equal(curve.thresholds, orig.thresholds)
    assert curve.auc == orig.auc


def test_plot_roc_overlays_given_curves(tmp_path):
    import matplotlib.image

    runs = {name: evaluate_predictions(video_table(seed), n_boot=0) for name, seed in (("A", 0), ("B", 1))}
    panels = {
        title: [dataclasses.replace(ev.curves[(level, "all")], label=name) for name, ev in runs.items()]
        for title, level in (("Frame level", "frame"), ("Video level", "video_mean"))
    }
    path = plot_roc(panels, tmp_path / "sub" / "models.png", title="two models")
    image = matplotlib.image.imread(path)
    assert image.shape[1] > 1.5 * image.shape[0]  # two panels side by side
    assert not list((tmp_path / "sub").glob(".*"))  # no temporary file left behind


def test_format_results_text_and_markdown():
    ev = evaluate_predictions(video_table(), group_col="manipulation", n_boot=100)
    text = tables.format_results(ev.results)
    assert "Frame level" in text and "Video level (score = mean" in text and "majority vote" in text
    header = next(line for line in text.splitlines() if line.startswith("group"))
    for col in ("AUC [CI]", "EER (thr)", "ACC", "BalAcc", "F1", "AP", "real-acc", "fake-acc", "n real/fake"):
        assert col in header
    auc = ev.value("frame", "all", "auc")
    assert f"{auc:.3f} [" in text
    real_line = next(line for line in text.splitlines() if line.startswith("real "))
    assert real_line.split()[1] == "-"  # no AUC for the real-only group
    lines = text.splitlines()
    block = lines[lines.index("Frame level") + 2 : lines.index("Frame level") + 6]
    assert len({len(line) for line in block}) == 1  # fixed width
    md = tables.format_results(ev.results, "markdown")
    assert "### Frame level" in md and "| all |" in md and "---:" in md


def test_render_generic():
    out = tables.render(["model", "AUC"], [["a", "0.9"], ["longer", "0.85"]])
    assert out.splitlines() == ["model    AUC", "------  ----", "a        0.9", "longer  0.85"]
