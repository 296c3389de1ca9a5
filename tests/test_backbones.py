"""Backbone loading: local folders, hub ids offline, aliases, and clear errors when weights are missing."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from crossfake.models.backbones.clip import build_clip
from crossfake.models.backbones.qwen_vl import build_qwen_vl, save_tiny
from crossfake.models.backbones.spec import canonical_name
from crossfake.utils.errors import CrossfakeError


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # An empty hub cache and no network: what a user without the weights sees.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))


def test_clip_local_dir_round_trip(tmp_path: Path) -> None:
    from transformers import CLIPImageProcessor

    tiny = build_clip("tiny")
    folder = tmp_path / "clip"
    tiny.model.save_pretrained(folder)
    tiny.tokenizer.save_pretrained(folder)
    CLIPImageProcessor(size={"shortest_edge": 64}, crop_size={"height": 64, "width": 64}).save_pretrained(folder)
    for spec in (f"local-dir:{folder}", str(folder)):
        loaded = build_clip(spec)
        assert loaded.origin == "local-dir"
        assert loaded.preprocess == tiny.preprocess  # read from the folder's processor config
        x = torch.randn(2, 3, 64, 64)
        with torch.no_grad():
            a = tiny.model.get_image_features(pixel_values=x).pooler_output
            b = loaded.model.get_image_features(pixel_values=x).pooler_output
        torch.testing.assert_close(a, b)


def test_missing_weights_give_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(CrossfakeError, match=r"cannot load CLIP weights 'openai/clip-vit-base-patch16'.*hf download"):
        build_clip("ViT-B/16")
    with pytest.raises(CrossfakeError, match="cannot load Qwen2.5-VL 'Qwen/Qwen2.5-VL-7B-Instruct'.*local-dir"):
        build_qwen_vl()
    with pytest.raises(CrossfakeError, match="does not exist"):
        build_clip(f"local-dir:{tmp_path / 'nowhere'}")
    with pytest.raises(CrossfakeError, match="does not exist"):
        build_clip("./no/such/folder")  # looks like a path: never silently treated as a hub id


def test_aliases_and_shapes_need_no_download() -> None:
    assert canonical_name("ViT-L/14") == "openai/clip-vit-large-patch14"
    assert canonical_name("hf-hub:openai/clip-vit-base-patch32") == "openai/clip-vit-base-patch32"
    large = build_clip("ViT-L/14", weights=False)
    assert large.model.config.vision_config.hidden_size == 1024 and large.origin == "shape"
    assert next(large.model.parameters()).device.type == "meta"


def test_qwen_local_dir_round_trip(tmp_path: Path) -> None:
    folder = save_tiny(tmp_path / "qwen")
    tiny, loaded = build_qwen_vl("tiny"), build_qwen_vl(f"local-dir:{folder}")
    assert loaded.origin == "local-dir"
    ids = torch.tensor([[1, 2, 3, 4]])
    with torch.no_grad():
        torch.testing.assert_close(tiny.model(input_ids=ids).logits, loaded.model(input_ids=ids).logits)
