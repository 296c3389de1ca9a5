"""Effort: orthogonal subspace decomposition of CLIP's vision encoder (Yan et al., ICML'25).

"Orthogonal Subspace Decomposition for Generalizable AI-Generated Image Detection"; official code
``YZY-stack/Effort-AIGI-Detection`` (``DeepfakeBench/training/detectors/effort_detector.py``). Every target
linear weight of the vision encoder is split by its SVD (:class:`~crossfake.methods.effort.svd.SVDResidualLinear`):
the principal subspace (the largest ``n - k`` singular directions, where CLIP's knowledge lives) is frozen,
and only the residual (the ``k`` smallest singular directions: ``U_k``, ``σ_k``, ``V_k``) is trained, so the
adaptation stays orthogonal to what CLIP already knows. Everything else in CLIP is frozen.

Settings recovered from the official code:

- targets: the attention linears of every encoder block (``q_proj``, ``k_proj``, ``v_proj``, ``out_proj``;
  ``apply_svd_residual_to_self_attn`` replaces the ``nn.Linear`` modules under ``self_attn`` only — the MLP's
  ``fc1``/``fc2`` stay untouched; they can be added through ``target_modules``);
- ``r = 1024 - 1`` principal directions kept at ViT-L/14, i.e. a residual of rank ``k = 1``
  (``residual_rank``, which carries over to other widths: at ViT-B/32, 767 + 1);
- the head: ``Linear(hidden_size, 2)`` on the vision tower's ``pooler_output`` (the post-layernorm CLS token,
  1024-d at ViT-L/14, 768-d at ViT-B/32; not the projection). crossfake uses one logit,
  ``Linear(hidden_size, 1)``: a two-way softmax over two linear logits is a sigmoid of their difference,
  itself a linear logit, so the model family is the same with ``hidden_size + 1`` fewer parameters;
- the regularisers: ``L = L_cls + λ (L_orth + L_ksv)`` averaged over the adapted layers, λ = 1
  (``orthogonal_weight``, ``singular_value_weight``). The released code has this term commented out and
  trains on the cross-entropy alone; set both weights to 0 to reproduce that;
- optimiser: Adam, lr 2e-4, weight decay 5e-4 (L2), no schedule, 10 epochs; batch 32 and 8 frames per video
  in one copy of the config, 16 and 4 in another.

Counting, with the defaults:

- ViT-L/14 (the paper's backbone): 24 blocks x 4 layers x (1024 + 1 + 1024) = **196,704** residual
  parameters — the paper's "0.19M", which counts the vision encoder's trainable parameters (the
  official code's own count is over ``clip_model.vision_model``); plus the head, 1,025;
- ViT-B/32: 12 x 4 x (768 + 1 + 768) = **73,776**, plus the head, 769.

The total is every parameter of the detector (the whole CLIP, both towers, whose attention weights are
now the principal parts, plus the residual factors and the head), as for the other CLIP methods.

The principal singular vectors are kept for the orthogonality loss: about 0.23 GB at ViT-B/32 and 0.8 GB
at ViT-L/14 (float32) beside the model. Building does one SVD per adapted weight (48 at ViT-B/32, 96 at
ViT-L/14), on the CPU where the weights are loaded, so a run and every reload of it (``crossfake evaluate``,
``detect``) split the weights alike: about 15 s at ViT-B/32 and 100 s at ViT-L/14 on this project's busy
2-core machine. Only the residual factors and the head are saved.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from pydantic import Field
from torch import nn

from crossfake.methods.base import MethodConfig
from crossfake.methods.clip_base import ClipDetector
from crossfake.methods.effort.svd import SVDResidualLinear
from crossfake.methods.registry import register_method
from crossfake.models.backbones.clip import ClipBundle, build_clip
from crossfake.utils.errors import CrossfakeError

#: Names of the trainable residual factors in every :class:`SVDResidualLinear`.
RESIDUAL_PARAMETERS = ("U_residual", "S_residual", "V_residual")


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    """Run the SVDs on one thread. LAPACK's threaded SVD gains little at these sizes and collapses when the
    cores are shared: measured on 2 busy cores, 768x768 took 3.2 s on two threads and 0.3 s on one, 48x48
    160 ms and 0.5 ms."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


