"""CLIP backbones from transformers, by hub id or local folder, plus a tiny random one for tests.

A backbone spec is one of:

- ``"openai/clip-vit-base-patch32"`` or ``"hf-hub:openai/clip-vit-base-patch32"``: a Hugging Face hub id,
  read from the local cache first; with ``HF_HUB_OFFLINE=1`` nothing is downloaded.
- ``"local-dir:/models/clip"`` or an existing folder: a ``save_pretrained`` directory.
- ``"tiny"``: a small randomly initialised :class:`~transformers.CLIPModel` with a tokenizer and image
  processor built offline — the same classes as the real model, for tests and quick tries.
- ``"synth-tiny"``: a small CLIP of the same classes *pretrained* by crossfake on captioned synthetic faces
  (:mod:`crossfake.models.pretrain`), bundled in the package (``assets/clip-synth-tiny``, ~3 MB) so the
  demo's detectors start from meaningful features offline. Rebuilt by ``make tiny-backbone``.

Image preprocessing (input size, mean, std) always comes from the checkpoint's own processor config
(:class:`ImagePreprocess`), never from hand-set numbers.

For parameter counts without weights, :func:`build_clip` with ``weights=False`` builds the architecture
on the meta device from the checkpoint's config, or from the known shapes of the OpenAI checkpoints when
the config is not on disk either.
"""

from __future__ import annotations

import json
import string
import tempfile
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path

import torch

from crossfake.utils.errors import CrossfakeError
from crossfake.utils.logging import get_logger

log = get_logger("backbones.clip")

DEFAULT_CLIP = "openai/clip-vit-base-patch32"
TINY = "tiny"
#: The bundled pretrained small CLIP (``assets/<BUNDLED_CLIP_DIR>`` in the package).
SYNTH_TINY = "synth-tiny"
BUNDLED_CLIP_DIR = "clip-synth-tiny"

