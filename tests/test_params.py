"""Parameter counts at the real ViT-B/32 shape (meta device, no download) and `crossfake params`."""

from __future__ import annotations

import json

import pytest

from crossfake.cli.main import main
from crossfake.cli.params import parameter_report
from crossfake.methods import create_detector

# Every parameter of openai/clip-vit-base-patch32: both towers, both projections and the logit scale.
CLIP_B32 = 151_277_313
# ... and of openai/clip-vit-large-patch14 (the backbone of Effort, GenD and CLIPping the Deception).
CLIP_L14 = 427_616_513
B32, L14 = "openai/clip-vit-base-patch32", "openai/clip-vit-large-patch14"


def counts(name: str, **options) -> tuple[int, int, dict[str, int]]:
    det = create_detector(name, weights=False, **options)
    report = parameter_report(det)
    return report["trainable"], report["total"], {p["name"]: p["params"] for p in report["parts"]}


def test_linear_probe_trains_513():
    trainable, total, _ = counts("linear_probe")
    assert (trainable, total) == (513, CLIP_B32 + 513)


@pytest.mark.parametrize(("r", "adapters"), [(32, 1_179_648), (8, 294_912)])
def test_lora_adapters_at_the_seed_settings(r, adapters):
    det = create_detector("lora", weights=False, r=r)
    assert sum(p.numel() for n, p in det.named_parameters() if "lora_" in n and p.requires_grad) == adapters
    trainable, total, parts = counts("lora", r=r)
    assert parts == {f"LoRA adapters (q_proj, v_proj; r={r})": adapters, "head Linear(512, 1)": 513}
    assert (trainable, total) == (adapters + 513, CLIP_B32 + adapters + 513)


def test_lora_percentage_is_the_seeds_077():
    # peft's trainable% = adapters / (whole CLIP + adapters); the seed's "0.77%".
    assert round(100 * 1_179_648 / (CLIP_B32 + 1_179_648), 2) == 0.77
    trainable, total, _ = counts("lora")
    assert round(100 * trainable / total, 2) == 0.77


def test_visual_prompt_trains_43969():
    trainable, total, parts = counts("visual_prompt", prompt_size=120)
    assert parts == {"pixel prompt 3x120x120 (center)": 43_200, "head Linear(768, 1)": 769}
    assert (trainable, total) == (43_969, CLIP_B32 + 43_969)


def test_reprogramming_counts_the_ring():
    trainable, total, parts = counts("reprogramming")
    assert trainable == 3 * (224**2 - 156**2) == 77_520  # RepDFD's "~78K"
    assert total == CLIP_B32 + 77_520
    assert list(parts.values()) == [77_520] and "150,528" in next(iter(parts))
    assert counts("reprogramming", mask="full")[0] == 3 * 224 * 224


@pytest.mark.parametrize(("backbone", "clip"), [(B32, CLIP_B32), (L14, CLIP_L14), ("ViT-L/14", CLIP_L14)])
def test_both_sizes_are_known_offline(backbone, clip):
    trainable, total, _ = counts("linear_probe", backbone=backbone)
    assert total - trainable == clip


# -- the methods beyond the seeds, at both sizes ------------------------------------------------------------


@pytest.mark.parametrize(("backbone", "clip", "residual", "head"), [
    (B32, CLIP_B32, 12 * 4 * (768 + 1 + 768), 769),
    (L14, CLIP_L14, 24 * 4 * (1024 + 1 + 1024), 1025),
])
def test_effort_counts(backbone, clip, residual, head):
    trainable, total, parts = counts("effort", backbone=backbone)
    assert parts == {"SVD residual (q_proj, k_proj, v_proj, out_proj; rank 1)": residual,
                     f"head Linear({head - 1}, 1)": head}
    assert (trainable, total) == (residual + head, clip + residual + head)


def test_effort_reproduces_the_papers_019m():
    # Effort counts the trainable parameters of the vision encoder: the residual factors, head excluded.
    _, _, parts = counts("effort", backbone=L14)
    residual = parts["SVD residual (q_proj, k_proj, v_proj, out_proj; rank 1)"]
    assert residual == 196_704 and f"{residual / 1e6:.3f}".startswith("0.19")
    # The MLP too would more than double it: the paper's figure is the attention layers alone.
    _, _, wider = counts("effort", backbone=L14, target_modules=["q_proj", "k_proj", "v_proj", "out_proj",
                                                                    "fc1", "fc2"])
    assert next(iter(wider.values())) == 196_704 + 24 * 2 * (4096 + 1 + 1024)
    assert counts("effort", backbone=B32, residual_rank=4)[0] == 4 * 73_776 + 769


