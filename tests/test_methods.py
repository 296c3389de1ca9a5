"""The CLIP detection methods on the tiny backbone: shapes, what trains, learning, checkpoints, errors."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from crossfake.methods import create_detector, method_config
from crossfake.utils.errors import CrossfakeError

SIZE = 64  # the tiny backbone's input side

# method -> (options on the tiny backbone, predicate on the names that must be trainable)
CASES = {
    "linear_probe": ({}, lambda n: n.startswith("classifier.")),
    "lora": ({}, lambda n: "lora_" in n or n.startswith("classifier.")),
    "visual_prompt": ({"prompt_size": 24}, lambda n: n == "prompt" or n.startswith("classifier.")),
    "reprogramming": ({}, lambda n: n == "delta"),
    "effort": ({}, lambda n: n.endswith((".U_residual", ".S_residual", ".V_residual"))
               or n.startswith("classifier.")),
    # CLIP's vision LayerNorms: pre_layrnorm (sic), layer_norm1/2 of every block, post_layernorm.
    "layernorm": ({}, lambda n: (n.startswith("clip.vision_model.")
                                 and any(s in n for s in ("layrnorm", "layer_norm", "layernorm")))
                  or n.startswith("classifier.")),
    "prompt_tuning": ({}, lambda n: n == "context"),
}


def build(name: str, **extra):
    return create_detector(name, backbone="tiny", **{**CASES[name][0], **extra})


def two_class_batch() -> tuple[torch.Tensor, torch.Tensor]:
    """Four normalised images: two "real" with a dark centre patch, two "fake" with a bright one."""
    gen = torch.Generator().manual_seed(0)
    x = 0.3 * torch.randn(4, 3, SIZE, SIZE, generator=gen)
    x[:2, :, 16:48, 16:48] -= 1.5
    x[2:, :, 16:48, 16:48] += 1.5
    return x, torch.tensor([0.0, 0.0, 1.0, 1.0])


def eval_loss(det, x: torch.Tensor, y: torch.Tensor) -> float:
    det.eval()
    with torch.no_grad():
        return det.training_step(x, y)["loss"].item()


def train_steps(det, x: torch.Tensor, y: torch.Tensor, steps: int = 8, lr: float = 1e-2) -> None:
    # One learning rate for all: this checks that gradients reach the right tensors, not the defaults.
    torch.manual_seed(0)
    opt = torch.optim.AdamW(det.trainable_parameters(), lr=lr, weight_decay=0.0)
    det.train()
    for _ in range(steps):
        opt.zero_grad()
        det.training_step(x, y)["loss"].backward()
        opt.step()


@pytest.mark.parametrize("name", CASES)
def test_forward_gives_one_logit_per_image(name):
    det = build(name).eval()
    x, _ = two_class_batch()
    with torch.no_grad():
        logits = det.predict(x)
    assert logits.shape == (4,) and logits.dtype == torch.float32 and torch.isfinite(logits).all()


@pytest.mark.parametrize("name", CASES)
def test_only_the_method_part_is_trainable(name):
    det = build(name)
    should_train = CASES[name][1]
    trainable = {n for n, p in det.named_parameters() if p.requires_grad}
    assert trainable, "nothing to train"
    assert trainable == {n for n, _ in det.named_parameters() if should_train(n)}
    x, y = two_class_batch()
    det.training_step(x, y)["loss"].backward()
    for n, p in det.named_parameters():
        assert (p.grad is not None) == (n in trainable), n


@pytest.mark.parametrize("name", CASES)
def test_a_few_steps_reduce_the_loss(name):
    det = build(name)
    x, y = two_class_batch()
    before = eval_loss(det, x, y)
    train_steps(det, x, y)
    assert eval_loss(det, x, y) < before - 1e-3


@pytest.mark.parametrize("name", CASES)
def test_trainable_state_round_trips(name):
    det = build(name)
    x, y = two_class_batch()
    train_steps(det, x, y, steps=2)
    state = det.trainable_state_dict()
    assert set(state) == {n for n, p in det.named_parameters() if p.requires_grad}
    fresh = build(name)
    fresh.load_trainable_state_dict(state)
    with torch.no_grad():
        assert torch.equal(det.eval()(x), fresh.eval()(x))


@pytest.mark.parametrize("name", CASES)
def test_transform_feeds_forward(name):
    det = build(name).eval()
    items = [det.transform(Image.new("RGB", (90, 70), color)) for color in ("black", "white")]
    with torch.no_grad():
        assert det.predict(det.collate(items)).shape == (2,)


@pytest.mark.parametrize(("name", "options", "message"), [
    ("lora", {"rank": 8}, "rank"),
    ("lora", {"r": -1}, "greater than 0"),
    ("lora", {"r": 0}, "greater than 0"),
    ("lora", {"dropout": 1.0}, "less than 1"),
    ("lora", {"target_modules": []}, "target_modules"),
    ("visual_prompt", {"prompt_size": 0}, "greater than 0"),
    ("visual_prompt", {"position": "left"}, "position"),
    ("reprogramming", {"inner_ratio": 1.5}, "less than or equal to 1"),
    ("reprogramming", {"real_prompts": []}, "real_prompts"),
    ("reprogramming", {"fake_prompts": ["  "]}, "blank"),
    ("effort", {"residual_rank": 0}, "greater than 0"),
    ("effort", {"orthogonal_weight": -1}, "greater than or equal to 0"),
    ("effort", {"target_modules": []}, "target_modules"),
    ("layernorm", {"uniformity_weight": -0.5}, "greater than or equal to 0"),
    ("layernorm", {"uniformity_t": 0}, "greater than 0"),
    ("prompt_tuning", {"n_ctx": 0}, "greater than 0"),
    ("prompt_tuning", {"class_token_position": "start"}, "class_token_position"),
    ("prompt_tuning", {"class_names": ["real", "real"]}, "must differ"),
    ("prompt_tuning", {"class_names": ["real"]}, "class_names"),
])
def test_bad_config_is_a_crossfake_error(name, options, message):
    with pytest.raises(CrossfakeError, match=message):
        method_config(name, **options)


@pytest.mark.parametrize(("name", "options", "message"), [
    ("visual_prompt", {"prompt_size": 120}, r"larger than the backbone's 64x64 input"),
    ("reprogramming", {"inner_ratio": 1.0}, "no ring"),
    ("lora", {"target_modules": ["q_proj", "qproj"]}, r"\['qproj'\] match no layer"),
    ("effort", {"target_modules": ["q_proj", "qproj"]}, r"\['qproj'\] match no linear layer"),
    ("effort", {"residual_rank": 48}, r"residual_rank 48 leaves no principal subspace"),
    ("prompt_tuning", {"n_ctx": 40}, r"does not fit the text encoder's 32 positions"),
])
def test_options_that_do_not_fit_the_backbone_fail_at_build(name, options, message):
    with pytest.raises(CrossfakeError, match=message):
        create_detector(name, backbone="tiny", **options)


def test_visual_prompt_is_a_patch_at_the_chosen_place():
    x = torch.zeros(1, 3, SIZE, SIZE)
    for position, corner in (("center", 20), ("corner", 0)):
        det = build("visual_prompt", position=position)
        with torch.no_grad():
            det.prompt.fill_(1.0)
        changed = det.prompted(x)[0, 0].nonzero()
        assert changed.min(0).values.tolist() == [corner, corner]
        assert changed.max(0).values.tolist() == [corner + 23, corner + 23]


def test_visual_prompt_keeps_the_frozen_backbone_in_eval_mode():
    det = build("visual_prompt").train()
    assert det.training and not det.clip.training


def test_reprogramming_logit_is_the_fake_minus_real_clip_logit():
    det = build("reprogramming").eval()
    x, _ = two_class_batch()
    with torch.no_grad():
        pair = det.class_logits(x)
        logit = det(x)
    torch.testing.assert_close(logit, pair[:, 1] - pair[:, 0])
    torch.testing.assert_close(torch.sigmoid(logit), pair.softmax(-1)[:, 1])
    torch.testing.assert_close(det.text_embeddings.norm(dim=-1), torch.ones(2))
    # The class embeddings are derived, not trained: they stay out of the checkpoint.
    assert "text_embeddings" not in det.trainable_state_dict()


def test_reprogramming_perturbs_only_the_ring():
    det = build("reprogramming")  # 64 px input, image shrunk to 44 px, 10 px ring
    assert det.inner == 44
    assert det.transform(Image.new("RGB", (90, 70))).shape == (3, 44, 44)
    x, y = two_class_batch()  # full-size tensors are shrunk in forward
    det.training_step(x, y)["loss"].backward()
    grad = det.delta.grad.abs().sum(0)
    assert grad[10:54, 10:54].eq(0).all() and grad[:10].gt(0).any() and grad[54:].gt(0).any()
    assert det.parameter_counts()[0] == det.effective_delta_entries() == 3 * (64**2 - 44**2)
    full = build("reprogramming", mask="full")
    assert full.parameter_counts()[0] == full.delta.numel() == 3 * 64 * 64


def test_several_prompts_per_class_are_averaged():
    one = build("reprogramming")
    two = build("reprogramming", real_prompts=["a photo of a real face", "a real face"])
    assert torch.equal(one.text_embeddings[1], two.text_embeddings[1])
    assert not torch.allclose(one.text_embeddings[0], two.text_embeddings[0])
