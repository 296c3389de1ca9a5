"""Qwen2.5-VL's real tokenizer, processor and a tiny model on its vocabulary, built offline for tests.

The tiny test model's tokenizer is trained here (:func:`crossfake.models.backbones.qwen_vl.tiny_processor`),
so it cannot show whether the verdict scoring and the prompts work with the vocabulary Qwen2.5-VL really
uses. That vocabulary ships in the ``dashscope`` wheel as ``dashscope/resources/qwen.tiktoken``: 151,643
byte-level BPE tokens, one ``base64(token bytes) rank`` per line, the rank being the token id (the same
151,643 regular tokens as Qwen2/Qwen2.5(-VL)'s ``vocab.json``). The file is found through the import system
without importing ``dashscope`` (so its import-time side effects never run).

What the build adds to the ranks:

- the merges: byte-level BPE needs them and ``qwen.tiktoken`` has only ranks. The merge of the token of rank
  ``r`` is the last step of BPE on its own bytes with the tokens of rank < ``r``: the split of its bytes into
  two lower-ranked tokens that BPE produces (one merge per multi-byte token, 151,387, the size of
  Qwen2's ``merges.txt``). :func:`bpe_merges` derives them; a test checks the result against ``tiktoken``.
- the pipeline of transformers' ``Qwen2TokenizerFast`` (NFC, Qwen2's pre-tokenizer regex, byte-level
  pre-tokenizer and decoder): transformers 5 loads the real checkpoint's ``tokenizer.json`` into that class
  the same way, from its vocabulary and merges.
- the 22 added tokens of Qwen2.5-VL, with their published ids (:data:`ADDED_TOKENS`), and Qwen2.5-VL's chat
  template (:data:`QWEN25_VL_CHAT_TEMPLATE`).

Building takes a few seconds (:func:`qwen_tokenizer` caches it for the process); ``None`` paths mean
``dashscope`` is not installed and the tests skip.
"""

from __future__ import annotations

import base64
import copy
import functools
import importlib.util
from pathlib import Path

import torch

VOCAB_SIZE = 151_643  # regular (BPE) tokens in qwen.tiktoken; ids 0 .. 151,642
MODEL_VOCAB_SIZE = 151_936  # rows of Qwen2.5-VL-3B's embedding (the 7B pads to 152,064): unused ids included

# Qwen2.5-VL's added tokens: id -> (content, special). 151643-151656 as published in Qwen2-VL's
# added_tokens.json (https://huggingface.co/Qwen/Qwen2-VL-7B-Instruct-GPTQ-Int4/blob/main/added_tokens.json),
# the ids Qwen2.5-VL shares; 151657-151664 (tool and FIM tokens, not special) from Qwen2.5-7B-Instruct's
# added_tokens.json: not confirmed against Qwen2.5-VL's own tokenizer_config.json, which was not at hand.
ADDED_TOKENS: dict[int, tuple[str, bool]] = {
    151643: ("<|endoftext|>", True),
    151644: ("<|im_start|>", True),
    151645: ("<|im_end|>", True),
    151646: ("<|object_ref_start|>", True),
    151647: ("<|object_ref_end|>", True),
    151648: ("<|box_start|>", True),
    151649: ("<|box_end|>", True),
    151650: ("<|quad_start|>", True),
    151651: ("<|quad_end|>", True),
    151652: ("<|vision_start|>", True),
    151653: ("<|vision_end|>", True),
    151654: ("<|vision_pad|>", True),
    151655: ("<|image_pad|>", True),
    151656: ("<|video_pad|>", True),
    151657: ("<tool_call>", False),
    151658: ("</tool_call>", False),
    151659: ("<|fim_prefix|>", False),
    151660: ("<|fim_middle|>", False),
    151661: ("<|fim_suffix|>", False),
    151662: ("<|fim_pad|>", False),
    151663: ("<|repo_name|>", False),
    151664: ("<|file_sep|>", False),
}
ID = {content: i for i, (content, _) in ADDED_TOKENS.items()}

# Qwen2.5-VL-7B-Instruct's chat_template.json, verbatim (the same text is mirrored at
# https://huggingface.co/optimum-intel-internal-testing/tiny-random-qwen2.5-vl/blob/main/chat_template.json).
# Unlike crossfake's tiny template it adds the default system turn when the chat has none.
QWEN25_VL_CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}{{ message['content'] }}"
    "<|im_end|>\n{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def qwen_tiktoken_path() -> Path | None:
    """``qwen.tiktoken`` of the installed ``dashscope`` wheel (found without importing it), or None."""
    spec = importlib.util.find_spec("dashscope")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / "resources" / "qwen.tiktoken"
        if path.is_file():
            return path
    return None


@functools.cache
def load_ranks(path: Path) -> dict[bytes, int]:
    """``{token bytes: rank}`` from a tiktoken file (``base64 rank`` per line)."""
    with open(path, "rb") as f:
        lines = f.read().splitlines()
    return {base64.b64decode(token): int(rank) for token, rank in (line.split() for line in lines)}


