"""The verdict scoring and the shipped prompts with Qwen2.5-VL's real vocabulary (not the tiny trained one).

The tokenizer is built from ``qwen.tiktoken`` in the ``dashscope`` wheel plus Qwen2.5-VL's published added
tokens and chat template (``tests/qwen_vocab.py``); the tests skip when ``dashscope`` is not installed.
Checked: the tokenizer itself (ids, merges against tiktoken, round trips), the verdict-token ids scoring
picks, the token structure of each shipped prompt's chat, that the answer prefix ends exactly where the
verdict token starts, and one end-to-end scoring with a tiny random model on the real vocabulary.
"""

from __future__ import annotations

import random
import unicodedata

import numpy as np
import pytest
import torch
from PIL import Image
from qwen_vocab import (
    ADDED_TOKENS,
    ID,
    MODEL_VOCAB_SIZE,
    VOCAB_SIZE,
    load_ranks,
    qwen_merges,
    qwen_processor,
    qwen_tiktoken_path,
    qwen_tokenizer,
    tiny_model_on_qwen_vocab,
)

from crossfake.models.backbones.qwen_vl import QwenVLBundle
from crossfake.utils.errors import CrossfakeError
from crossfake.vlm.backends.local import LocalBackend
from crossfake.vlm.prompts import PromptTemplate, load_prompt, shipped_prompts
from crossfake.vlm.scoring import encode, verdict_logits, verdict_token_ids

VOCAB = qwen_tiktoken_path()
pytestmark = pytest.mark.skipif(
    VOCAB is None,
    reason="Qwen2.5-VL's vocabulary comes from the dashscope wheel (dashscope/resources/qwen.tiktoken): "
           "pip install dashscope==2.0.2",
)

# What scoring must pick for the shipped prompts (fake/real in the four forms that are one token for both).
FAKE_IDS = {"fake": 30570, " fake": 12418, "Fake": 52317, " Fake": 36965}
REAL_IDS = {"real": 7951, " real": 1931, "Real": 12768, " Real": 8800}
# Left out: REAL and " REAL" are single tokens, but FAKE and " FAKE" are two (FA + KE, ĠFA + KE).
UPPER = {"REAL": [24895], " REAL": [25272], "FAKE": [3627, 3390], " FAKE": [15008, 3390]}
SYSTEM, USER, ASSISTANT, NEWLINE = 8948, 872, 77091, 198
DEFAULT_SYSTEM = "You are a helpful assistant."  # the template adds it to a chat without a system turn

TEXTS = [
    "The class of this image is fake",
    "<answer><verdict>real</verdict><confidence>0.87</confidence><artifacts>2; 8</artifacts>"
    "<reasoning>Blending seam along the jaw.</reasoning></answer>",
    "  leading spaces, trailing ones \n\n\ttabs\r\nand CRLF  ",
    "Digits 1234567890 split one by one; 3.14159, 1e-5, 1,000,000.",
    "Café naïve résumé — “quotes” … ½ °C",
    "深度伪造检测：这张图片是真的还是假的？",
    "Emoji 🙂👍🏽 and symbols ∑∂√ ≠ ≤",
    "def f(x):\n    return {'a': [x, x ** 2]}  # code\n",
    "I'm sure it's real, they've said we'll see; THEY'LL SAY IT'S FAKE",
]


@pytest.fixture(scope="session")
def tokenizer():
    return qwen_tokenizer(VOCAB)


@pytest.fixture(scope="session")
def processor(tokenizer):
    return qwen_processor(tokenizer)


@pytest.fixture(scope="module")
def bundle(processor) -> QwenVLBundle:
    return QwenVLBundle(tiny_model_on_qwen_vocab(), processor, "tiny-on-qwen-vocab", "tiny")


def _ids(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def _images() -> list[Image.Image]:
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)) for h, w in ((28, 28), (56, 56))]


