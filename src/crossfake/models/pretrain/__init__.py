"""Pretraining of the small CLIP backbone bundled for the demo (``method.backbone: synth-tiny``).

Randomly initialised backbones leave every detector near chance, which teaches nothing. Where OpenAI's
CLIP cannot be downloaded, crossfake ships a small CLIP of the same ``transformers`` classes that it
pretrains itself, contrastively, on captioned synthetic faces (:mod:`.data`), with the recipe committed
beside the weights (:mod:`.config`, ``configs/pretrain/clip-synth-tiny.yaml``) and one command to rebuild
it (:mod:`.train`)::

    python -m crossfake.models.pretrain --out src/crossfake/assets/clip-synth-tiny   # = make tiny-backbone
"""

from crossfake.models.pretrain.config import PretrainConfig
from crossfake.models.pretrain.data import FaceCaptionStream, build_tokenizer
from crossfake.models.pretrain.train import PretrainResult, pretrain, save_backbone

__all__ = ["FaceCaptionStream", "PretrainConfig", "PretrainResult", "build_tokenizer", "pretrain",
           "save_backbone"]