def bpe_merges(ranks: dict[bytes, int]) -> list[tuple[bytes, bytes]]:
    """One merge per multi-byte token, in rank order: the two lower-ranked tokens BPE joins into it last.

    A token with one split into two lower-ranked tokens has that merge; for the others (45% of them) BPE is
    run on the token's bytes with only the lower ranks allowed (lowest-ranked adjacent pair first, leftmost on
    ties, as tiktoken does) until two parts remain.

    Raises:
        ValueError: a token that BPE cannot reach from its bytes (not a BPE vocabulary).
    """
    inf = len(ranks)
    get = ranks.get

    def last_split(token: bytes, rank: int) -> tuple[bytes, bytes] | None:
        parts = [token[i : i + 1] for i in range(len(token))]
        pair_ranks = [get(a + b, inf) for a, b in zip(parts, parts[1:], strict=False)]
        while len(parts) > 2:
            best = min(pair_ranks)
            if best >= rank:
                return None
            i = pair_ranks.index(best)
            parts[i : i + 2] = [parts[i] + parts[i + 1]]
            del pair_ranks[i]
            if i > 0:
                pair_ranks[i - 1] = get(parts[i - 1] + parts[i], inf)
            if i < len(pair_ranks):
                pair_ranks[i] = get(parts[i] + parts[i + 1], inf)
        return parts[0], parts[1]

    merges: list[tuple[bytes, bytes] | None] = [None] * len(ranks)
    for token, rank in ranks.items():
        if len(token) == 1:
            continue
        splits = [i for i in range(1, len(token)) if max(get(token[:i], inf), get(token[i:], inf)) < rank]
        merge = (token[: splits[0]], token[splits[0] :]) if len(splits) == 1 else last_split(token, rank)
        if merge is None or get(merge[0], inf) >= rank or get(merge[1], inf) >= rank:
            raise ValueError(f"token {token!r} (rank {rank}) is not reachable by BPE from lower ranks")
        merges[rank] = merge
    return [m for m in merges if m is not None]


@functools.cache
def qwen_merges(path: Path) -> list[tuple[bytes, bytes]]:
    """:func:`bpe_merges` of the tiktoken file at ``path`` (cached: ~4 s)."""
    return bpe_merges(load_ranks(path))


@functools.cache
def qwen_tokenizer(path: Path):
    """Qwen2.5-VL's tokenizer (a ``Qwen2TokenizerFast``) from ``qwen.tiktoken`` at ``path``."""
    from tokenizers import AddedToken
    from transformers import Qwen2TokenizerFast
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    ranks = load_ranks(path)
    table = bytes_to_unicode()  # {byte: the character byte-level BPE spells it with}, a str.translate table

    def text(token: bytes) -> str:
        return token.decode("latin-1").translate(table)

    vocab = {text(token): rank for token, rank in ranks.items()}
    merges = [(text(a), text(b)) for a, b in qwen_merges(path)]
    added = {i: AddedToken(content, special=special, normalized=False)
             for i, (content, special) in ADDED_TOKENS.items()}
    # Qwen2.5-VL's tokenizer_config.json: eos <|im_end|>, pad <|endoftext|>, no bos and no unk token.
    tokenizer = Qwen2TokenizerFast(
        vocab=vocab, merges=merges, eos_token="<|im_end|>", pad_token="<|endoftext|>", unk_token=None,
        bos_token=None, added_tokens_decoder=added, errors="replace", model_max_length=131072,
        extra_special_tokens=[content for content, special in ADDED_TOKENS.values() if special][1:],
    )
    tokenizer.chat_template = QWEN25_VL_CHAT_TEMPLATE
    return tokenizer


def qwen_processor(tokenizer):
    """The stock Qwen2.5-VL processor around ``tokenizer``, with the real chat template and small images.

    The image processor is the real one (14 px patches, 2x2 merge) bounded to 28-56 px, as for crossfake's
    tiny model, so that a test image becomes at most 4 ``<|image_pad|>`` tokens.
    """
    from transformers import Qwen2_5_VLProcessor, Qwen2VLImageProcessor, Qwen2VLVideoProcessor

    image_processor = Qwen2VLImageProcessor(min_pixels=28 * 28, max_pixels=56 * 56)
    return Qwen2_5_VLProcessor(image_processor=image_processor, tokenizer=tokenizer,
                               video_processor=Qwen2VLVideoProcessor(), chat_template=QWEN25_VL_CHAT_TEMPLATE)


def tiny_model_on_qwen_vocab():
    """crossfake's tiny two-layer Qwen2.5-VL shape with the real vocabulary size and special-token ids.

    Random weights (seed 0); 2 x 151,936 x 64 embedding/head weights make it ~80 MB in fp32.
    """
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    from crossfake.models.backbones.spec import TINY_QWEN_VL_SHAPE

    shape = copy.deepcopy(TINY_QWEN_VL_SHAPE)
    end, pad = ID["<|im_end|>"], ID["<|endoftext|>"]
    tokens = {"bos_token_id": pad, "eos_token_id": end, "pad_token_id": pad}
    shape["text_config"].update(vocab_size=MODEL_VOCAB_SIZE, tie_word_embeddings=False, **tokens)
    config = Qwen2_5_VLConfig(
        **shape, image_token_id=ID["<|image_pad|>"], video_token_id=ID["<|video_pad|>"],
        vision_start_token_id=ID["<|vision_start|>"], vision_end_token_id=ID["<|vision_end|>"], **tokens,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = Qwen2_5_VLForConditionalGeneration(config)
    return model.float().eval()
