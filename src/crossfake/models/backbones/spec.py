"""Backbone specs: how a string names a model, and the shapes known without a download.

A backbone spec is one of:

- ``"openai/clip-vit-base-patch32"`` or ``"hf-hub:openai/clip-vit-base-patch32"``: a Hugging Face hub id,
  read from the local cache first; with ``HF_HUB_OFFLINE=1`` nothing is downloaded. Aliases such as
  ``ViT-B/32`` name the OpenAI checkpoints.
- ``"local-dir:/models/clip"`` or an existing folder: a ``save_pretrained`` directory.
- ``"tiny"``: a small randomly initialised model of the real classes, built offline (tests, quick tries).
- ``"synth-tiny"``: the small CLIP crossfake pretrains on captioned synthetic faces, bundled in the
  package (``assets/clip-synth-tiny``).

Every backbone family (:mod:`~crossfake.models.backbones.clip`, :mod:`~crossfake.models.backbones.qwen_vl`)
resolves specs here, so a spec means the same thing to all of them. The known shapes let ``crossfake
params`` and the benchmarks build the real architectures on the meta device with no config on disk.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from crossfake.utils.errors import CrossfakeError

TINY = "tiny"
#: The bundled pretrained small CLIP (``assets/<BUNDLED_CLIP_DIR>`` in the package).
SYNTH_TINY = "synth-tiny"
BUNDLED_CLIP_DIR = "clip-synth-tiny"

#: Shapes of the public OpenAI CLIP checkpoints (their config.json), so `crossfake params` works offline.
CLIP_SHAPES: dict[str, dict] = {
    "openai/clip-vit-base-patch32": {
        "projection_dim": 512,
        "text_config": {"hidden_size": 512, "intermediate_size": 2048, "num_attention_heads": 8,
                        "num_hidden_layers": 12},
        "vision_config": {"hidden_size": 768, "intermediate_size": 3072, "num_attention_heads": 12,
                          "num_hidden_layers": 12, "patch_size": 32, "image_size": 224},
    },
    "openai/clip-vit-base-patch16": {
        "projection_dim": 512,
        "text_config": {"hidden_size": 512, "intermediate_size": 2048, "num_attention_heads": 8,
                        "num_hidden_layers": 12},
        "vision_config": {"hidden_size": 768, "intermediate_size": 3072, "num_attention_heads": 12,
                          "num_hidden_layers": 12, "patch_size": 16, "image_size": 224},
    },
    "openai/clip-vit-large-patch14": {
        "projection_dim": 768,
        "text_config": {"hidden_size": 768, "intermediate_size": 3072, "num_attention_heads": 12,
                        "num_hidden_layers": 12},
        "vision_config": {"hidden_size": 1024, "intermediate_size": 4096, "num_attention_heads": 16,
                          "num_hidden_layers": 24, "patch_size": 14, "image_size": 224},
    },
}
ALIASES = {
    "ViT-B/32": "openai/clip-vit-base-patch32",
    "ViT-B/16": "openai/clip-vit-base-patch16",
    "ViT-L/14": "openai/clip-vit-large-patch14",
}
#: The random-init ``tiny`` CLIP (tests, quick tries).
TINY_CLIP_SHAPE = {
    "projection_dim": 32,
    "text_config": {"hidden_size": 32, "intermediate_size": 64, "num_attention_heads": 2, "num_hidden_layers": 2,
                    "max_position_embeddings": 32},
    "vision_config": {"hidden_size": 48, "intermediate_size": 96, "num_attention_heads": 2, "num_hidden_layers": 2,
                      "patch_size": 8, "image_size": 64},
}

#: config.json of the public Qwen2.5-VL checkpoints (the fields that fix the shapes).
QWEN_VL_SHAPES: dict[str, dict] = {
    "Qwen/Qwen2.5-VL-7B-Instruct": {
        "text_config": {"hidden_size": 3584, "intermediate_size": 18944, "num_hidden_layers": 28,
                        "num_attention_heads": 28, "num_key_value_heads": 4, "vocab_size": 152064,
                        "tie_word_embeddings": False},
        "vision_config": {"depth": 32, "hidden_size": 1280, "intermediate_size": 3420, "num_heads": 16,
                          "out_hidden_size": 3584, "patch_size": 14, "spatial_merge_size": 2,
                          "temporal_patch_size": 2, "window_size": 112, "fullatt_block_indexes": [7, 15, 23, 31]},
    },
    "Qwen/Qwen2.5-VL-3B-Instruct": {
        "text_config": {"hidden_size": 2048, "intermediate_size": 11008, "num_hidden_layers": 36,
                        "num_attention_heads": 16, "num_key_value_heads": 2, "vocab_size": 151936,
                        "tie_word_embeddings": True},
        "vision_config": {"depth": 32, "hidden_size": 1280, "intermediate_size": 3420, "num_heads": 16,
                          "out_hidden_size": 2048, "patch_size": 14, "spatial_merge_size": 2,
                          "temporal_patch_size": 2, "window_size": 112, "fullatt_block_indexes": [7, 15, 23, 31]},
    },
}

#: The random-init ``tiny`` Qwen2.5-VL (tests).
TINY_QWEN_VL_SHAPE = {
    "text_config": {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
                    "num_key_value_heads": 2, "max_position_embeddings": 4096,
                    "rope_scaling": {"type": "mrope", "mrope_section": [2, 3, 3]}},
    "vision_config": {"depth": 2, "hidden_size": 32, "intermediate_size": 64, "num_heads": 2, "out_hidden_size": 64,
                      "patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2, "window_size": 56,
                      "fullatt_block_indexes": [1]},
}


def canonical_name(spec: str) -> str:
    """The hub id of a spec: aliases (``ViT-B/32``) resolved, ``hf-hub:`` stripped."""
    spec = ALIASES.get(spec, spec)
    return spec[len("hf-hub:"):] if spec.startswith("hf-hub:") else spec


def bundled_clip_dir(check: bool = True) -> Path:
    """The folder of the bundled ``synth-tiny`` backbone inside the installed package."""
    path = Path(str(resources.files("crossfake") / "assets" / BUNDLED_CLIP_DIR))
    if check and not (path / "model.safetensors").is_file():
        raise CrossfakeError(f"the bundled {SYNTH_TINY!r} backbone is missing from {path}; rebuild it with "
                             "`make tiny-backbone` (python -m crossfake.models.pretrain)")
    return path


def local_dir(spec: str) -> Path | None:
    """The folder a spec names (bundled, ``local-dir:``, an existing path), or ``None`` for a hub id.

    A spec that looks like a path but names no folder is an error, never a hub lookup.
    """
    if spec == SYNTH_TINY:
        return bundled_clip_dir()
    if spec.startswith("local-dir:"):
        path = Path(spec[len("local-dir:"):]).expanduser()
        if not path.is_dir():
            raise CrossfakeError(f"backbone folder {path} does not exist (from spec {spec!r})")
        return path
    path = Path(spec).expanduser()
    if path.is_dir():
        return path
    if spec.startswith(("/", "./", "../", "~")):
        # timm's lesson: never fall back to a hub id for something that looks like a path.
        raise CrossfakeError(f"backbone folder {path} does not exist")
    return None
