"""Foundation models the detectors are built on.

- ``backbones``: CLIP and Qwen2.5-VL from transformers, by hub id or local folder (``spec`` says how a
  string names a model), plus tiny random ones of the same classes for tests.
- ``pretrain``: how the bundled ``synth-tiny`` CLIP is pretrained on captioned synthetic faces.

Nothing here knows about deepfakes: methods (:mod:`crossfake.methods`) put heads and adapters on these.
"""