PROMPTS = pytest.mark.parametrize("name", ["forensic_xml_v1", "classify_v1"])
ALL_PROMPTS = pytest.mark.parametrize("name", shipped_prompts())  # any prompt added later is checked too
# The scored text's last tokens: the assistant turn's start and the trimmed answer prefix.
TAILS = {"forensic_xml_v1": [27, 9217, 1784, 423, 8477, 29],  # < answer >< ver dict >
         "classify_v1": [785, 536, 315, 419, 2168, 374]}  # The Ġclass Ġof Ġthis Ġimage Ġis


# -- the tokenizer ------------------------------------------------------------------------------------------


def test_vocabulary_and_added_tokens_have_the_published_ids(tokenizer) -> None:
    ranks = load_ranks(VOCAB)
    assert len(ranks) == VOCAB_SIZE and sorted(ranks.values()) == list(range(VOCAB_SIZE))
    assert len(tokenizer) == VOCAB_SIZE + len(ADDED_TOKENS) == 151_665
    for i, (content, special) in ADDED_TOKENS.items():
        assert tokenizer.convert_tokens_to_ids(content) == i and tokenizer.convert_ids_to_tokens(i) == content
        assert _ids(tokenizer, f"a{content}b") == [64, i, 65]  # never split, whatever surrounds it
        assert (i in tokenizer.all_special_ids) == special
    assert (tokenizer.eos_token_id, tokenizer.pad_token_id) == (ID["<|im_end|>"], ID["<|endoftext|>"])
    assert tokenizer.bos_token is None and tokenizer.unk_token is None
    for word, i in {**FAKE_IDS, **REAL_IDS, ">": 29, "<": 27, "answer": 9217, "><": 1784, " is": 374}.items():
        assert _ids(tokenizer, word) == [i] and tokenizer.decode([i]) == word


def test_merges_reproduce_tiktoken_on_the_same_ranks(tokenizer) -> None:
    """The merges derived from the ranks tokenise like tiktoken's BPE (which needs no merges)."""
    tiktoken = pytest.importorskip("tiktoken")  # a dependency of dashscope
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

    ranks = load_ranks(VOCAB)
    assert len(qwen_merges(VOCAB)) == VOCAB_SIZE - 256  # one per multi-byte token, as in Qwen2's merges.txt
    reference = tiktoken.Encoding("qwen", pat_str=PRETOKENIZE_REGEX, mergeable_ranks=ranks, special_tokens={})
    by_rank = {r: b for b, r in ranks.items()}
    rng = random.Random(0)
    # Texts made of random vocabulary tokens reach merges ordinary text seldom does (NFC: the tokenizer
    # normalises, tiktoken does not).
    noise = [b"".join(by_rank[rng.randrange(VOCAB_SIZE)] for _ in range(100)).decode("utf-8", "ignore")
             for _ in range(50)]
    prompts = [p.system or "" for p in map(load_prompt, shipped_prompts())] + [
        p.instruction for p in map(load_prompt, shipped_prompts())]
    for text in TEXTS + prompts + [unicodedata.normalize("NFC", t) for t in noise]:
        assert _ids(tokenizer, text) == reference.encode_ordinary(text), text[:60]


@pytest.mark.parametrize("text", TEXTS)
def test_encoding_round_trips(tokenizer, text: str) -> None:
    ids = _ids(tokenizer, text)
    assert tokenizer.decode(ids) == text
    assert tokenizer.decode(tokenizer.encode(text)) == text  # no BOS/EOS added either
    chat = f"<|im_start|>assistant\n{text}<|im_end|>"
    assert tokenizer.decode(_ids(tokenizer, chat)) == chat
    assert tokenizer.decode(_ids(tokenizer, chat), skip_special_tokens=True) == f"assistant\n{text}"


# -- verdict token ids --------------------------------------------------------------------------------------


