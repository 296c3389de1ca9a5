"""CLIP + LoRA: low-rank adapters on the vision encoder's attention, plus a linear head.

The seed reports' "CLIP + LoRA" (r=32, alpha=64, dropout 0.05 on ``q_proj``/``v_proj``, LR 1e-4). peft's
``inject_adapter_in_model`` adds the adapters in place to ``clip.vision_model`` only: the text tower is
never used by this method, and matching ``q_proj``/``v_proj`` on the whole ``CLIPModel`` would adapt its
attention too. The head is ``Linear(projection_dim, 1)`` on the projected image embedding
(``get_image_features(...).pooler_output``), as in the linear probe.

What is counted, at ViT-B/32 with the defaults:

- LoRA adapters: 12 layers x 2 modules x r·(768 + 768) = **1,179,648** (the seed's "~1.18M"; r=8 gives
  294,912, report 2's "~0.29M");
- head: 512 + 1 = **513**; it is trained too, so it is trainable;
- trainable in all: **1,180,161**; total: 151,277,313 (the whole CLIP, both towers) + 1,180,161.

The seed's "0.77%" is peft's ``print_trainable_parameters`` on the whole ``CLIPModel`` with adapters on the
vision tower only: adapters / (CLIP + adapters) = 1,179,648 / 152,456,961 = 0.7738%. The alternatives do
not round to it: adapters / CLIP alone = 0.7798% (0.78%), adapters / (vision tower + projection +
adapters) = 1,179,648 / 89,028,864 = 1.32%. crossfake reports trainable / total of the built detector
(1,180,161 / 152,457,474 = 0.7741%), the same convention, with adapters and head listed separately.

The text tower is kept (not dropped) so that every CLIP method's total is the same whole CLIP plus its
own additions, and its percentage comparable across methods.
"""

from __future__ import annotations

import torch
from pydantic import Field
from torch import nn

from crossfake.methods.adapters import lora_parameters
from crossfake.methods.base import MethodConfig
from crossfake.methods.clip_base import ClipDetector
from crossfake.methods.registry import register_method
from crossfake.models.backbones.clip import ClipBundle, build_clip
from crossfake.utils.errors import CrossfakeError

# peft names every adapter parameter after its adapter matrices (lora_A, lora_B, and lora_embedding_* or
# lora_magnitude_* for the variants); the prefix identifies adapter parameters in names and checkpoints.


class LoraMethodConfig(MethodConfig):
    """Options of :class:`LoraDetector` (defaults: the seed report's CLIP + LoRA row)."""

    lr: float = Field(1e-4, gt=0, description="default learning rate (AdamW)")
    r: int = Field(32, gt=0, description="LoRA rank")
    alpha: int = Field(64, gt=0, description="LoRA scaling numerator (the update is scaled by alpha / r)")
    dropout: float = Field(0.05, ge=0, lt=1, description="dropout on the adapter's input")
    target_modules: tuple[str, ...] = Field(
        ("q_proj", "v_proj"), min_length=1,
        description="vision-encoder linear layers to adapt (names as in transformers' CLIP: q_proj, k_proj, "
                    "v_proj, out_proj, fc1, fc2)",
    )


@register_method("lora")
class LoraDetector(ClipDetector):
    """Frozen CLIP with LoRA adapters in the vision encoder and a linear head on the image embedding.

    Trainable: the adapters' ``lora_*`` matrices and the head. Everything else stays frozen.
    """

    config_class = LoraMethodConfig

    def __init__(self, config: LoraMethodConfig, bundle: ClipBundle) -> None:
        from peft import LoraConfig, inject_adapter_in_model

        super().__init__(config, bundle)
        self.freeze_backbone()
        vision = self.clip.vision_model
        # peft fails only when *no* target matches; a misspelt one beside a valid one would silently
        # shrink the adapter, so every target must match (peft's rule: the name or a dotted suffix of it).
        names = [n for n, _ in vision.named_modules()]
        unmatched = [t for t in config.target_modules
                     if not any(n == t or n.endswith("." + t) for n in names)]
        if unmatched:
            linear = {n.rsplit(".", 1)[-1] for n, m in vision.named_modules() if isinstance(m, nn.Linear)}
            raise CrossfakeError(f"lora: target_modules {unmatched} match no layer of the vision encoder; "
                                 f"its linear layers are {', '.join(sorted(linear))}")
        lora = LoraConfig(r=config.r, lora_alpha=config.alpha, lora_dropout=config.dropout,
                          target_modules=list(config.target_modules), bias="none")
        inject_adapter_in_model(lora, vision)
        self.classifier = nn.Linear(self.clip.config.projection_dim, 1)

    @classmethod
    def build(cls, config: LoraMethodConfig, weights: bool = True) -> LoraDetector:
        return cls(config, build_clip(config.backbone, weights=weights))

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        emb = self.clip.get_image_features(pixel_values=pixel_values).pooler_output
        return self.classifier(emb).squeeze(-1)

    def parameter_breakdown(self) -> dict[str, int]:
        """Trainable parameters by part: the LoRA adapters and the head."""
        adapters = sum(p.numel() for _, p in lora_parameters(self.clip))
        cfg, head = self.config, self.classifier
        return {
            f"LoRA adapters ({', '.join(cfg.target_modules)}; r={cfg.r})": adapters,
            f"head Linear({head.in_features}, {head.out_features})": head.weight.numel() + head.bias.numel(),
        }
