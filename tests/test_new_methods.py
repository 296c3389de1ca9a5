"""What makes effort, layernorm and prompt_tuning themselves, on the tiny backbone, checked against naive
reference computations (the shared behaviour of every CLIP method is in test_methods.py, the counts at real
size in test_params.py)."""

from __future__ import annotations

import itertools
from pathlib import Path

import pandas as pd
import pytest
import torch
from test_training import make_tiny_split, tiny_config
from torch import nn

from crossfake.data.manifest import read_manifest
from crossfake.methods import create_detector
from crossfake.methods.effort.svd import SVDResidualLinear
from crossfake.methods.layernorm import alignment_loss, uniformity_loss
from crossfake.models.backbones.clip import build_clip
from crossfake.runs.directory import load_run
from crossfake.scoring.features import FeatureCache
from crossfake.scoring.predict import predict_manifest
from crossfake.training import train
from crossfake.training.data import training_rows

SIZE = 64  # the tiny backbone's input side


def images(n: int = 4, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, SIZE, SIZE, generator=gen), torch.tensor([0.0, 1.0] * (n // 2))


def perturb_residuals(det, scale: float = 0.1) -> None:
    """Move every residual factor off its SVD start, as training would."""
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for layer in det.svd_layers():
            for p in (layer.U_residual, layer.S_residual, layer.V_residual):
                p.add_(scale * torch.randn(p.shape, generator=gen))


# -- effort -----------------------------------------------------------------------------------------------


def test_effort_untrained_is_the_pretrained_clip():
    det = create_detector("effort", backbone="tiny").eval()
    plain = build_clip("tiny").model.eval()
    x, _ = images()
    with torch.no_grad():
        torch.testing.assert_close(det.clip.vision_model(pixel_values=x).pooler_output,
                                   plain.vision_model(pixel_values=x).pooler_output, atol=1e-5, rtol=1e-4)
    originals = dict(plain.vision_model.named_modules())
    layers = dict(det.clip.vision_model.named_modules())
    adapted = [n for n, m in layers.items() if isinstance(m, SVDResidualLinear)]
    assert len(adapted) == 2 * 4  # 2 blocks x q, k, v, out
    assert all(n.rsplit(".", 1)[-1] in ("q_proj", "k_proj", "v_proj", "out_proj") for n in adapted)
    for name in adapted:
        torch.testing.assert_close(layers[name].merged_weight(), originals[name].weight, atol=1e-6, rtol=0)
        torch.testing.assert_close(layers[name].bias, originals[name].bias)


def test_effort_trains_the_smallest_singular_directions():
    k = 2
    det = create_detector("effort", backbone="tiny", residual_rank=k, target_modules=["q_proj", "fc1"])
    plain = dict(build_clip("tiny").model.vision_model.named_modules())
    layers = {n: m for n, m in det.clip.vision_model.named_modules() if isinstance(m, SVDResidualLinear)}
    assert {n.rsplit(".", 1)[-1] for n in layers} == {"q_proj", "fc1"}
    for name, layer in layers.items():
        sigma = torch.linalg.svdvals(plain[name].weight.detach())
        n = len(sigma)
        torch.testing.assert_close(layer.S_residual, sigma[-k:], atol=1e-6, rtol=1e-5)
        # The frozen part is the original weight without its k smallest directions: rank n - k, same top values.
        main = torch.linalg.svdvals(layer.weight_main)
        torch.testing.assert_close(main[: n - k], sigma[: n - k], atol=1e-5, rtol=1e-5)
        assert main[n - k:].abs().max() < 1e-5
        assert layer.U_main.shape == (layer.out_features, n - k)
        assert layer.V_main.shape == (n - k, layer.in_features)
        assert (layer.U_main.T @ layer.U_residual).abs().max() < 1e-5
        assert not layer.weight_main.requires_grad and not layer.bias.requires_grad


def naive_orthogonal(layer: SVDResidualLinear) -> torch.Tensor:
    """The official code's loss, whole matrices: ½‖ÛÛᵀ − I‖_F + ½‖V̂V̂ᵀ − I‖_F (square weights)."""
    u = torch.cat([layer.U_main, layer.U_residual], 1)
    v = torch.cat([layer.V_main, layer.V_residual], 0)
    return (0.5 * torch.linalg.norm(u @ u.T - torch.eye(len(u)))
            + 0.5 * torch.linalg.norm(v @ v.T - torch.eye(len(v))))


def naive_singular_value(layer: SVDResidualLinear, original: torch.Tensor) -> torch.Tensor:
    weight = layer.weight_main + layer.U_residual @ torch.diag(layer.S_residual) @ layer.V_residual
    return (torch.linalg.norm(weight) ** 2 - torch.linalg.norm(original) ** 2).abs()


def test_effort_regularisers_match_the_naive_formulas():
    det = create_detector("effort", backbone="tiny")
    plain = dict(build_clip("tiny").model.vision_model.named_modules())
    layers = {n: m for n, m in det.clip.vision_model.named_modules() if isinstance(m, SVDResidualLinear)}
    for layer in layers.values():  # at the start: orthonormal, and the weight's energy unchanged
        assert layer.orthogonal_loss() < 1e-4
        assert layer.singular_value_loss() < 1e-4 * layer.weight_sq_norm
    perturb_residuals(det)
    for name, layer in layers.items():
        with torch.no_grad():
            orth, naive = layer.orthogonal_loss(), naive_orthogonal(layer)
            assert orth > 0.01
            torch.testing.assert_close(orth, naive, atol=1e-4, rtol=1e-4)
            torch.testing.assert_close(layer.singular_value_loss(),
                                       naive_singular_value(layer, plain[name].weight), atol=1e-4, rtol=1e-4)
    reg = det.regularisers()
    mean = torch.stack([m.orthogonal_loss() for m in layers.values()]).mean()
    torch.testing.assert_close(reg["orthogonal"], mean)


def test_effort_loss_is_bce_plus_the_weighted_regularisers():
    x, y = images()
    plain = create_detector("effort", backbone="tiny", orthogonal_weight=0, singular_value_weight=0)
    det = create_detector("effort", backbone="tiny", orthogonal_weight=0.5, singular_value_weight=2.0)
    plain.classifier.load_state_dict(det.classifier.state_dict())  # the same random head
    for d in (plain, det):
        perturb_residuals(d)
        d.eval()
    with torch.no_grad():
        bce = nn.functional.binary_cross_entropy_with_logits(det(x), y)
        torch.testing.assert_close(plain.training_step(x, y)["loss"], bce)
        reg = det.regularisers()
        assert reg["orthogonal"] > 0 and reg["singular_value"] > 0
        expected = bce + 0.5 * reg["orthogonal"] + 2.0 * reg["singular_value"]
        torch.testing.assert_close(det.training_step(x, y)["loss"], expected)


def test_effort_training_moves_only_the_residual():
    det = create_detector("effort", backbone="tiny")
    frozen = {n: p.detach().clone() for n, p in det.named_parameters() if not p.requires_grad}
    trained = {n: p.detach().clone() for n, p in det.named_parameters() if p.requires_grad}
    x, y = images()
    opt = torch.optim.AdamW(det.trainable_parameters(), lr=1e-2)
    det.train()
    for _ in range(3):
        opt.zero_grad()
        det.training_step(x, y)["loss"].backward()
        opt.step()
    after = dict(det.named_parameters())
    assert all(torch.equal(after[n], p) for n, p in frozen.items())
    assert all(not torch.equal(after[n], p) for n, p in trained.items())


# -- layernorm --------------------------------------------------------------------------------------------


def naive_alignment(z: torch.Tensor, labels: torch.Tensor, alpha: float) -> torch.Tensor:
    pairs = [(i, j) for i, j in itertools.combinations(range(len(z)), 2) if labels[i] == labels[j]]
    return torch.stack([(z[i] - z[j]).norm() ** alpha for i, j in pairs]).mean()


def naive_uniformity(z: torch.Tensor, t: float) -> torch.Tensor:
    pairs = itertools.combinations(range(len(z)), 2)
    return torch.stack([torch.exp(-t * (z[i] - z[j]).norm() ** 2) for i, j in pairs]).mean().log()


def test_alignment_and_uniformity_match_pairwise_loops():
    gen = torch.Generator().manual_seed(0)
    z = nn.functional.normalize(torch.randn(7, 5, generator=gen), dim=-1)
    labels = torch.tensor([0, 1, 1, 0, 1, 0, 0])
    for alpha in (1.0, 2.0):
        torch.testing.assert_close(alignment_loss(z, labels, alpha), naive_alignment(z, labels, alpha))
    for t in (0.5, 2.0):
        torch.testing.assert_close(uniformity_loss(z, t), naive_uniformity(z, t))
    # Spread-out features are more uniform (lower loss) than clustered ones; same-class twins align perfectly.
    clustered = nn.functional.normalize(z[:1] + 0.01 * torch.randn(7, 5, generator=gen), dim=-1)
    assert uniformity_loss(clustered) > uniformity_loss(z)
    assert alignment_loss(torch.cat([z[:1], z[:1]]), torch.tensor([1, 1])) == 0
    # No pair to compare: zero, not NaN.
    assert alignment_loss(z[:2], torch.tensor([0, 1])) == 0 and uniformity_loss(z[:1]) == 0


def test_layernorm_head_sees_unit_vectors_and_loss_adds_the_metric_terms():
    x, y = images(6)
    det = create_detector("layernorm", backbone="tiny", uniformity_weight=0.5, alignment_weight=0.1).eval()
    seen = []
    det.classifier.register_forward_hook(lambda _m, inputs, _out: seen.append(inputs[0]))
    with torch.no_grad():
        out = det.training_step(x, y)
        z = seen[-1]
        torch.testing.assert_close(z.norm(dim=-1), torch.ones(6))
        bce = nn.functional.binary_cross_entropy_with_logits(out["logits"], y)
        expected = bce + 0.5 * naive_uniformity(z, 2.0) + 0.1 * naive_alignment(z, y, 2.0)
        torch.testing.assert_close(out["loss"], expected)
        torch.testing.assert_close(out["logits"], det(x))
    only_bce = create_detector("layernorm", backbone="tiny", uniformity_weight=0, alignment_weight=0).eval()
    only_bce.classifier.load_state_dict(det.classifier.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(only_bce.training_step(x, y)["loss"], bce)


def test_layernorm_trains_on_a_batch_of_one():
    det = create_detector("layernorm", backbone="tiny").train()
    x, y = images(2)
    loss = det.training_step(x[:1], y[:1])["loss"]
    loss.backward()
    assert torch.isfinite(loss) and all(torch.isfinite(p.grad).all() for p in det.trainable_parameters())


# -- prompt_tuning ----------------------------------------------------------------------------------------


def test_prompt_tuning_with_word_vectors_is_clips_text_encoder():
    """Context vectors set to real words' embeddings give exactly CLIP's embedding of that sentence."""
    bundle = build_clip("tiny")
    det = create_detector("prompt_tuning", backbone="tiny", n_ctx=3, class_token_position="end")
    words = bundle.tokenizer("the photo face", add_special_tokens=False, return_tensors="pt")["input_ids"][0]
    assert len(words) == 3
    with torch.no_grad():
        det.context.copy_(det.clip.text_model.embeddings.token_embedding(words)[None])
        ours = det.text_features()
        tokens = bundle.tokenizer(["the photo face real.", "the photo face fake."], padding=True,
                                  return_tensors="pt")
        theirs = nn.functional.normalize(bundle.model.get_text_features(**tokens).pooler_output, dim=-1)
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)


def test_prompt_tuning_places_the_class_name():
    tok = build_clip("tiny").tokenizer
    real, fake, period = (tok(w, add_special_tokens=False)["input_ids"] for w in ("real", "fake", "."))
    n = 4
    for position, ctx in (("front", [-1, -1, 0, 1, 2, 3, -1, -1]), ("end", [-1, 0, 1, 2, 3, -1, -1, -1]),
                          ("middle", [-1, 0, 1, -1, 2, 3, -1, -1])):
        det = create_detector("prompt_tuning", backbone="tiny", n_ctx=n, class_token_position=position)
        assert det.ctx_index.tolist() == [ctx, ctx]
        for row, name in zip(det.token_ids.tolist(), (real, fake), strict=True):
            words = [t for t, i in zip(row, ctx, strict=True) if i < 0]
            assert words == [tok.bos_token_id, *name, *period, tok.eos_token_id]
        assert det.eos_position.tolist() == [7, 7]


def test_prompt_tuning_logit_and_class_specific_context():
    det = create_detector("prompt_tuning", backbone="tiny").eval()
    x, _ = images()
    with torch.no_grad():
        f = det.features(x)
        pair = det.class_logits(f)
        torch.testing.assert_close(f.norm(dim=-1), torch.ones(4))
        # CLIP's zero-shot logits: its own logit scale times the cosine with each class prompt.
        torch.testing.assert_close(pair, det.clip.logit_scale.exp() * f @ det.text_features().T)
        assert det.clip.logit_scale.exp() > 2
        torch.testing.assert_close(det(x), pair[:, 1] - pair[:, 0])
        torch.testing.assert_close(torch.sigmoid(det(x)), pair.softmax(-1)[:, 1])
        torch.testing.assert_close(det(x), det.head(f))
    csc = create_detector("prompt_tuning", backbone="tiny", class_specific=True)
    assert csc.context.shape == (2, 16, 32) and det.context.shape == (1, 16, 32)
    with torch.no_grad():
        before = csc.text_features()
        # The fake class's own vectors (a random change: a constant shift would vanish in the LayerNorms).
        csc.context[1].add_(0.5 * torch.randn(csc.context[1].shape, generator=torch.Generator().manual_seed(0)))
        after = csc.text_features()
    torch.testing.assert_close(after[0], before[0])
    assert not torch.allclose(after[1], before[1])


def test_prompt_tuning_trains_on_cached_features(tmp_path: Path):
    manifest = make_tiny_split(tmp_path / "data")
    config = tiny_config(manifest, tmp_path / "run", tmp_path / "cache", method="prompt_tuning", epochs=2,
                         lr=None)
    assert config.train.feature_cache
    info = train(config, progress=False)
    assert FeatureCache(tmp_path / "cache").root.is_dir() and any((tmp_path / "cache").rglob("*.npy"))
    assert info.record.feature_cache is not None
    detector, _ = load_run(info.run_dir)
    _, val = training_rows(read_manifest(manifest), config.data, seed=0)
    again = predict_manifest(detector, val, config.eval_batch_size, progress=False)  # from images, no cache
    saved = pd.read_parquet(info.run_dir / "val_predictions.parquet")
    pd.testing.assert_series_equal(again["score"], saved["score"], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", ["effort", "layernorm", "prompt_tuning"])
def test_shapes_only_build_counts_without_weights(name):
    det = create_detector(name, backbone="tiny")
    shape = create_detector(name, weights=False, backbone="openai/clip-vit-base-patch32")
    assert det.parameter_counts()[0] > 0 and shape.parameter_counts()[0] > det.parameter_counts()[0]