@PROMPTS
def test_scoring_picks_the_single_token_verdict_forms(tokenizer, name: str) -> None:
    prompt = load_prompt(name)
    fake = verdict_token_ids(tokenizer, prompt.positive, prompt.negative)
    real = verdict_token_ids(tokenizer, prompt.negative, prompt.positive)
    assert fake == sorted(FAKE_IDS.values()) and real == sorted(REAL_IDS.values())
    assert [tokenizer.decode([i]) for i in fake] == [" fake", "fake", " Fake", "Fake"]
    # The upper-case form is one token for "real" only: counting it for one side alone would bias the score.
    assert {w: _ids(tokenizer, w) for w in UPPER} == UPPER
    assert not {24895, 25272} & set(real) and not {3627, 15008} & set(fake)


def test_multi_token_verdict_words_are_matched_form_by_form(tokenizer) -> None:
    # "manipulated" is one token only with a leading space; "authentic" also as " Authentic": only the
    # form that is one token for both words counts.
    assert _ids(tokenizer, " Authentic") == [46367] and len(_ids(tokenizer, " Manipulated")) == 2
    assert verdict_token_ids(tokenizer, "manipulated", "authentic") == _ids(tokenizer, " manipulated")
    assert verdict_token_ids(tokenizer, "authentic", "manipulated") == _ids(tokenizer, " authentic")
    # "deepfake" is never one token: every form's first token is used, for both words.
    fake = verdict_token_ids(tokenizer, "deepfake", "genuine")
    real = verdict_token_ids(tokenizer, "genuine", "deepfake")
    assert sorted(tokenizer.decode([i]) for i in fake) == [" DE", " Deep", " deep", "DE", "Deep", "deep"]
    assert sorted(tokenizer.decode([i]) for i in real) == [" G", " Genuine", " genuine", "G", "GEN", "g"]


@pytest.mark.parametrize(("word", "other"), [("fakeness", "fakes"), ("real", "real")])
def test_verdict_words_that_start_alike_are_refused(tokenizer, word: str, other: str) -> None:
    with pytest.raises(CrossfakeError, match=f"no token that starts '{word}' but not '{other}'"):
        verdict_token_ids(tokenizer, word, other)


# -- prompts ------------------------------------------------------------------------------------------------


def _expected_chat(tokenizer, prompt: PromptTemplate, n_image_tokens: int) -> list[int]:
    """Qwen2.5-VL's chat tokens of ``prompt``: system, user (image, instruction), assistant + prefix."""
    start, end = ID["<|im_start|>"], ID["<|im_end|>"]
    return (
        [start, SYSTEM, NEWLINE] + _ids(tokenizer, prompt.system or DEFAULT_SYSTEM) + [end, NEWLINE]
        + [start, USER, NEWLINE, ID["<|vision_start|>"]] + [ID["<|image_pad|>"]] * n_image_tokens
        + [ID["<|vision_end|>"]] + _ids(tokenizer, prompt.instruction) + [end, NEWLINE]
        + [start, ASSISTANT, NEWLINE] + _ids(tokenizer, prompt.answer_prefix.rstrip())
    )


