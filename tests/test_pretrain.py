"""The bundled pretrained CLIP (synth-tiny) and the pretraining that rebuilds it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from crossfake.models.backbones.clip import build_clip
from crossfake.models.backbones.spec import SYNTH_TINY, bundled_clip_dir
from crossfake.models.pretrain import (
    FaceCaptionStream,
    PretrainConfig,
    build_tokenizer,
    pretrain,
    save_backbone,
)
from crossfake.models.pretrain.data import caption_words
from crossfake.utils.errors import CrossfakeError
from crossfake.utils.provenance import file_sha256

# A pretraining small enough for a test: a few 16-pair steps of a 1-layer, 16-wide CLIP on 32 px crops.
TINY_SETTING = [
    "data.identities=6", "data.crop_size=32", "model.image_size=32", "model.patch_size=8",
    "model.vision_width=16", "model.vision_layers=1", "model.vision_heads=2", "model.text_width=16",
    "model.text_layers=1", "model.text_heads=2", "model.projection_dim=8", "train.batch_size=16",
    "train.lr=0.01", "train.warmup_steps=0", "train.log_every=2", "train.eval_batches=1",
]


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))


def test_bundled_backbone_loads_offline_by_alias() -> None:
    from transformers import CLIPModel

    bundle = build_clip(SYNTH_TINY)
    assert bundle.origin == "bundled" and isinstance(bundle.model, CLIPModel)
    recipe = PretrainConfig.from_yaml(bundled_clip_dir() / "pretrain.yaml").model
    vision = bundle.model.config.vision_config
    assert (vision.image_size, vision.patch_size, vision.hidden_size, vision.num_hidden_layers) == (
        recipe.image_size, recipe.patch_size, recipe.vision_width, recipe.vision_layers)
    assert bundle.preprocess.crop == recipe.image_size == bundle.preprocess.resize
    assert len(bundle.tokenizer) == bundle.model.config.text_config.vocab_size
    with torch.no_grad():
        size = recipe.image_size
        image = bundle.model.get_image_features(pixel_values=torch.zeros(2, 3, size, size)).pooler_output
        tokens = bundle.tokenizer(["a photo of a real face", "a photo of a fake face"], padding=True,
                                  return_tensors="pt")
        text = bundle.model.get_text_features(**tokens).pooler_output
    assert image.shape == text.shape == (2, recipe.projection_dim)
    # Every caption word is one token, so the detectors' prompts read as words, not characters.
    assert bundle.tokenizer.tokenize("a photo of a fake face") == [
        "a</w>", "photo</w>", "of</w>", "a</w>", "fake</w>", "face</w>"]
    # Shapes without weights come from the bundled config too.
    assert build_clip(SYNTH_TINY, weights=False).model.config.vision_config.hidden_size == recipe.vision_width


def test_bundled_files_match_their_manifest_and_readme() -> None:
    folder = bundled_clip_dir()
    manifest = json.loads((folder / "manifest.json").read_text())
    assert {"model.safetensors", "config.json", "preprocessor_config.json", "pretrain.yaml",
            "training_log.json"} <= set(manifest)
    for name, entry in manifest.items():
        assert file_sha256(folder / name) == entry["sha256"], f"{name} changed since it was built"
    assert manifest["model.safetensors"]["bytes"] < 8_000_000  # a few MB, fit to commit
    readme = (folder / "README.md").read_text()
    assert manifest["model.safetensors"]["sha256"] in readme and "make tiny-backbone" in readme


def test_shipped_recipe_is_the_bundled_one() -> None:
    shipped = PretrainConfig.from_yaml()  # configs/pretrain/clip-synth-tiny.yaml
    assert PretrainConfig.from_yaml(bundled_clip_dir() / "pretrain.yaml") == shipped
    log = json.loads((bundled_clip_dir() / "training_log.json").read_text())
    assert log["summary"]["steps"] == shipped.train.steps
    # Pretraining taught it something: held-out retrieval well above chance (1 / batch size).
    assert log["summary"]["final"]["image_to_text_top1"] > 5 / shipped.train.batch_size


def test_config_errors_name_the_key(tmp_path: Path) -> None:
    with pytest.raises(CrossfakeError, match=r"train\.stepz: unknown key"):
        PretrainConfig.from_yaml(None, ["train.stepz=3"])
    with pytest.raises(CrossfakeError, match="not a multiple of patch_size"):
        PretrainConfig.from_yaml(None, ["model.patch_size=7"])
    with pytest.raises(CrossfakeError, match="no pretraining config"):
        PretrainConfig.from_yaml(tmp_path / "missing.yaml")


def test_captions_describe_generic_edits_never_the_synth_manipulations() -> None:
    words = set(caption_words())
    assert not words & {"faceswap", "swap", "swapped", "neuraltextures", "neural", "face2face", "deepfakes",
                        "deepfake", "reenacted", "manipulated"}
    config = PretrainConfig.from_yaml(None, TINY_SETTING)
    a, b = (FaceCaptionStream(config.data, seed=0).batch(3, 8) for _ in range(2))
    assert [s.caption for s in a] == [s.caption for s in b]
    assert all((x.image == y.image).all() for x, y in zip(a, b, strict=True))
    assert all(s.image.shape == (32, 32, 3) and s.caption.startswith("a photo of a") for s in a)
    tokenizer = build_tokenizer(64)
    assert all(len(tokenizer.tokenize(w)) == 1 for w in words)


def test_pretraining_learns_and_is_deterministic(tmp_path: Path) -> None:
    config = PretrainConfig.from_yaml(None, [*TINY_SETTING, "train.steps=8"])
    first = pretrain(config, progress=False)
    history = first.log["history"]
    assert history[-1]["loss"] < history[0]["loss"]  # held-out contrastive loss goes down
    short = PretrainConfig.from_yaml(None, [*TINY_SETTING, "train.steps=3"])
    a, b = pretrain(short, progress=False), pretrain(short, progress=False)
    assert a.log["losses"] == b.log["losses"]
    for (name, p), q in zip(a.model.state_dict().items(), b.model.state_dict().values(), strict=True):
        assert torch.equal(p, q), name

    folder = save_backbone(first, config, tmp_path / "clip")
    loaded = build_clip(f"local-dir:{folder}")
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded.model.get_image_features(pixel_values=x).pooler_output,
                                   first.model.get_image_features(pixel_values=x).pooler_output)
    assert PretrainConfig.from_yaml(folder / "pretrain.yaml") == config
