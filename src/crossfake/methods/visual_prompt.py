"""CLIP + visual prompt: a learned pixel patch added to every input, plus a linear head.

The seed report's "CLIP + VPT" (prompt 120, LR 1e-3, 43,969 trainable parameters at ViT-B/32):

- the prompt is one learnable ``3 x S x S`` tensor (S = ``prompt_size``, 3·120·120 = 43,200 parameters)
  *added* to the normalised pixels, so it perturbs the image without hiding any of it. The count fixes
  its shape: a square patch (a padding frame cannot have exactly 43,200 entries at 224 px). It sits at
  the centre by default, over the inner face where FF++ manipulations leave their traces (a corner
  patch of a 1.3x-margin face crop lies on hair and background); ``position="corner"`` puts it at the
  top-left as in Bahng et al.'s fixed-patch prompter. It starts at zero, so the untrained detector
  is exactly frozen CLIP plus a linear head;
- the head is ``Linear(hidden_size, 1)`` on the vision model's ``pooler_output`` (the post-layernorm
  CLS token, 768-d at ViT-B/32; not the 512-d projection): 769 parameters;
- 43,200 + 769 = **43,969**. The backbone is frozen but gradients flow through it to the prompt.

The prompt lives in the backbone's input frame, so ``prompt_size`` must not exceed the input size
(224 for the OpenAI checkpoints, 64 for the ``tiny`` test backbone); building checks it.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import nn

from crossfake.methods.base import MethodConfig
from crossfake.methods.clip_base import ClipDetector
from crossfake.methods.registry import register_method
from crossfake.models.backbones.clip import ClipBundle, build_clip
from crossfake.utils.errors import CrossfakeError


class VisualPromptConfig(MethodConfig):
    """Options of :class:`VisualPromptDetector` (defaults: the seed report's CLIP + VPT row)."""

    lr: float = Field(1e-3, gt=0, description="default learning rate (AdamW)")
    prompt_size: int = Field(120, gt=0, description="side S of the learned 3xSxS pixel prompt")
    position: Literal["center", "corner"] = Field("center", description="where the prompt patch is added")


@register_method("visual_prompt")
class VisualPromptDetector(ClipDetector):
    """Frozen CLIP vision tower with a learned additive pixel patch and a linear head on the pooled output."""

    config_class = VisualPromptConfig

    def __init__(self, config: VisualPromptConfig, bundle: ClipBundle) -> None:
        super().__init__(config, bundle)
        self.freeze_backbone()
        size = self.clip.config.vision_config.image_size
        s = config.prompt_size
        if s > size:
            raise CrossfakeError(f"visual_prompt: prompt_size {s} is larger than the backbone's "
                                 f"{size}x{size} input ({config.backbone}); use prompt_size <= {size}")
        top = (size - s) // 2 if config.position == "center" else 0
        # (left, right, top, bottom) zero padding that places the patch in the input frame.
        self._pad = (top, size - s - top, top, size - s - top)
        self.prompt = nn.Parameter(torch.zeros(3, s, s))
        self.classifier = nn.Linear(self.clip.config.vision_config.hidden_size, 1)

    @classmethod
    def build(cls, config: VisualPromptConfig, weights: bool = True) -> VisualPromptDetector:
        return cls(config, build_clip(config.backbone, weights=weights))

    def prompted(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """The model's actual input: the normalised image plus the prompt placed in its frame."""
        return pixel_values + nn.functional.pad(self.prompt, self._pad)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        pooled = self.clip.vision_model(pixel_values=self.prompted(pixel_values)).pooler_output
        return self.classifier(pooled).squeeze(-1)

    def parameter_breakdown(self) -> dict[str, int]:
        """Trainable parameters by part: the pixel prompt and the head."""
        s, head = self.config.prompt_size, self.classifier
        return {
            f"pixel prompt 3x{s}x{s} ({self.config.position})": self.prompt.numel(),
            f"head Linear({head.in_features}, {head.out_features})": head.weight.numel() + head.bias.numel(),
        }