# Shapes of the public OpenAI checkpoints (their config.json), so `crossfake params` works offline.
_KNOWN_SHAPES: dict[str, dict] = {
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
_ALIASES = {
    "ViT-B/32": "openai/clip-vit-base-patch32",
    "ViT-B/16": "openai/clip-vit-base-patch16",
    "ViT-L/14": "openai/clip-vit-large-patch14",
}
_TINY_SHAPE = {
    "projection_dim": 32,
    "text_config": {"hidden_size": 32, "intermediate_size": 64, "num_attention_heads": 2, "num_hidden_layers": 2,
                    "max_position_embeddings": 32},
    "vision_config": {"hidden_size": 48, "intermediate_size": 96, "num_attention_heads": 2, "num_hidden_layers": 2,
                      "patch_size": 8, "image_size": 64},
}


@dataclass(frozen=True)
class ImagePreprocess:
    """How a checkpoint expects its input: resize the short side, centre-crop, normalise."""

    resize: int
    crop: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str = "bicubic"

    @classmethod
    def from_processor(cls, processor) -> ImagePreprocess:
        size = processor.size
        resize = size.get("shortest_edge") or min(size.get("height", 0), size.get("width", 0))
        crop = processor.crop_size
        crop_px = min(crop["height"], crop["width"]) if processor.do_center_crop else resize
        # PIL resample codes: 2 = bilinear, 3 = bicubic (CLIP's).
        interp = {2: "bilinear", 3: "bicubic"}.get(int(getattr(processor, "resample", 3)), "bicubic")
        return cls(int(resize), int(crop_px), tuple(processor.image_mean), tuple(processor.image_std), interp)

    def to_dict(self) -> dict:
        return asdict(self)

    def transform(self):
        """A torchvision transform: PIL RGB image -> normalised float tensor (3, crop, crop)."""
        from torchvision.transforms import v2

        mode = getattr(v2.InterpolationMode, self.interpolation.upper())
        return v2.Compose([
            v2.ToImage(),
            v2.Resize(self.resize, interpolation=mode, antialias=True),
            v2.CenterCrop(self.crop),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(self.mean, self.std),
        ])


@dataclass
class ClipBundle:
    """A loaded CLIP: the model, its tokenizer (for text-side methods) and its preprocessing."""

    model: torch.nn.Module
    tokenizer: object | None
    preprocess: ImagePreprocess
    spec: str
    source: str  # "hub", "local-dir", "bundled", "tiny" or "shape"


def canonical_name(spec: str) -> str:
    spec = _ALIASES.get(spec, spec)
    return spec[len("hf-hub:"):] if spec.startswith("hf-hub:") else spec


def bundled_clip_dir(check: bool = True) -> Path:
    """The folder of the bundled ``synth-tiny`` backbone inside the installed package."""
    path = Path(str(resources.files("crossfake") / "assets" / BUNDLED_CLIP_DIR))
    if check and not (path / "model.safetensors").is_file():
        raise CrossfakeError(f"the bundled {SYNTH_TINY!r} backbone is missing from {path}; rebuild it with "
                             "`make tiny-backbone` (python -m crossfake.models.pretrain)")
    return path


def _local_dir(spec: str) -> Path | None:
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


def build_clip(spec: str = DEFAULT_CLIP, weights: bool = True, cache_dir: str | None = None) -> ClipBundle:
    """Load (or, with ``weights=False``, shape on the meta device) the CLIP named by ``spec``.

    Args:
        spec: hub id, ``hf-hub:`` / ``local-dir:`` prefixed name, alias (``ViT-B/32``), ``tiny`` or
            ``synth-tiny`` (the bundled pretrained small CLIP).
        weights: load the weights; ``False`` builds the architecture on the meta device (no memory, no
            download) for parameter counting.
        cache_dir: the Hugging Face cache folder (default: the hub's own).
    """
    from transformers import CLIPModel

    if spec == TINY:
        return _tiny_clip()
    local = _local_dir(spec)
    name = str(local) if local else canonical_name(spec)
    if not weights:
        config = _config_for(name, local, cache_dir)
        with torch.device("meta"):
            model = CLIPModel(config)
        preprocess = ImagePreprocess(224, 224, (0.48145466, 0.4578275, 0.40821073),
                                     (0.26862954, 0.26130258, 0.27577711))
        return ClipBundle(model, None, preprocess, spec, "shape")
    from transformers import CLIPImageProcessor, CLIPTokenizer

    kwargs = {"cache_dir": cache_dir}
    try:
        model = CLIPModel.from_pretrained(name, **kwargs)
        processor = CLIPImageProcessor.from_pretrained(name, **kwargs)
        tokenizer = CLIPTokenizer.from_pretrained(name, **kwargs)
    except OSError as e:
        hint = (
            "put a `save_pretrained` copy in a folder and pass local-dir:/that/folder"
            if local else
            f"download it once where the hub is reachable (`hf download {name}`) and run with "
            f"HF_HUB_OFFLINE=1, or pass local-dir:/path/to/a/copy"
        )
        raise CrossfakeError(f"cannot load CLIP weights {name!r}: {e.__class__.__name__}: "
                             f"{str(e).splitlines()[0]}. To fix: {hint}") from e
    source = "bundled" if spec == SYNTH_TINY else "local-dir" if local else "hub"
    return ClipBundle(model, tokenizer, ImagePreprocess.from_processor(processor), spec, source)


def _config_for(name: str, local: Path | None, cache_dir: str | None):
    from transformers import CLIPConfig

    if name in _KNOWN_SHAPES:
        return CLIPConfig(**_KNOWN_SHAPES[name])
    try:
        return CLIPConfig.from_pretrained(name, cache_dir=cache_dir)
    except OSError as e:
        raise CrossfakeError(
            f"no config for {name!r} on disk and it is not one of the known shapes "
            f"({', '.join(_KNOWN_SHAPES)}): {str(e).splitlines()[0]}"
        ) from e


def _tiny_tokenizer():
    """A CLIP tokenizer with a 100-token vocabulary, built offline from characters and a few words."""
    from transformers import CLIPTokenizer

    chars = list(string.ascii_lowercase + string.digits + ".,!?-'")
    vocab = {c: i for i, c in enumerate(chars)}
    vocab.update({c + "</w>": len(chars) + i for i, c in enumerate(chars)})
    merges = ["#version: 0.2"]
    for word in ("real", "fake", "face", "photo", "the", "this", "manipulated", "pristine"):
        cur = word[0]
        for ch in word[1:-1]:
            merges.append(f"{cur} {ch}")
            cur += ch
            vocab.setdefault(cur, len(vocab))
        merges.append(f"{cur} {word[-1]}</w>")
        vocab.setdefault(word + "</w>", len(vocab))
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    # CLIPTokenizer(vocab_file=...) ignores the files in transformers 5; from_pretrained(dir) reads them.
    with tempfile.TemporaryDirectory() as d:
        Path(d, "vocab.json").write_text(json.dumps(vocab))
        Path(d, "merges.txt").write_text("\n".join(merges) + "\n")
        return CLIPTokenizer.from_pretrained(d)


def _tiny_clip() -> ClipBundle:
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    tokenizer = _tiny_tokenizer()
    shape = json.loads(json.dumps(_TINY_SHAPE))
    shape["text_config"].update(vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id,
                                eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    # Seeded so two builds of "tiny" are the same model (tests compare scores across processes).
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = CLIPModel(CLIPConfig(**shape))
    size = shape["vision_config"]["image_size"]
    processor = CLIPImageProcessor(size={"shortest_edge": size}, crop_size={"height": size, "width": size})
    return ClipBundle(model.eval(), tokenizer, ImagePreprocess.from_processor(processor), TINY, "tiny")