@ALL_PROMPTS
def test_scored_chat_has_qwen_structure(processor, name: str) -> None:
    prompt, tokenizer = load_prompt(name), processor.tokenizer
    images = _images()
    batch = encode(processor, images, prompt, torch.device("cpu"))
    n_tokens = (batch["image_grid_thw"].prod(-1) // processor.image_processor.merge_size**2).tolist()
    assert n_tokens == [1, 4]  # 28 px: one merged 2x2 patch; 56 px: 2x2 of them
    rows, masks = batch["input_ids"].tolist(), batch["attention_mask"].tolist()
    for row, mask, n in zip(rows, masks, n_tokens, strict=True):
        ids = [i for i, m in zip(row, mask, strict=True) if m]
        assert ids == _expected_chat(tokenizer, prompt, n)
        assert row[: len(row) - len(ids)] == [tokenizer.pad_token_id] * (len(row) - len(ids))  # left padding
    tail = TAILS.get(name, _ids(tokenizer, prompt.answer_prefix.rstrip()))
    assistant = [ID["<|im_start|>"], ASSISTANT, NEWLINE] + tail
    assert batch["input_ids"][:, -len(assistant) :].tolist() == [assistant] * 2
    text = tokenizer.decode(batch["input_ids"][0], skip_special_tokens=False)
    assert text.endswith(f"<|im_end|>\n<|im_start|>assistant\n{prompt.answer_prefix.rstrip()}")
    assert (f"<|im_start|>system\n{prompt.system}<|im_end|>" if prompt.system
            else f"<|im_start|>system\n{DEFAULT_SYSTEM}<|im_end|>") in text


@ALL_PROMPTS
def test_answer_prefix_ends_where_the_verdict_token_starts(processor, name: str) -> None:
    """The scored text's tokens are those of the written answer up to the verdict, and the verdict is one
    of the scored tokens: the logits read at the last position are the verdict token's distribution."""
    prompt, tokenizer = load_prompt(name), processor.tokenizer
    chat = processor.apply_chat_template(prompt.messages(), tokenize=False, add_generation_prompt=True)
    scored = _ids(tokenizer, chat + prompt.answer_prefix.rstrip())
    fake = verdict_token_ids(tokenizer, prompt.positive, prompt.negative)
    real = verdict_token_ids(tokenizer, prompt.negative, prompt.positive)
    for word, ids in ((prompt.positive, fake), (prompt.negative, real)):
        answer = prompt.answer_prefix + word  # what the model writes: "<answer><verdict>fake", "... is fake"
        full = _ids(tokenizer, chat + answer + ("</verdict>" if "<verdict>" in answer else "."))
        assert full[: len(scored)] == scored and full[len(scored)] in ids
        # The QLoRA loss tokenises the answer apart from the chat; the boundary is a token boundary too.
        assert _ids(tokenizer, chat) + _ids(tokenizer, answer) == _ids(tokenizer, chat + answer)
    if prompt.answer_prefix != prompt.answer_prefix.rstrip():  # why scoring trims it: " fake" holds the space
        untrimmed = _ids(tokenizer, chat + prompt.answer_prefix)
        answer = _ids(tokenizer, chat + prompt.answer_prefix + prompt.positive)
        assert untrimmed[-1] == 220 and answer[: len(untrimmed)] != untrimmed  # 220: a lone space


# -- end to end with a tiny model on the real vocabulary ----------------------------------------------------


@PROMPTS
def test_verdict_logit_with_the_real_vocabulary(bundle, name: str) -> None:
    prompt, model, processor = load_prompt(name), bundle.model, bundle.processor
    assert model.get_output_embeddings().weight.shape[0] == MODEL_VOCAB_SIZE
    images = _images()
    got = verdict_logits(model, processor, images, prompt)
    # By hand for the first image (left-padded in the batch): every position's logits, the last one read.
    chat = processor.apply_chat_template(prompt.messages(), tokenize=False, add_generation_prompt=True)
    batch = processor(text=[chat + prompt.answer_prefix.rstrip()], images=images[:1], return_tensors="pt")
    with torch.no_grad():
        logp = model(**batch).logits[0, -1].float().log_softmax(-1)
    fake, real = list(FAKE_IDS.values()), list(REAL_IDS.values())
    expected = torch.logsumexp(logp[fake], 0) - torch.logsumexp(logp[real], 0)
    assert got[0].item() == pytest.approx(expected.item(), abs=1e-4)
    results = LocalBackend(bundle, max_new_tokens=3).score(images, prompt, explain=True)
    assert [r.logit for r in results] == pytest.approx(got.tolist(), abs=1e-5)
    assert all(r.text.startswith(prompt.answer_prefix.rstrip()) and r.parsed is not None for r in results)
