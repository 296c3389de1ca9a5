"""What a VLM backend is: something that turns images and a prompt template into verdict logits.

Backends differ in where the model runs (in-process through transformers, or behind an HTTP server);
the ``vlm_zero_shot`` detector only calls :meth:`VLMBackend.score`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from PIL import Image

from crossfake.vlm.parse import ParsedAnswer
from crossfake.vlm.prompts import PromptTemplate


@dataclass
class VLMResult:
    """One image's outcome: the verdict logit (higher = more fake) and, when explained, the answer."""

    logit: float
    text: str | None
    parsed: ParsedAnswer | None


class VLMBackend(Protocol):
    """Scores images with a vision-language model (see :mod:`crossfake.vlm.scoring` for the logit)."""

    name: str

    def score(self, images: list[Image.Image], prompt: PromptTemplate, explain: bool) -> list[VLMResult]:
        """One result per image, in order; with ``explain`` also the generated answer, parsed."""
        ...
