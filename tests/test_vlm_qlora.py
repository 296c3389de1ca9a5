"""Qwen2.5-VL + QLoRA: counts at the 7B shape, the adapted layers, the loss mask, 4-bit training on the CPU,
adapter-only checkpoints, and `crossfake train` / `crossfake evaluate` end to end on the tiny model.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from crossfake.cli.main import main
from crossfake.methods import create_detector
from crossfake.methods.vlm_qlora import IGNORE_INDEX, VlmQloraDetector
from crossfake.utils.errors import CrossfakeError
from tests.test_training import make_tiny_split

QWEN_7B_TRAINABLE = 51_521_536
QWEN_7B_LANGUAGE = 40_370_176  # 28 layers x 1,441,792
QWEN_7B_VISION = 11_151_360  # 32 blocks x 348,480


@pytest.fixture(scope="module")
def shape_7b() -> VlmQloraDetector:
    return create_detector("vlm_qlora", weights=False)


def _images() -> list[Image.Image]:
    """Two visually different images of different sizes (so the batch needs padding)."""
    dark = Image.fromarray(np.full((64, 64, 3), 30, np.uint8))
    checker = (np.indices((28, 28)).sum(0) % 2 * 255).astype(np.uint8)
    bright = Image.fromarray(np.stack([checker] * 3, -1))
    return [dark, bright]


def _train(detector: VlmQloraDetector, steps: int, lr: float = 1e-2) -> list[float]:
    images, labels = _images(), torch.tensor([0.0, 1.0])
    optimizer = torch.optim.AdamW(detector.trainable_parameters(), lr=lr)
    detector.train()
    losses = []
    for _ in range(steps):
        loss = detector.training_step(images, labels)["loss"]
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    return losses


# -- counts at the real size -------------------------------------------------------------------------------


def test_count_at_the_7b_shape(shape_7b: VlmQloraDetector) -> None:
    trainable, total = shape_7b.parameter_counts()
    assert trainable == QWEN_7B_TRAINABLE
    assert total == 8_292_166_656 + QWEN_7B_TRAINABLE
    assert list(shape_7b.parameter_breakdown().values()) == [QWEN_7B_LANGUAGE, QWEN_7B_VISION]
    assert round(100 * trainable / 7e9, 2) == 0.74  # the seed's figure: adapters over the nominal 7B


def test_only_block_adapters_are_trainable(shape_7b: VlmQloraDetector) -> None:
    trainable = [n for n, p in shape_7b.named_parameters() if p.requires_grad]
    assert trainable and all(".lora_A." in n or ".lora_B." in n for n in trainable)
    assert not [n for n in trainable if "merger" in n or "lm_head" in n or "embed" in n]
    adapted = {n.split(".lora_")[0].rsplit(".", 1)[-1] for n in trainable}
    assert adapted == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj",
                       "qkv", "proj"}
    assert all(".language_model.layers." in n or ".visual.blocks." in n for n in trainable)


def test_params_cli_prints_the_seed_count(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["params", "--method", "vlm_qlora"]) == 0
    out = capsys.readouterr().out
    assert "51,521,536" in out and "40,370,176" in out and "11,151,360" in out and "0.6175%" in out


def test_a_misspelt_target_fails() -> None:
    with pytest.raises(CrossfakeError, match="qkvv"):
        create_detector("vlm_qlora", backbone="tiny", quantize="none", target_modules=["q_proj", "qkvv"])


# -- the tiny model ------------------------------------------------------------------------------------------


def test_loss_covers_only_the_answer_tokens() -> None:
    detector = create_detector("vlm_qlora", backbone="tiny", quantize="none")
    batch, verdict_pos = detector.training_batch(_images(), torch.tensor([0.0, 1.0]))
    tok = detector.processor.tokenizer
    prompt = detector.prompt
    for i, word in enumerate((prompt.negative, prompt.positive)):
        target = batch["labels"][i]
        n = int(batch["attention_mask"][i].sum())
        answer = target[target != IGNORE_INDEX]
        assert tok.decode(answer) == f"{prompt.answer_prefix}{word}<|im_end|>"
        # The answer is the tail of the row's real tokens; prompt, image tokens and padding are masked.
        assert torch.equal(batch["input_ids"][i, n - len(answer) : n], answer)
        assert (target[: n - len(answer)] == IGNORE_INDEX).all() and (target[n:] == IGNORE_INDEX).all()
        assert tok.decode(batch["input_ids"][i, verdict_pos[i]]).strip() == word
    assert batch["attention_mask"][1].sum() < batch["attention_mask"][0].sum()  # the smaller image is padded


@pytest.mark.bitsandbytes
def test_qlora_trains_on_the_cpu_and_adapters_round_trip() -> None:
    detector = create_detector("vlm_qlora", backbone="tiny")  # quantize: nf4 (the default)
    assert any(type(m).__name__ == "Linear4bit" for m in detector.model.modules())
    losses = _train(detector, steps=8)
    assert losses[-1] < 0.9 * losses[0]

    detector.eval()
    scores = detector.predict(_images())
    assert scores.shape == (2,) and scores[1] > scores[0]  # the fake-labelled image scores more fake
    state = detector.trainable_state_dict()
    assert all("lora_" in k for k in state)
    assert sum(v.numel() for v in state.values()) == detector.parameter_counts()[0]

    fresh = create_detector("vlm_qlora", backbone="tiny").eval()
    assert not torch.equal(fresh.predict(_images()), scores)
    fresh.load_trainable_state_dict(state)
    assert torch.equal(fresh.predict(_images()), scores)


def test_train_and_evaluate_end_to_end(tmp_path: Path) -> None:
    manifest = make_tiny_split(tmp_path / "data", frames=1)
    run = tmp_path / "run"
    code = main([
        "train", "vlm_qlora", "--out", str(run), "--no-progress",
        "--set", f"data.manifest={manifest}", "--set", "method.backbone=tiny",
        "--set", "train.batch_size=4", "--set", "train.grad_accum=2", "--set", "train.eval_batch_size=8",
        "--set", "train.num_workers=0", "--set", "train.lr=1e-3",
    ])
    assert code == 0
    record = json.loads((run / "run.json").read_text())
    assert record["parameters"]["trainable"] == create_detector(
        "vlm_qlora", weights=False, backbone="tiny").parameter_counts()[0]
    assert "threshold" in record and 0 <= record["val_metrics"]["auc"] <= 1
    # Adapter-only checkpoint: no base weight is saved.
    from safetensors.torch import load_file

    assert all("lora_" in k for k in load_file(str(run / "best" / "model.safetensors")))

    assert main(["evaluate", str(run), "--bootstrap", "20", "--no-progress"]) == 0
    metrics = json.loads((run / "metrics_test.json").read_text())
    text = json.dumps(metrics).lower()
    assert "auc" in text and "eer" in text
