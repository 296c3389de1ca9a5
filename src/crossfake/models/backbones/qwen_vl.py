"""Qwen2.5-VL backbones from transformers, by hub id or local folder, plus a tiny random one for tests.

Specs work as for CLIP (:mod:`crossfake.models.backbones.clip`): a hub id (default
``Qwen/Qwen2.5-VL-7B-Instruct``, read from the local cache first, nothing downloaded with
``HF_HUB_OFFLINE=1``), ``local-dir:PATH`` or an existing folder, or ``"tiny"``: a two-layer
:class:`~transformers.Qwen2_5_VLForConditionalGeneration` with a byte-level BPE tokenizer trained offline
by the ``tokenizers`` library (carrying Qwen's chat and vision special tokens) and the stock Qwen2.5-VL
processor — the same classes as the real model.

``build_qwen_vl(..., weights=False)`` builds the real architecture on the meta device (no memory, no
download) for parameter counts, from the checkpoint's config or the known shapes of the public models.
``quantize="nf4"`` loads the base in 4-bit NF4 through bitsandbytes (QLoRA); it runs on the CPU too.
"""

from __future__ import annotations

import copy
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch

from crossfake.models.backbones.spec import (
    QWEN_VL_SHAPES,
    TINY,
    TINY_QWEN_VL_SHAPE,
    canonical_name,
    local_dir,
)
from crossfake.utils.errors import CrossfakeError
from crossfake.utils.logging import get_logger

log = get_logger("backbones.qwen_vl")

DEFAULT_QWEN_VL = "Qwen/Qwen2.5-VL-7B-Instruct"

SPECIAL_TOKENS = (
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|image_pad|>",
    "<|video_pad|>",
)

# Text the tiny tokenizer is trained on: enough to spell the prompts and answers in few tokens.
_TINY_CORPUS = (
    "You are a world-class digital forensics expert. Analyse the image for signs of manipulation. "
    "<answer><verdict>real</verdict><verdict>fake</verdict><confidence>0.9</confidence>"
    "<artifacts></artifacts><reasoning></reasoning></answer> "
    "Please classify the following image as real or fake. The class of this image is real. "
    "The class of this image is fake. system user assistant 0123456789 .,:;!?'\"()[]{}<>/\\-_=+*#%&@\n"
)

