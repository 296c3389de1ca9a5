"""The registry behind every part created by name (corpora, face detectors, detection methods, VLM backends)."""

from __future__ import annotations

import pytest

from crossfake.data.corpora import list_corpora
from crossfake.data.preprocess import list_face_detectors
from crossfake.methods import list_methods
from crossfake.utils.errors import CrossfakeError
from crossfake.utils.registry import Registry
from crossfake.vlm.backends import list_backends


def test_register_get_build_and_errors():
    reg: Registry = Registry("widget")

    @reg.register("box")
    class Box:
        def __init__(self, size: int = 1) -> None:
            self.size = size

    assert "box" in reg and reg.names() == ["box"] and reg.get("box") is Box
    assert reg.build("box", size=3).size == 3
    reg.register("box")(Box)  # registering the same class again is harmless (module re-import)
    with pytest.raises(ValueError, match="widget 'box' registered twice"):
        reg.register("box")(type("Other", (), {}))
    with pytest.raises(CrossfakeError, match="unknown widget 'ball'; available: box"):
        reg.get("ball")
    with pytest.raises(CrossfakeError, match="invalid options for widget 'box'.*colour"):
        reg.build("box", colour="red")


def test_every_shipped_part_is_registered():
    assert {"ffpp", "folder"} <= set(list_corpora())
    assert {"haar", "yunet"} <= set(list_face_detectors())
    assert {"linear_probe", "lora", "visual_prompt", "reprogramming", "vlm_zero_shot", "vlm_qlora"} <= set(
        list_methods()
    )
    assert {"local", "http"} <= set(list_backends())
