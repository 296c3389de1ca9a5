"""Foundation models the detectors are built on (``backbones``: CLIP, later Qwen2.5-VL)."""
