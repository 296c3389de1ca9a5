"""A real-valued score from a chat VLM: the verdict token's log-odds after a teacher-forced answer prefix.

How :func:`verdict_logits` computes the logit of one image (all images of a batch in one forward pass):

1. ``text = apply_chat_template(prompt.messages(), add_generation_prompt=True) + prefix``, where
   ``prefix`` is ``prompt.answer_prefix`` without trailing whitespace (``"<answer><verdict>"``; for
   ``"The class of this image is "``, ``"The class of this image is"``). The whitespace is dropped because
   byte-level BPE tokenizers attach a space to the *following* word (``" fake"`` is one token; a prompt
   ending in a space would force the rare space token and split the verdict word).
2. The processor tokenizes the texts with the images, **left-padded**, so that the last position of every
   row is the prefix's last token; one forward pass gives ``z = logits[:, -1, :]``, the next-token logits.
3. ``fake_ids`` / ``real_ids`` are the token ids spelling the verdict words in every case and leading-space
   form (``fake``/``real``, `` fake``/`` real``, ``Fake``/``Real``, `` Fake``/`` Real``, ``FAKE``/``REAL``,
   `` FAKE``/`` REAL``) in which the tokenizer encodes *both* words as single tokens, so that the two sums
   cover the same forms (Qwen2.5's vocabulary has ``REAL`` as one token but ``FAKE`` as two, ``FA`` +
   ``KE``: that form is left out of both). If no form is a single token for both words, the first tokens
   of all forms are used (:func:`verdict_token_ids`). An id on both sides is dropped from both.
4. ``logit = logsumexp(z[fake_ids]) - logsumexp(z[real_ids])``, computed in float32. The softmax
   normaliser cancels, so ``sigmoid(logit) = p(fake) / (p(fake) + p(real))``: the model's probability of
   "fake" given that it answers with one of the two words — a score for every image, hence AUC and EER.

:func:`generate_answers` continues the same text greedily for the written explanation; its answers start
with the prefix, so they are whole XML answers for :func:`crossfake.vlm.parse.parse_answer`.
"""

from __future__ import annotations

import torch
from PIL import Image

from crossfake.utils.errors import CrossfakeError
from crossfake.vlm.prompts import PromptTemplate


def _forms(word: str, other: str) -> list[tuple[str, str]]:
    """Both words in each case and leading-space form: ("fake", "real"), (" fake", " real"), ..."""
    forms = [(case, space) for case in (str.lower, str.capitalize, str.upper) for space in ("", " ")]
    return list(dict.fromkeys((space + case(word), space + case(other)) for case, space in forms))