class EffortConfig(MethodConfig):
    """Options of :class:`EffortDetector` (defaults: the official Effort code)."""

    lr: float = Field(2e-4, gt=0, description="default learning rate (AdamW)")
    residual_rank: int = Field(1, gt=0, description="smallest singular directions trained per weight (k); "
                                                    "the other min(out, in) - k stay frozen")
    target_modules: tuple[str, ...] = Field(
        ("q_proj", "k_proj", "v_proj", "out_proj"), min_length=1,
        description="vision-encoder linear layers to decompose (q_proj, k_proj, v_proj, out_proj, fc1, fc2)",
    )
    orthogonal_weight: float = Field(1.0, ge=0, description="weight of the orthogonality loss (mean over layers)")
    singular_value_weight: float = Field(1.0, ge=0, description="weight of the singular-value (Frobenius "
                                                                "norm) constraint (mean over layers)")


@register_method("effort")
class EffortDetector(ClipDetector):
    """CLIP vision tower with SVD-residual attention weights and a linear head on the pooled output.

    Trainable: the residual factors ``U_residual``, ``S_residual``, ``V_residual`` of every adapted layer and
    the head. The principal parts, biases and everything else stay frozen.
    """

    config_class = EffortConfig

    def __init__(self, config: EffortConfig, bundle: ClipBundle) -> None:
        super().__init__(config, bundle)
        self.freeze_backbone()
        vision = self.clip.vision_model
        targets = [(name, module) for name, module in vision.named_modules()
                   if isinstance(module, nn.Linear) and name.rsplit(".", 1)[-1] in config.target_modules]
        found = {name.rsplit(".", 1)[-1] for name, _ in targets}
        missing = [t for t in config.target_modules if t not in found]
        if missing:
            linear = {n.rsplit(".", 1)[-1] for n, m in vision.named_modules() if isinstance(m, nn.Linear)}
            raise CrossfakeError(f"effort: target_modules {missing} match no linear layer of the vision encoder; "
                                 f"its linear layers are {', '.join(sorted(linear))}")
        for name, linear in targets:
            n = min(linear.weight.shape)
            if config.residual_rank >= n:
                raise CrossfakeError(f"effort: residual_rank {config.residual_rank} leaves no principal subspace "
                                     f"in {name} ({linear.out_features}x{linear.in_features}); use at most {n - 1}")
        with _one_thread():
            for name, linear in targets:
                parent_name, _, attr = name.rpartition(".")
                setattr(vision.get_submodule(parent_name), attr, SVDResidualLinear(linear, config.residual_rank))
        self.classifier = nn.Linear(self.clip.config.vision_config.hidden_size, 1)

    @classmethod
    def build(cls, config: EffortConfig, weights: bool = True) -> EffortDetector:
        return cls(config, build_clip(config.backbone, weights=weights))

    def svd_layers(self) -> list[SVDResidualLinear]:
        return [m for m in self.clip.vision_model.modules() if isinstance(m, SVDResidualLinear)]

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        pooled = self.clip.vision_model(pixel_values=pixel_values).pooler_output
        return self.classifier(pooled).squeeze(-1)

    def regularisers(self) -> dict[str, torch.Tensor]:
        """The orthogonality and singular-value losses, each averaged over the adapted layers."""
        layers = self.svd_layers()
        # Outside autocast: in bf16, the rounding of ‖W‖² alone (hundreds) would swamp the constraint.
        with torch.autocast(self.classifier.weight.device.type, enabled=False):
            return {
                "orthogonal": torch.stack([m.orthogonal_loss() for m in layers]).mean(),
                "singular_value": torch.stack([m.singular_value_loss() for m in layers]).mean(),
            }

    def training_step(self, inputs: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        logits = self(inputs)
        classification = nn.functional.binary_cross_entropy_with_logits(logits.float(), labels.float())
        cfg = self.config
        loss = classification
        if cfg.orthogonal_weight or cfg.singular_value_weight:
            reg = self.regularisers()
            loss = (loss + cfg.orthogonal_weight * reg["orthogonal"]
                    + cfg.singular_value_weight * reg["singular_value"])
        return {"loss": loss, "logits": logits}

    def parameter_breakdown(self) -> dict[str, int]:
        """Trainable parameters by part: the SVD residual factors and the head."""
        residual = sum(p.numel() for m in self.svd_layers() for n, p in m.named_parameters(recurse=False)
                       if n in RESIDUAL_PARAMETERS)
        cfg, head = self.config, self.classifier
        return {
            f"SVD residual ({', '.join(cfg.target_modules)}; rank {cfg.residual_rank})": residual,
            f"head Linear({head.in_features}, {head.out_features})": head.weight.numel() + head.bias.numel(),
        }
