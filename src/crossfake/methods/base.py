"""What every detection method is: a validated config and a :class:`Detector` module.

A detector maps a batch of images to one logit per image (higher = more fake). The trainer and the
evaluator only ever use this interface, so they never ask which method they are running:

- ``transform(image)`` turns one RGB crop (a PIL image) into what ``collate`` batches;
- ``training_step(batch)`` returns ``{"loss": …, "logits": …}`` (default: binary cross-entropy);
- ``predict(batch)`` returns logits for scoring; ``predict_details(batch)`` also returns extra
  per-image columns for the predictions table (a VLM's verdict and explanation), which the class
  declares in ``prediction_columns`` so that reports and ``crossfake detect`` know what each one is for
  without knowing the method (the trainer records the declaration in ``run.json``);
- ``trainable_state_dict()`` / ``load_trainable_state_dict()`` save and restore only what was trained.

A method whose trainable part sits on top of a frozen feature extractor sets ``supports_feature_cache``
and splits ``forward`` into ``features`` (frozen, cacheable on disk) and ``head`` (trained), so the
trainer can extract features once and train the head in seconds.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from crossfake.data.predictions import PredictionColumns
from crossfake.models.backbones.clip import DEFAULT_CLIP


class MethodConfig(BaseModel):
    """Options shared by every method. Subclasses add theirs and override defaults (e.g. ``lr``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    method: str = Field(description="registered method name")
    backbone: str = Field(DEFAULT_CLIP, description="hub id, local-dir:PATH, alias (ViT-B/32) or 'tiny'")
    lr: float = Field(1e-3, gt=0, description="default learning rate for this method (AdamW)")


class Detector(nn.Module):
    """Base class of every detection method (see the module docstring)."""

    config_class: ClassVar[type[MethodConfig]] = MethodConfig
    supports_feature_cache: ClassVar[bool] = False
    #: Scoring takes seconds per image (a VLM answering): journal every finished batch so an interrupted
    #: scoring run never asks the same image twice (see :mod:`crossfake.scoring.predict`).
    journal_predictions: ClassVar[bool] = False
    #: The extra columns ``predict_details`` may add, by role (default: none).
    prediction_columns: ClassVar[PredictionColumns] = PredictionColumns()

    def __init__(self, config: MethodConfig) -> None:
        super().__init__()
        self.config = config

    @classmethod
    def build(cls, config: MethodConfig, weights: bool = True) -> Detector:
        """Construct the detector, loading its backbone (``weights=False``: shapes only, meta device)."""
        raise NotImplementedError

    # -- data -------------------------------------------------------------------------------------

    def transform(self, image) -> Any:
        """One RGB PIL image -> one model input (a tensor for image classifiers)."""
        raise NotImplementedError

    def collate(self, items: list[Any]) -> Any:
        return torch.stack(items)

    # -- model ------------------------------------------------------------------------------------

    def forward(self, inputs: Any) -> torch.Tensor:
        if self.supports_feature_cache:
            return self.head(self.features(inputs))
        raise NotImplementedError

    def features(self, inputs: Any) -> torch.Tensor:
        """Frozen features (only for methods with ``supports_feature_cache``)."""
        raise NotImplementedError

    def head(self, features: torch.Tensor) -> torch.Tensor:
        """Trained head on frozen features (only for methods with ``supports_feature_cache``)."""
        raise NotImplementedError

    def training_step(self, inputs: Any, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        logits = self(inputs)
        loss = nn.functional.binary_cross_entropy_with_logits(logits.float(), labels.float())
        return {"loss": loss, "logits": logits}

    @torch.no_grad()
    def predict(self, inputs: Any) -> torch.Tensor:
        return self(inputs)

    def predict_details(self, inputs: Any) -> tuple[torch.Tensor, dict[str, list]]:
        """Logits plus extra columns for the predictions table, one value per image (default: none)."""
        return self.predict(inputs), {}

    # -- parameters and checkpoints ---------------------------------------------------------------

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    def parameter_counts(self) -> tuple[int, int]:
        """(trainable, total) parameter counts."""
        trainable = sum(p.numel() for p in self.parameters() if p.requires_grad)
        total = sum(p.numel() for p in self.parameters())
        return trainable, total

    def parameter_breakdown(self) -> dict[str, int]:
        """Trainable parameters per named part (default: per top-level module), for ``crossfake params``."""
        parts: dict[str, int] = {}
        for name, p in self.named_parameters():
            if p.requires_grad:
                part = name.split(".", 1)[0]
                parts[part] = parts.get(part, 0) + p.numel()
        return parts

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        names = {n for n, p in self.named_parameters() if p.requires_grad}
        return {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items() if k in names}

    def matching_trainable_parameters(self, state: dict[str, torch.Tensor]) -> dict[str, nn.Parameter]:
        """The trainable parameters by name, after checking that ``state`` holds exactly those names."""
        params = {n: p for n, p in self.named_parameters() if p.requires_grad}
        missing, unexpected = set(params) - set(state), set(state) - set(params)
        if missing or unexpected:
            raise ValueError(f"checkpoint does not match the model: missing {sorted(missing)[:5]}, "
                             f"unexpected {sorted(unexpected)[:5]}")
        return params

    def load_trainable_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.matching_trainable_parameters(state)
        self.load_state_dict(state, strict=False)
