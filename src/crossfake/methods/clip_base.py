"""Shared plumbing of the CLIP image detectors: backbone loading and the checkpoint's own transform."""

from __future__ import annotations

from typing import Any

import torch

from crossfake.methods.base import Detector, MethodConfig
from crossfake.models.backbones.clip import ClipBundle


class ClipDetector(Detector):
    """A detector over a transformers ``CLIPModel``; images are preprocessed as the checkpoint says."""

    def __init__(self, config: MethodConfig, bundle: ClipBundle) -> None:
        super().__init__(config)
        self.clip = bundle.model
        self.preprocess = bundle.preprocess
        self._transform = bundle.preprocess.transform()

    def transform(self, image) -> torch.Tensor:
        return self._transform(image)

    def freeze_backbone(self) -> None:
        for p in self.clip.parameters():
            p.requires_grad_(False)

    def train(self, mode: bool = True) -> Any:
        # The frozen backbone stays in eval mode (no dropout) whatever the trainer asks.
        super().train(mode)
        if not any(p.requires_grad for p in self.clip.parameters()):
            self.clip.eval()
        return self
