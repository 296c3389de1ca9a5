"""Zero-shot VLM detection on the tiny random Qwen2.5-VL: scores, batching, train/evaluate, resume."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from PIL import Image
from test_training import make_tiny_split

from crossfake.cli.main import main
from crossfake.data.manifest import SPLIT_COLUMN, read_manifest
from crossfake.methods import create_detector
from crossfake.runs.directory import load_run
from crossfake.scoring.predict import predict_manifest
from crossfake.utils.errors import CrossfakeError
from crossfake.utils.logging import LOGGER_NAME
from crossfake.vlm.backends import create_backend, list_backends
from crossfake.vlm.prompts import load_prompt
from crossfake.vlm.scoring import encode, verdict_logits

DETAIL_COLUMNS = {"verdict", "confidence", "artifacts", "reasoning", "parsed", "parse_error", "raw_answer"}


@pytest.fixture
def restore_log_handlers():
    """The CLI adds a stderr handler bound to pytest's capture; later tests must not log into it."""
    logger = logging.getLogger(LOGGER_NAME)
    handlers = list(logger.handlers)
    yield
    logger.handlers[:] = handlers


@pytest.fixture(scope="module")
def detector():
    return create_detector("vlm_zero_shot", backbone="tiny", max_new_tokens=6)


def _images() -> list[Image.Image]:
    # Different sizes give different numbers of image tokens, so a batch needs (left) padding.
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)) for h, w in ((28, 28), (56, 56), (64, 40))]


def test_prompts_load_and_record_their_version() -> None:
    forensic, classify = load_prompt("forensic_xml_v1"), load_prompt("classify_v1")
    assert forensic.id == "forensic_xml_v1" and forensic.answer_prefix == "<answer><verdict>"
    assert "world-class digital forensics expert" in forensic.system
    assert all(f"{i}. " in forensic.instruction for i in range(1, 11))
    assert classify.instruction.startswith("Please classify the following image as real or fake")
    assert classify.answer_prefix == "The class of this image is " and classify.system is None


