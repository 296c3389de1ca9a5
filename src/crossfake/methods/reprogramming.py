"""Input reprogramming of a frozen CLIP, after RepDFD (Lin et al. 2024, "Standing on the Shoulders of
Giants: Reprogramming Visual-Language Model for General Deepfake Detection").

The image is resized to an inner size, centred in the backbone's input frame on a zero (= mean colour,
after normalisation) border, and a learned perturbation δ is added inside a mask:
``x' = pad(resize(x)) + δ ⊙ M``. The frozen CLIP then classifies ``x'`` zero-shot against class prompts
through its frozen text tower: ``logit_c = logit_scale · cos(f_I(x'), t_c)``, where ``t_c`` is the mean of
the normalised embeddings of class c's prompts (CLIP's prompt ensembling). The detector's one logit is
``logit_fake - logit_real``, so its sigmoid is p(fake) of the 2-way softmax and the default binary
cross-entropy equals RepDFD's 2-class cross-entropy. Nothing but δ is trained.

Defaults follow RepDFD's code: inner size = floor(0.7 · input) (156 at 224, a 34-px ring), δ a full
``3 x H x W`` tensor starting at zero, mask = the ring around the image. At ViT-B/32 that is
3·(224² − 156²) = **77,520** effective parameters (RepDFD's "~78K"), in a raw tensor of 3·224² = 150,528
whose 73,008 entries under the image never reach the model (their gradient is exactly zero).
:meth:`ReprogrammingDetector.parameter_counts` counts the effective entries; ``mask="full"`` perturbs the
whole frame (150,528).

The text embeddings are computed once at build time (the text tower is frozen) and kept as a buffer,
rebuilt from the prompts on every load rather than saved. RepDFD's Face2Text prompt (a face-recognition
embedding projected into the text prompt) needs a separate face model and is not implemented.

Learning rate: RepDFD trains δ with AdamW at lr 1 under cosine decay for 100 epochs. The seeds train
one epoch (~540 steps at batch 32 in report 1) with no such schedule; Adam moves each entry by about
``lr`` per step, so 1e-2 lets δ reach amplitudes of order one normalised unit in that budget, where 1e-3
(the visual prompt's rate, which shares its step with a linear head) would keep it below ~0.5.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import torch
from pydantic import Field, field_validator
from torch import nn

from crossfake.methods.base import MethodConfig
from crossfake.methods.clip_base import ClipDetector
from crossfake.methods.registry import register_method
from crossfake.models.backbones.clip import ClipBundle, build_clip
from crossfake.utils.errors import CrossfakeError


class ReprogrammingConfig(MethodConfig):
    """Options of :class:`ReprogrammingDetector` (defaults: RepDFD's, without the face prompt)."""

    lr: float = Field(1e-2, gt=0, description="default learning rate (AdamW)")
    inner_ratio: float = Field(0.7, gt=0, le=1, description="resized image side / backbone input side")
    mask: Literal["ring", "full"] = Field("ring", description="where δ applies: the ring around the image, "
                                                             "or the whole frame")
    real_prompts: tuple[str, ...] = Field(("a photo of a real face",), min_length=1,
                                          description="text prompts of the real class (embeddings averaged)")
    fake_prompts: tuple[str, ...] = Field(("a photo of a fake face",), min_length=1,
                                          description="text prompts of the fake class (embeddings averaged)")

    @field_validator("real_prompts", "fake_prompts")
    @classmethod
    def _non_blank(cls, prompts: tuple[str, ...]) -> tuple[str, ...]:
        if any(not p.strip() for p in prompts):
            raise ValueError("prompts must not be blank")
        return prompts


@register_method("reprogramming")
class ReprogrammingDetector(ClipDetector):
    """Frozen CLIP, zero-shot against real/fake prompts, on images reprogrammed by a learned masked δ."""

    config_class = ReprogrammingConfig

    def __init__(self, config: ReprogrammingConfig, bundle: ClipBundle) -> None:
        super().__init__(config, bundle)
        self.freeze_backbone()
        size = self.clip.config.vision_config.image_size
        inner = int(size * config.inner_ratio)
        if config.mask == "ring" and inner >= size:
            raise CrossfakeError(f"reprogramming: inner_ratio {config.inner_ratio} leaves no ring around the "
                                 f"image in the {size}x{size} input; lower it or use mask='full'")
        if inner < 1:
            raise CrossfakeError(f"reprogramming: inner_ratio {config.inner_ratio} shrinks the {size}px "
                                 f"input to nothing")
        self.inner = inner
        # The image goes straight from the crop to the inner size (one resampling, as RepDFD does);
        # forward() still accepts tensors at the full input size and shrinks them itself.
        self.preprocess = dataclasses.replace(bundle.preprocess, resize=inner, crop=inner)
        self._transform = self.preprocess.transform()
        top = (size - inner + 1) // 2  # RepDFD's placement: the odd pixel goes to the top/left
        self._pad = (top, size - inner - top, top, size - inner - top)
        mask = torch.ones(1, size, size)
        if config.mask == "ring":
            mask[:, top:top + inner, top:top + inner] = 0
        self.register_buffer("mask", mask, persistent=False)
        self.delta = nn.Parameter(torch.zeros(3, size, size))
        self.register_buffer("text_embeddings", self._class_embeddings(bundle), persistent=False)

    @classmethod
    def build(cls, config: ReprogrammingConfig, weights: bool = True) -> ReprogrammingDetector:
        return cls(config, build_clip(config.backbone, weights=weights))

    @torch.no_grad()
    def _class_embeddings(self, bundle: ClipBundle) -> torch.Tensor:
        """(2, projection_dim) unit vectors of the real and fake classes, in that order."""
        dim = self.clip.config.projection_dim
        if self.clip.logit_scale.is_meta:  # weights=False: shapes only, nothing to encode
            return torch.zeros(2, dim)
        rows = []
        for prompts in (self.config.real_prompts, self.config.fake_prompts):
            tokens = bundle.tokenizer(list(prompts), padding=True, truncation=True, return_tensors="pt")
            emb = self.clip.get_text_features(**tokens).pooler_output
            rows.append(nn.functional.normalize(nn.functional.normalize(emb, dim=-1).mean(0), dim=-1))
        return torch.stack(rows)

    def reprogrammed(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """The model's actual input: the image shrunk into the frame plus the masked perturbation."""
        if pixel_values.shape[-1] != self.inner or pixel_values.shape[-2] != self.inner:
            pixel_values = nn.functional.interpolate(pixel_values, size=(self.inner, self.inner),
                                                     mode="bilinear", antialias=True, align_corners=False)
        return nn.functional.pad(pixel_values, self._pad) + self.delta * self.mask

    def class_logits(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(batch, 2) CLIP logits of the real and fake classes."""
        emb = self.clip.get_image_features(pixel_values=self.reprogrammed(pixel_values)).pooler_output
        emb = nn.functional.normalize(emb, dim=-1)
        return self.clip.logit_scale.exp() * emb @ self.text_embeddings.to(emb.dtype).T

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        logits = self.class_logits(pixel_values)
        return logits[:, 1] - logits[:, 0]

    def effective_delta_entries(self) -> int:
        """Entries of δ that reach the model (the mask's support, over the 3 channels)."""
        return int(self.mask.sum().item()) * self.delta.shape[0]

    def parameter_counts(self) -> tuple[int, int]:
        """(trainable, total), counting only the effective entries of δ (see the module docstring)."""
        trainable, total = super().parameter_counts()
        dead = self.delta.numel() - self.effective_delta_entries()
        return trainable - dead, total - dead

    def parameter_breakdown(self) -> dict[str, int]:
        """Trainable parameters by part: the effective entries of δ (the raw tensor size in the label)."""
        c, h, w = self.delta.shape
        return {f"δ in the {self.config.mask} mask (of a {c}x{h}x{w} tensor, {self.delta.numel():,})":
                self.effective_delta_entries()}