@pytest.mark.parametrize(("backbone", "clip", "norms", "head"), [
    (B32, CLIP_B32, 2 * 768 * (2 + 2 * 12), 769),
    (L14, CLIP_L14, 2 * 1024 * (2 + 2 * 24), 1025),
])
def test_layernorm_counts(backbone, clip, norms, head):
    trainable, total, parts = counts("layernorm", backbone=backbone)
    n_norms = 2 + 2 * (12 if backbone == B32 else 24)
    assert parts == {f"vision LayerNorm affine ({n_norms} LayerNorms)": norms, f"head Linear({head - 1}, 1)": head}
    # The LayerNorms are CLIP's own parameters: only the head adds to the total.
    assert (trainable, total) == (norms + head, clip + head)


def test_layernorm_reproduces_gends_003_percent():
    det = create_detector("layernorm", weights=False, backbone=L14)
    norms = sum(p.numel() for n, p in det.named_parameters() if p.requires_grad and n.startswith("clip."))
    # GenD's model: the vision tower and visual_projection, plus its Linear(1024, 2) head.
    gend_total = (sum(p.numel() for p in det.clip.vision_model.parameters())
                  + det.clip.visual_projection.weight.numel() + 2 * 1024 + 2)
    assert (norms, gend_total) == (102_400, 303_968_258)
    assert round(100 * (norms + 2 * 1024 + 2) / gend_total, 2) == 0.03
    trainable, total, _ = counts("layernorm", backbone=L14)
    assert round(100 * trainable / total, 3) == 0.024  # crossfake's convention: the whole CLIP


@pytest.mark.parametrize(("backbone", "clip", "width"), [(B32, CLIP_B32, 512), (L14, CLIP_L14, 768)])
def test_prompt_tuning_counts(backbone, clip, width):
    trainable, total, parts = counts("prompt_tuning", backbone=backbone)
    assert parts == {f"context vectors 16x{width} (shared by both classes)": 16 * width}
    assert (trainable, total) == (16 * width, clip + 16 * width)
    assert counts("prompt_tuning", backbone=backbone, class_specific=True)[0] == 2 * 16 * width
    assert counts("prompt_tuning", backbone=backbone, n_ctx=4)[0] == 4 * width


def test_prompt_tuning_reproduces_the_papers_12k():
    # CLIPping the Deception: 16 context vectors of ViT-L/14's text width (768): "~12K". At ViT-B/32: 8,192.
    assert counts("prompt_tuning", backbone=L14)[0] == 12_288
    assert counts("prompt_tuning", backbone=B32)[0] == 8_192


@pytest.mark.parametrize(("argv", "expected"), [
    (["--method", "lora"], ["1,179,648", "513", "1,180,161", "0.77"]),
    (["--method", "lora", "--r", "8", "--alpha", "64"], ["294,912"]),
    (["--method", "visual_prompt", "--prompt-size", "120"], ["43,969", "43,200"]),
    (["--method", "linear_probe"], ["513"]),
    (["--method", "reprogramming"], ["77,520"]),
    (["--method", "effort"], ["73,776", "74,545", "on openai/clip-vit-base-patch32"]),
    (["--method", "effort", "--backbone", "ViT-L/14"], ["196,704", "197,729", "on ViT-L/14"]),
    (["--method", "layernorm"], ["39,936", "40,705"]),
    (["--method", "layernorm", "--backbone", "openai/clip-vit-large-patch14"], ["102,400", "103,425", "0.0242%"]),
    (["--method", "prompt_tuning"], ["8,192", "context vectors 16x512"]),
    (["--method", "prompt_tuning", "--backbone", "ViT-L/14"], ["12,288", "context vectors 16x768"]),
    (["--method", "prompt_tuning", "--n-ctx", "4", "--class-specific", "true"], ["4,096"]),
])
def test_params_command(capsys, argv, expected):
    assert main(["params", *argv]) == 0
    out = capsys.readouterr().out
    for text in expected:
        assert text in out


def test_params_all_and_json(capsys):
    assert main(["params", "--all"]) == 0
    table = capsys.readouterr().out
    for text in ("linear_probe", "lora", "visual_prompt", "reprogramming", "1,179,648", "43,969",
                 "effort", "74,545", "layernorm", "40,705", "prompt_tuning", "8,192"):
        assert text in table
    argv = ["params", "--method", "lora", "--target_modules", "q_proj", "k_proj", "v_proj", "--json"]
    assert main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["options"]["target_modules"] == ["q_proj", "k_proj", "v_proj"]
    assert report["parts"][0]["params"] == 3 * 1_179_648 // 2


@pytest.mark.parametrize(("argv", "message"), [
    (["--method", "lora", "--r", "-1"], "method 'lora': r: Input should be greater than 0"),
    (["--method", "nope"], "unknown method 'nope'"),
    (["--method", "lora", "--prompt-size", "100"], "prompt_size: Extra inputs are not permitted"),
    (["--method", "visual_prompt", "--prompt-size", "300"], "larger than the backbone's 224x224 input"),
    (["--all", "--r", "8"], "--all counts every method at its defaults"),
])
def test_params_bad_options_exit_2(capsys, argv, message):
    assert main(["params", *argv]) == 2
    assert message in capsys.readouterr().err
