"""LayerNorm tuning on a hypersphere: GenD (Yermakov et al., "Deepfake Detection that Generalizes Across
Benchmarks", WACV'26; official code ``yermandy/GenD``).

Only the affine parameters (weight and bias) of the vision encoder's LayerNorms are trained — ``pre_layrnorm``,
``layer_norm1`` and ``layer_norm2`` of every block, ``post_layernorm`` — plus a linear head on the
*L2-normalised* pooled output (the post-layernorm CLS token, not the projection). Normalising puts every
image on the unit hypersphere, where two metric-learning terms of Wang & Isola (ICML'20, "Understanding
contrastive representation learning through alignment and uniformity on the hypersphere") shape it:

- alignment, label-aware: the mean of ``‖z_i − z_j‖^α`` over pairs of the batch with the *same* label
  (α = 2): images of one class close together;
- uniformity: ``log mean exp(−t ‖z_i − z_j‖²)`` over all pairs of the batch (t = 2, the mean clamped at
  1e-6 before the log, as GenD does): the features spread over the sphere, keeping CLIP's variety.

``L = BCE + 0.5 · uniformity + 0.1 · alignment`` (GenD's ``LN+L2+UnAl`` run at ViT-L/14:
``Loss(ce_labels=1.0, uniformity=0.5, alignment_labels=0.1)``). Both terms are computed on each training
micro-batch, so they depend on the batch size (GenD: 512). A micro-batch of one image has no pairs; both
terms are then 0.

GenD's head is ``Linear(hidden_size, 2)`` under a softmax; crossfake uses one logit,
``Linear(hidden_size, 1)`` (the sigmoid of a linear logit is the same family as a two-way softmax of two).

Counting, at the defaults:

- ViT-B/32: LayerNorms ``2 · 768 · (2 + 2 · 12)`` = **39,936**, head 769;
- ViT-L/14: ``2 · 1024 · (2 + 2 · 24)`` = **102,400**, head 1,025.

GenD's "0.03% of the parameters" divides by its own model, the vision tower plus ``visual_projection``
plus the head (``Linear(1024, 2)``): (102,400 + 2,050) / 303,968,258 = 0.034% at ViT-L/14. crossfake's
percentage divides by the whole CLIP (both towers), as for every CLIP method: 103,425 / 427,617,538 =
0.024% at ViT-L/14.
"""

from __future__ import annotations

import torch
from pydantic import Field
from torch import nn

from crossfake.methods.base import MethodConfig
from crossfake.methods.clip_base import ClipDetector
from crossfake.methods.registry import register_method
from crossfake.models.backbones.clip import ClipBundle, build_clip


class LayerNormConfig(MethodConfig):
    """Options of :class:`LayerNormDetector` (defaults: GenD's CLIP run ``LN+L2+UnAl``)."""

    lr: float = Field(3e-4, gt=0, description="default learning rate (AdamW)")
    uniformity_weight: float = Field(0.5, ge=0, description="weight of the uniformity loss")
    alignment_weight: float = Field(0.1, ge=0, description="weight of the label-aware alignment loss")
    uniformity_t: float = Field(2.0, gt=0, description="temperature t of the uniformity loss")
    alignment_alpha: float = Field(2.0, gt=0, description="power α of the distances in the alignment loss")


def alignment_loss(z: torch.Tensor, labels: torch.Tensor, alpha: float = 2.0) -> torch.Tensor:
    """Mean ``‖z_i − z_j‖^α`` over the pairs i < j with the same label (0 when there is none)."""
    i, j = torch.triu_indices(len(z), len(z), offset=1, device=z.device)
    same = labels[i] == labels[j]
    if not bool(same.any()):
        return z.sum() * 0  # keeps the graph (and the device) of z
    return (z[i[same]] - z[j[same]]).norm(dim=1).pow(alpha).mean()


def uniformity_loss(z: torch.Tensor, t: float = 2.0, floor: float = 1e-6) -> torch.Tensor:
    """``log mean exp(−t ‖z_i − z_j‖²)`` over the pairs i < j (0 with fewer than two rows)."""
    if len(z) < 2:
        return z.sum() * 0
    return torch.pdist(z).pow(2).mul(-t).exp().mean().clamp(min=floor).log()


@register_method("layernorm")
class LayerNormDetector(ClipDetector):
    """CLIP vision tower with trainable LayerNorm affine parameters and a linear head on the L2-normalised
    pooled output."""

    config_class = LayerNormConfig

    def __init__(self, config: LayerNormConfig, bundle: ClipBundle) -> None:
        super().__init__(config, bundle)
        self.freeze_backbone()
        for module in self.clip.vision_model.modules():
            if isinstance(module, nn.LayerNorm):
                module.requires_grad_(True)
        self.classifier = nn.Linear(self.clip.config.vision_config.hidden_size, 1)

    @classmethod
    def build(cls, config: LayerNormConfig, weights: bool = True) -> LayerNormDetector:
        return cls(config, build_clip(config.backbone, weights=weights))

    def embed(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """The unit-norm feature the head and the metric losses see."""
        pooled = self.clip.vision_model(pixel_values=pixel_values).pooler_output
        return nn.functional.normalize(pooled.float(), dim=-1)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.embed(pixel_values)).squeeze(-1)

    def training_step(self, inputs: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        z = self.embed(inputs)
        logits = self.classifier(z).squeeze(-1)
        cfg = self.config
        loss = nn.functional.binary_cross_entropy_with_logits(logits.float(), labels.float())
        # The metric terms in float32 whatever the autocast: exp(-t d²) of close pairs needs the precision.
        with torch.autocast(z.device.type, enabled=False):
            if cfg.uniformity_weight:
                loss = loss + cfg.uniformity_weight * uniformity_loss(z.float(), cfg.uniformity_t)
            if cfg.alignment_weight:
                loss = loss + cfg.alignment_weight * alignment_loss(z.float(), labels, cfg.alignment_alpha)
        return {"loss": loss, "logits": logits}

    def parameter_breakdown(self) -> dict[str, int]:
        """Trainable parameters by part: the vision LayerNorms and the head."""
        norms = [m for m in self.clip.vision_model.modules() if isinstance(m, nn.LayerNorm)]
        head = self.classifier
        return {
            f"vision LayerNorm affine ({len(norms)} LayerNorms)":
                sum(p.numel() for m in norms for p in m.parameters()),
            f"head Linear({head.in_features}, {head.out_features})": head.weight.numel() + head.bias.numel(),
        }