@pytest.mark.parametrize(("text", "message"), [
    ("name: x\nversion: 1\ninstruction: [unclosed\n", "is not valid YAML"),
    ("- a list\n", "expected a mapping with the template's fields"),
    ("name: x\nversion: 1\n", "is invalid: instruction: Field required"),
    ("name: x\nversion: 1\ninstruction: hi\nanswer_prefx: <a>\n", "answer_prefx: unknown key"),
])
def test_bad_prompt_templates_name_the_file_and_the_field(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text(text)
    with pytest.raises(CrossfakeError, match=message) as info:
        load_prompt(path)
    assert "mine.yaml" in str(info.value)
    with pytest.raises(CrossfakeError, match=r"no prompt template at nosuch \(shipped: classify_v1, "):
        load_prompt("nosuch")


def test_one_finite_score_and_parsed_answer_per_image(detector) -> None:
    logits, details = detector.predict_details(_images())
    assert logits.shape == (3,) and torch.isfinite(logits).all()
    assert set(details) == DETAIL_COLUMNS and all(len(v) == 3 for v in details.values())
    assert all(a.startswith("<answer><verdict>") for a in details["raw_answer"])
    assert detector.parameter_counts()[0] == 0


def test_verdict_logit_equals_a_manual_computation(detector) -> None:
    bundle, prompt = detector.backend.bundle, detector.prompt
    image = _images()[1]
    chat = bundle.processor.apply_chat_template(prompt.messages(), tokenize=False, add_generation_prompt=True)
    batch = bundle.processor(text=[chat + "<answer><verdict>"], images=[image], return_tensors="pt")
    with torch.no_grad():
        full = bundle.model(**batch).logits[0, -1].float()  # every position's logits; take the last
    tok = bundle.processor.tokenizer
    fake = [tok.convert_tokens_to_ids(t) for t in ("fake", "Ġfake")]
    real = [tok.convert_tokens_to_ids(t) for t in ("real", "Ġreal")]
    logp = full.log_softmax(-1)
    expected = torch.logsumexp(logp[fake], 0) - torch.logsumexp(logp[real], 0)
    got = verdict_logits(bundle.model, bundle.processor, [image], prompt)
    assert got.item() == pytest.approx(expected.item(), abs=1e-5)


def test_batched_scores_equal_unbatched_ones(detector) -> None:
    bundle, prompt = detector.backend.bundle, detector.prompt
    images = _images()
    batch = encode(bundle.processor, images, prompt, torch.device("cpu"))
    assert (batch["attention_mask"][:, 0] == 0).any() and (batch["attention_mask"][:, -1] == 1).all()  # left
    together = verdict_logits(bundle.model, bundle.processor, images, prompt)
    alone = torch.cat([verdict_logits(bundle.model, bundle.processor, [im], prompt) for im in images])
    torch.testing.assert_close(together, alone, atol=1e-4, rtol=1e-4)


def test_shape_only_build_counts_the_real_model() -> None:
    shape = create_detector("vlm_zero_shot", weights=False)
    trainable, total = shape.parameter_counts()
    assert trainable == 0 and total > 8_000_000_000  # Qwen2.5-VL-7B: 8.29B parameters, on the meta device


def test_backend_registry() -> None:
    assert "local" in list_backends()
    with pytest.raises(Exception, match="unknown VLM backend 'nope'"):
        create_backend("nope")


def test_train_then_evaluate_gives_auc_eer_and_explanations(tmp_path: Path, restore_log_handlers: None) -> None:
    manifest = make_tiny_split(tmp_path / "data")
    config = tmp_path / "vlm.yaml"
    config.write_text(yaml.safe_dump({
        "method": {"name": "vlm_zero_shot", "backbone": "tiny", "max_new_tokens": 6},
        "data": {"manifest": str(manifest)},
        "train": {"batch_size": 8, "num_workers": 0},
    }))
    run_dir = tmp_path / "run"
    assert main(["train", str(config), "--out", str(run_dir), "--no-progress"]) == 0
    record = json.loads((run_dir / "run.json").read_text())
    assert record["parameters"]["trainable"] == 0 and record["steps"] == 0
    assert 0.0 < record["threshold"] < 1.0 and record["best_val_auc"] == record["val_metrics"]["auc"]
    assert record["config"]["method"]["prompt"] == "forensic_xml_v1"
    assert not (run_dir / "last").exists()
    val = pd.read_parquet(run_dir / "val_predictions.parquet")
    assert DETAIL_COLUMNS <= set(val.columns) and len(val) == 18

    detector, info = load_run(run_dir)  # the empty weights file loads
    assert info.threshold == record["threshold"]
    assert main(["evaluate", str(run_dir), "--split", "test", "--bootstrap", "10", "--no-progress"]) == 0
    preds = pd.read_parquet(run_dir / "predictions_test.parquet")
    test = read_manifest(manifest).query(f"{SPLIT_COLUMN} == 'test'")
    assert preds["sample_id"].tolist() == test["sample_id"].tolist()
    assert DETAIL_COLUMNS <= set(preds.columns) and np.isfinite(preds["score"]).all()
    metrics = json.loads((run_dir / "metrics_test.json").read_text())
    text = json.dumps(metrics)
    assert '"auc"' in text and '"eer"' in text


class _Counting:
    """Wraps a backend: counts the images it is asked about, and fails on call ``fail_at``."""

    def __init__(self, inner, fail_at: int | None = None) -> None:
        self.inner, self.fail_at, self.calls, self.images = inner, fail_at, 0, 0
        self.name = inner.name

    def score(self, images, prompt, explain):
        self.calls += 1
        if self.calls == self.fail_at:
            raise KeyboardInterrupt
        self.images += len(images)
        return self.inner.score(images, prompt, explain)


@pytest.mark.parametrize("part_rows", [50_000, 8])
def test_interrupted_scoring_resumes_without_asking_again(detector, tmp_path: Path, part_rows: int) -> None:
    rows = read_manifest(make_tiny_split(tmp_path / "data")).query(f"{SPLIT_COLUMN} == 'val'")  # 18 rows
    inner = detector.backend
    try:
        detector.backend = _Counting(inner)
        expected = predict_manifest(detector, rows, 4, progress=False)
        out = tmp_path / "preds.parquet"
        detector.backend = _Counting(inner, fail_at=3)  # after two batches (8 rows)
        with pytest.raises(KeyboardInterrupt):
            predict_manifest(detector, rows, 4, out=out, part_rows=part_rows, progress=False)
        assert not out.exists()
        journals = list(tmp_path.glob(".preds.parquet.parts/*.jsonl"))
        if part_rows > len(rows):  # the journal holds the 8 finished rows, with their parsed answers
            lines = [json.loads(line) for line in journals[0].read_text().splitlines()]
            assert [r["sample_id"] for r in lines] == rows["sample_id"].tolist()[:8]
            assert all(r["raw_answer"].startswith("<answer>") and "parsed" in r for r in lines)
        detector.backend = counting = _Counting(inner)
        result = predict_manifest(detector, rows, 4, out=out, part_rows=part_rows, progress=False)
    finally:
        detector.backend = inner
    assert counting.images == len(rows) - 8  # finished images are not asked again
    pd.testing.assert_frame_equal(result, expected)
    pd.testing.assert_frame_equal(pd.read_parquet(out), expected)
    assert [p.name for p in tmp_path.iterdir() if p.name != "data"] == ["preds.parquet"]  # journal removed