# A minimal Qwen-style chat template (the real checkpoints ship their own in the processor config).
TINY_CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for c in message['content'] %}{% if c['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% else %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


@dataclass
class QwenVLBundle:
    """A loaded Qwen2.5-VL: the model and its processor (tokenizer + image processor + chat template)."""

    model: torch.nn.Module
    processor: object | None
    spec: str
    origin: str  # where the weights came from: "hub", "local-dir", "tiny" or "shape"


def _bnb_config(compute_dtype: torch.dtype):
    try:
        import bitsandbytes  # noqa: F401
        from transformers import BitsAndBytesConfig
    except ImportError as e:
        raise CrossfakeError(
            "4-bit loading needs bitsandbytes: pip install 'crossfake[vlm]'"
        ) from e
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                              bnb_4bit_compute_dtype=compute_dtype)


def build_qwen_vl(
    spec: str = DEFAULT_QWEN_VL,
    weights: bool = True,
    quantize: Literal["nf4"] | None = None,
    dtype: torch.dtype | None = None,
    cache_dir: str | None = None,
) -> QwenVLBundle:
    """Load (or, with ``weights=False``, shape on the meta device) the Qwen2.5-VL named by ``spec``.

    Args:
        spec: hub id, ``hf-hub:`` / ``local-dir:`` name, or ``tiny``.
        weights: load weights; ``False`` builds the architecture on the meta device.
        quantize: ``"nf4"`` loads the language and vision linear layers in 4-bit (bitsandbytes).
        dtype: weight dtype; default bf16 on a GPU, fp32 on the CPU (bf16 is ~7x slower on CPUs without it).
        cache_dir: the Hugging Face cache folder.
    """
    from transformers import AutoProcessor, Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    dtype = dtype or (torch.bfloat16 if torch.cuda.is_available() else torch.float32)
    if spec == TINY:
        return _tiny_qwen_vl(quantize, dtype)
    local = local_dir(spec)
    name = str(local) if local else canonical_name(spec)
    if not weights:
        if name in QWEN_VL_SHAPES:
            config = Qwen2_5_VLConfig(**copy.deepcopy(QWEN_VL_SHAPES[name]))
        else:
            try:
                config = Qwen2_5_VLConfig.from_pretrained(name, cache_dir=cache_dir)
            except OSError as e:
                raise CrossfakeError(
                    f"no config for {name!r} on disk and it is not a known shape ({', '.join(QWEN_VL_SHAPES)})"
                ) from e
        with torch.device("meta"):
            model = Qwen2_5_VLForConditionalGeneration(config)
        return QwenVLBundle(model, None, spec, "shape")
    kwargs: dict = {"cache_dir": cache_dir, "dtype": dtype}
    if quantize == "nf4":
        kwargs["quantization_config"] = _bnb_config(dtype)
    try:
        model = Qwen2_5_VLForConditionalGeneration.from_pretrained(name, **kwargs)
        _keep_cpu_4bit_format(model)
        processor = AutoProcessor.from_pretrained(name, cache_dir=cache_dir)
    except OSError as e:
        hint = (
            "put a `save_pretrained` copy of model and processor in that folder"
            if local else
            f"download it once where the hub is reachable (`hf download {name}`) and run with "
            "HF_HUB_OFFLINE=1, or pass local-dir:/path/to/a/copy"
        )
        raise CrossfakeError(f"cannot load Qwen2.5-VL {name!r}: {str(e).splitlines()[0]}. To fix: {hint}") from e
    return QwenVLBundle(model.eval(), processor, spec, "local-dir" if local else "hub")


def _keep_cpu_4bit_format(model: torch.nn.Module) -> None:
    """Stop bitsandbytes from repacking 4-bit weights for its AVX512-bf16 CPU inference kernel.

    bitsandbytes 0.50 repacks a ``Linear4bit`` weight in place the first time it runs under ``no_grad`` in
    eval mode on such a CPU; the repacking needs ``in_features`` divisible by the 64-element quantization
    block (the 7B's vision ``down_proj`` has 3420, the tiny model's vision tower 32) and fails otherwise.
    Keeping the generic 4-bit kernel also keeps one weight format for training and scoring. No effect on GPUs.
    """
    for module in model.modules():
        if hasattr(module, "support_avx512bf16_for_cpu"):
            module.support_avx512bf16_for_cpu = False



def tiny_processor():
    """The stock Qwen2.5-VL processor around an offline-trained tiny tokenizer (small images: 28-56 px)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import (
        Qwen2_5_VLProcessor,
        Qwen2TokenizerFast,
        Qwen2VLImageProcessor,
        Qwen2VLVideoProcessor,
    )

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=512, special_tokens=list(SPECIAL_TOKENS),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator([_TINY_CORPUS] * 4, trainer)
    tokenizer = Qwen2TokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    # 28 px = one merged 2x2 patch of 14 px; a 64 px crop becomes 2x2 merged tokens, which keeps tests fast.
    image_processor = Qwen2VLImageProcessor(min_pixels=28 * 28, max_pixels=56 * 56)
    return Qwen2_5_VLProcessor(image_processor=image_processor, tokenizer=tokenizer,
                               video_processor=Qwen2VLVideoProcessor(), chat_template=TINY_CHAT_TEMPLATE)


def _tiny_qwen_vl(quantize: str | None, dtype: torch.dtype) -> QwenVLBundle:
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    processor = tiny_processor()
    tokenizer = processor.tokenizer
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    shape = copy.deepcopy(TINY_QWEN_VL_SHAPE)
    shape["text_config"].update(vocab_size=len(tokenizer), bos_token_id=ids["<|endoftext|>"],
                                eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"])
    config = Qwen2_5_VLConfig(
        **shape, image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
        bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"],
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)  # two builds of "tiny" are the same model
        model = Qwen2_5_VLForConditionalGeneration(config)
    if quantize == "nf4":
        # Quantisation happens at load time in transformers, so round-trip through a temporary folder.
        with tempfile.TemporaryDirectory() as d:
            model.save_pretrained(d)
            model = Qwen2_5_VLForConditionalGeneration.from_pretrained(
                d, quantization_config=_bnb_config(dtype), dtype=dtype
            )
        _keep_cpu_4bit_format(model)
    else:
        model = model.to(dtype)
    return QwenVLBundle(model.eval(), processor, TINY, "tiny")


def save_tiny(path: str | Path) -> Path:
    """Write the tiny model and processor as a ``save_pretrained`` folder (to test local-dir loading)."""
    bundle = _tiny_qwen_vl(None, torch.float32)
    path = Path(path)
    bundle.model.save_pretrained(path)
    bundle.processor.save_pretrained(path)
    return path
