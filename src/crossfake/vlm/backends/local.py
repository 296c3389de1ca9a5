"""The in-process backend: a transformers Qwen2.5-VL (or compatible) model and processor."""

from __future__ import annotations

from PIL import Image

from crossfake.models.backbones.qwen_vl import QwenVLBundle
from crossfake.utils.errors import CrossfakeError
from crossfake.vlm.backends import register_backend
from crossfake.vlm.backends.base import VLMResult
from crossfake.vlm.parse import parse_answer
from crossfake.vlm.prompts import PromptTemplate
from crossfake.vlm.scoring import generate_answers, verdict_logits


@register_backend("local")
class LocalBackend:
    """Scores with a loaded model: one teacher-forced forward pass per batch, plus greedy generation
    of the answer when ``explain`` is set (a second pass, so the score never depends on the text).

    Args:
        bundle: the model and processor (:func:`crossfake.models.backbones.qwen_vl.build_qwen_vl`).
        max_new_tokens: length limit of explanations.
    """

    name = "local"

    def __init__(self, bundle: QwenVLBundle, max_new_tokens: int = 256) -> None:
        self.bundle = bundle
        self.max_new_tokens = max_new_tokens

    def score(self, images: list[Image.Image], prompt: PromptTemplate, explain: bool) -> list[VLMResult]:
        model, processor = self.bundle.model, self.bundle.processor
        if processor is None:
            raise CrossfakeError(
                f"{self.bundle.spec!r} was built without weights (shape only) and cannot score images"
            )
        logits = verdict_logits(model, processor, images, prompt).tolist()
        if not explain:
            return [VLMResult(logit, None, None) for logit in logits]
        texts = generate_answers(model, processor, images, prompt, self.max_new_tokens)
        return [VLMResult(logit, text, parse_answer(text)) for logit, text in zip(logits, texts, strict=True)]
