"""The pretraining configuration: one YAML file with ``data:``, ``model:`` and ``train:``.

It is validated on parsing (unknown keys and impossible values fail before anything is rendered), and
the resolved config is written beside the weights as ``pretrain.yaml``, so the shipped backbone carries
the exact recipe that rebuilds it.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from crossfake.utils.config import read_yaml, validate_config
from crossfake.utils.shipped import resolve_shipped

#: The shipped recipe of the bundled ``synth-tiny`` backbone (``configs/pretrain/clip-synth-tiny.yaml``).
DEFAULT_PRETRAIN_CONFIG = "clip-synth-tiny"


class PretrainData(BaseModel):
    """How the image-caption pairs are made (see :mod:`crossfake.models.pretrain.data`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    identities: int = Field(512, ge=2, description="distinct synthetic people (drawn from their own seed "
                                                   "stream, never the identities `crossfake synth` draws)")
    frame_width: int = Field(256, ge=128, description="rendered frame width in pixels (height 3/4 of it), "
                                                      "as `crossfake synth --size`")
    crop_size: int = Field(128, ge=32, description="face crops are cut at this size, then edited and degraded")
    margin: float = Field(1.3, ge=1.0, le=2.0, description="crop margin around the face box, as `prepare`")
    box_jitter: float = Field(0.06, ge=0, le=0.3, description="random shift/scale of the face box (a face "
                                                              "detector's imprecision), fraction of its size")
    paired: bool = Field(True, description="each face appears twice in a batch, unedited and edited: hard "
                                           "negatives whose captions differ only in the edits")
    edit_prob: float = Field(0.5, ge=0, le=1, description="unpaired: probability that an image gets local edits")
    max_edits: int = Field(2, ge=1, le=4, description="at most this many local edits per edited image")
    edit_places: bool = Field(False, description="captions say where each edit is ('on the upper left'); off, "
                                                 "they only name it, which a short pretraining learns faster")
    degrade_prob: float = Field(0.2, ge=0, le=1, description="probability of each global degradation "
                                                             "(blur, grain, tint, exposure)")
    jpeg_strong_prob: float = Field(0.25, ge=0, le=1, description="probability of strong JPEG compression "
                                                                  "(named in the caption)")
    label_edits: bool = Field(True, description="captions of edited images say 'a fake face', others "
                                                "'a real face' (a generic notion of editing, as web "
                                                "captions give CLIP)")


class PretrainModel(BaseModel):
    """Shape of the small :class:`~transformers.CLIPModel` (the tokenizer is built from the captions)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    image_size: int = Field(96, ge=16, description="input side in pixels")
    patch_size: int = Field(12, ge=2, description="ViT patch side in pixels")
    vision_width: int = Field(96, ge=8)
    vision_layers: int = Field(4, ge=1)
    vision_heads: int = Field(4, ge=1)
    text_width: int = Field(64, ge=8)
    text_layers: int = Field(2, ge=1)
    text_heads: int = Field(4, ge=1)
    projection_dim: int = Field(64, ge=4)
    max_text_len: int = Field(64, ge=16, description="text positions (captions are truncated to it)")

    @model_validator(mode="after")
    def _shapes(self) -> PretrainModel:
        if self.image_size % self.patch_size:
            raise ValueError(f"image_size {self.image_size} is not a multiple of patch_size {self.patch_size}")
        for tower in ("vision", "text"):
            width, heads = getattr(self, f"{tower}_width"), getattr(self, f"{tower}_heads")
            if width % heads:
                raise ValueError(f"{tower}_width {width} is not a multiple of {tower}_heads {heads}")
        return self


class PretrainTrain(BaseModel):
    """The contrastive optimisation (AdamW, linear warm-up then cosine decay)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    steps: int = Field(600, ge=1)
    batch_size: int = Field(64, ge=2, description="image-caption pairs per step (the contrastive negatives)")
    lr: float = Field(2e-3, gt=0)
    warmup_steps: int = Field(30, ge=0)
    weight_decay: float = Field(0.1, ge=0)
    seed: int = Field(0, ge=0, description="everything (identities, poses, edits, init, order) follows from it")
    log_every: int = Field(50, ge=1)
    eval_batches: int = Field(2, ge=0, description="held-out batches for the retrieval accuracy in the log")
    authenticity_weight: float = Field(
        0.0, ge=0, description="weight of the zero-shot 'a photo of a real/fake face' loss on edited vs plain "
        "images (CLIP's own similarity logits; 0 = contrastive only)")


class PretrainConfig(BaseModel):
    """Everything that determines the pretrained backbone (with the crossfake and library versions)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field("clip-synth-tiny", min_length=1, description="the backbone's name in its README")
    data: PretrainData = PretrainData()
    model: PretrainModel = PretrainModel()
    train: PretrainTrain = PretrainTrain()

    @model_validator(mode="after")
    def _crop_covers_input(self) -> PretrainConfig:
        if self.data.crop_size < self.model.image_size:
            raise ValueError(f"data.crop_size {self.data.crop_size} is smaller than model.image_size "
                             f"{self.model.image_size}: crops would be upsampled")
        return self

    @classmethod
    def from_yaml(cls, path: str | Path | None = None, overrides: Iterable[str] = ()) -> PretrainConfig:
        """Read a YAML file (default: the shipped recipe) and apply dotted ``overrides`` (``train.steps=5``)."""
        path = resolve_shipped("pretrain", path or DEFAULT_PRETRAIN_CONFIG, "pretraining config")
        return cls.parse(read_yaml(path) or {}, str(path), overrides)

    @classmethod
    def parse(cls, data: dict[str, Any], where: str = "pretraining config",
              overrides: Iterable[str] = ()) -> PretrainConfig:
        """Validate a mapping (after dotted ``overrides``); errors name the offending keys."""
        return validate_config(cls, data, where, overrides, expected="data:, model:, train:")

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)

