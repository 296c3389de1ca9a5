"""Linear probe: ``Linear(projection_dim, 1)`` on the frozen CLIP projected image embedding.

The seed reports' "CLIP baseline" (513 trainable parameters at ViT-B/32, LR 1e-3). The backbone is
frozen, so its features can be cached on disk and the probe trained in seconds.
"""

from __future__ import annotations

import torch
from pydantic import Field
from torch import nn

from crossfake.methods.base import MethodConfig
from crossfake.methods.clip_base import ClipDetector
from crossfake.methods.registry import register_method
from crossfake.models.backbones.clip import build_clip


class LinearProbeConfig(MethodConfig):
    lr: float = Field(1e-3, gt=0)
    normalize: bool = Field(False, description="L2-normalise the embedding before the linear layer")


@register_method("linear_probe")
class LinearProbe(ClipDetector):
    config_class = LinearProbeConfig
    supports_feature_cache = True

    def __init__(self, config: LinearProbeConfig, bundle) -> None:
        super().__init__(config, bundle)
        self.freeze_backbone()
        self.classifier = nn.Linear(self.clip.config.projection_dim, 1)

    @classmethod
    def build(cls, config: LinearProbeConfig, weights: bool = True) -> LinearProbe:
        return cls(config, build_clip(config.backbone, weights=weights))

    def features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            emb = self.clip.get_image_features(pixel_values=pixel_values).pooler_output
        return nn.functional.normalize(emb, dim=-1) if self.config.normalize else emb

    def head(self, features: torch.Tensor) -> torch.Tensor:
        return self.classifier(features).squeeze(-1)
