"""CLIP backbones from transformers, by hub id or local folder, plus a tiny random one for tests.

Specs (hub id, ``local-dir:``/folder, ``tiny``, the bundled pretrained ``synth-tiny``) are resolved by
:mod:`crossfake.models.backbones.spec`. ``synth-tiny`` is a small CLIP of the same classes *pretrained* by
crossfake on captioned synthetic faces (:mod:`crossfake.models.pretrain`, ~3 MB) so the demo's detectors
start from meaningful features offline; ``make tiny-backbone`` rebuilds it.

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
from pathlib import Path

import torch

from crossfake.models.backbones.spec import (
    CLIP_SHAPES,
    SYNTH_TINY,
    TINY,
    TINY_CLIP_SHAPE,
    canonical_name,
    local_dir,
)
from crossfake.utils.errors import CrossfakeError
from crossfake.utils.logging import get_logger

log = get_logger("backbones.clip")

DEFAULT_CLIP = "openai/clip-vit-base-patch32"


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
    origin: str  # where the weights came from: "hub", "local-dir", "bundled", "tiny" or "shape"


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
    local = local_dir(spec)
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
    origin = "bundled" if spec == SYNTH_TINY else "local-dir" if local else "hub"
    return ClipBundle(model, tokenizer, ImagePreprocess.from_processor(processor), spec, origin)


def _config_for(name: str, local: Path | None, cache_dir: str | None):
    from transformers import CLIPConfig

    if name in CLIP_SHAPES:
        return CLIPConfig(**CLIP_SHAPES[name])
    try:
        return CLIPConfig.from_pretrained(name, cache_dir=cache_dir)
    except OSError as e:
        raise CrossfakeError(
            f"no config for {name!r} on disk and it is not one of the known shapes "
            f"({', '.join(CLIP_SHAPES)}): {str(e).splitlines()[0]}"
        ) from e


def tiny_clip_tokenizer():
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

    tokenizer = tiny_clip_tokenizer()
    shape = json.loads(json.dumps(TINY_CLIP_SHAPE))
    shape["text_config"].update(vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id,
                                eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    # Seeded so two builds of "tiny" are the same model (tests compare scores across processes).
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = CLIPModel(CLIPConfig(**shape))
    size = shape["vision_config"]["image_size"]
    processor = CLIPImageProcessor(size={"shortest_edge": size}, crop_size={"height": size, "width": size})
    return ClipBundle(model.eval(), tokenizer, ImagePreprocess.from_processor(processor), TINY, "tiny")


