"""Parameter counts at the real ViT-B/32 shape (meta device, no download) and `crossfake params`."""

from __future__ import annotations

import json

import pytest

from crossfake.cli.main import main
from crossfake.cli.params import parameter_report
from crossfake.methods import create_detector

# Every parameter of openai/clip-vit-base-patch32: both towers, both projections and the logit scale.
CLIP_B32 = 151_277_313


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


@pytest.mark.parametrize(("argv", "expected"), [
    (["--method", "lora"], ["1,179,648", "513", "1,180,161", "0.77"]),
    (["--method", "lora", "--r", "8", "--alpha", "64"], ["294,912"]),
    (["--method", "visual_prompt", "--prompt-size", "120"], ["43,969", "43,200"]),
    (["--method", "linear_probe"], ["513"]),
    (["--method", "reprogramming"], ["77,520"]),
])
def test_params_command(capsys, argv, expected):
    assert main(["params", *argv]) == 0
    out = capsys.readouterr().out
    for text in expected:
        assert text in out


def test_params_all_and_json(capsys):
    assert main(["params", "--all"]) == 0
    table = capsys.readouterr().out
    for text in ("linear_probe", "lora", "visual_prompt", "reprogramming", "1,179,648", "43,969"):
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