def _ids(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def _single_token_pairs(tokenizer, word: str, other: str) -> dict[tuple[str, str], tuple[int, int]]:
    """The case/space forms (:func:`_forms`) in which ``tokenizer`` spells both words as one token each,
    in order: ``{(word form, other form): (its token id, the other's)}``. The one pairing rule of
    :func:`verdict_token_ids` (ids) and :func:`verdict_forms` (texts)."""
    pairs = {}
    for w, o in _forms(word, other):
        w_ids, o_ids = _ids(tokenizer, w), _ids(tokenizer, o)
        if len(w_ids) == 1 and len(o_ids) == 1:
            pairs[w, o] = (w_ids[0], o_ids[0])
    return pairs


def verdict_token_ids(tokenizer, word: str, other: str) -> list[int]:
    """Token ids that start ``word`` and not ``other`` (see step 3 of the module docstring).

    Raises:
        CrossfakeError: no token of the vocabulary starts ``word`` unambiguously.
    """

    # A form counts only where both words are one token, else the sums would compare different forms.
    single = _single_token_pairs(tokenizer, word, other)
    if single:
        chosen = {w for w, _ in single.values()} - {o for _, o in single.values()}
    else:
        encoded = [(_ids(tokenizer, w), _ids(tokenizer, o)) for w, o in _forms(word, other)]
        chosen = {w[0] for w, _ in encoded if w} - {o[0] for _, o in encoded if o}
    if not chosen:
        raise CrossfakeError(f"the tokenizer has no token that starts {word!r} but not {other!r}")
    return sorted(chosen)


def verdict_forms(word: str, other: str, tokenizer=None) -> list[tuple[str, str]]:
    """The (``word``, ``other``) spellings a verdict score compares, as text: ``[("fake", "real"), ...]``.

    For scorers that see token *strings* (the HTTP backend reads a server's ``top_logprobs``) and so cannot
    ask the tokenizer which forms are single tokens. With ``tokenizer`` the forms are those of step 3 of the
    module docstring, the ones :func:`verdict_token_ids` counts: case/space pairs in which both words are
    one token. Without it, the lower-case and capitalised forms with and without a leading space, which
    are exactly the single-token pairs of Qwen2.5(-VL)'s vocabulary (upper case is left out: ``FAKE`` is
    two tokens there, ``REAL`` one).
    """
    if tokenizer is not None:
        paired = list(_single_token_pairs(tokenizer, word, other))
        if paired:
            return paired
    unspaced = [(case(word), case(other)) for case in (str.lower, str.capitalize)]
    return list(dict.fromkeys(pair for w, o in unspaced for pair in ((w, o), (" " + w, " " + o))))


def _prefix_texts(processor, prompt: PromptTemplate, n: int) -> list[str]:
    chat = processor.apply_chat_template(prompt.messages(), tokenize=False, add_generation_prompt=True)
    return [chat + prompt.answer_prefix.rstrip()] * n


def encode(processor, images: list[Image.Image], prompt: PromptTemplate, device: torch.device) -> dict:
    """The model inputs for teacher-forced prompts + prefixes of ``images``, left-padded, on ``device``."""
    batch = processor(
        text=_prefix_texts(processor, prompt, len(images)),
        images=[im.convert("RGB") for im in images],
        padding=True,
        padding_side="left",
        return_tensors="pt",
    )
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def logits_from_next_token(
    next_token_logits: torch.Tensor, fake_ids: list[int], real_ids: list[int]
) -> torch.Tensor:
    """``logsumexp(z[fake_ids]) - logsumexp(z[real_ids])`` per row of ``z`` (B, vocab), in float32."""
    z = next_token_logits.float()
    return torch.logsumexp(z[:, fake_ids], dim=-1) - torch.logsumexp(z[:, real_ids], dim=-1)


@torch.no_grad()
def verdict_logits(model, processor, images: list[Image.Image], prompt: PromptTemplate) -> torch.Tensor:
    """One verdict logit per image, higher = more fake (module docstring), from one batched forward pass.

    Args:
        model: a ``Qwen2_5_VLForConditionalGeneration`` (or any chat VLM with the same call signature).
        processor: its processor (tokenizer, image processor and chat template).
        images: RGB PIL images.
        prompt: the template; its ``answer_prefix`` must end where the verdict word starts.

    Returns:
        A float32 tensor (B,) on the CPU.
    """
    if not images:
        return torch.zeros(0)
    device = next(model.parameters()).device
    tokenizer = processor.tokenizer
    fake_ids = verdict_token_ids(tokenizer, prompt.positive, prompt.negative)
    real_ids = verdict_token_ids(tokenizer, prompt.negative, prompt.positive)
    out = model(**encode(processor, images, prompt, device), logits_to_keep=1)
    return logits_from_next_token(out.logits[:, -1, :], fake_ids, real_ids).cpu()


@torch.no_grad()
def generate_answers(
    model, processor, images: list[Image.Image], prompt: PromptTemplate, max_new_tokens: int = 256
) -> list[str]:
    """Greedy answers for ``images`` (batched), each starting with the template's answer prefix."""
    if not images:
        return []
    device = next(model.parameters()).device
    batch = encode(processor, images, prompt, device)
    tokenizer = processor.tokenizer
    out = model.generate(
        **batch,
        max_new_tokens=max_new_tokens,
        do_sample=False,
        pad_token_id=tokenizer.pad_token_id,
    )
    # Left padding: every row's prompt ends at the same column, so the new tokens start there.
    new = out[:, batch["input_ids"].shape[1] :]
    prefix = prompt.answer_prefix.rstrip()
    return [prefix + tokenizer.decode(row, skip_special_tokens=True) for row in new]
