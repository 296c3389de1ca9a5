"""Zero-shot VLM detection (report 1's "Qwen"): a prompt, nothing trained, a score from the verdict token.

The image goes to a chat VLM with a forensic prompt (default ``forensic_xml_v1``: expert persona, 10-point
artifact checklist, XML answer). Unlike report 1, which kept only the text verdict and so had no AUC or
EER, the logit is the model's log-odds of "fake" vs "real" at the verdict position
(:mod:`crossfake.vlm.scoring`), so the zero-shot VLM is evaluated, and thresholded on validation data,
exactly like a trained detector. With ``explain`` the generated answer is parsed too and its fields go to
the predictions table through :meth:`VlmZeroShot.predict_details`.

The model runs in-process (``backend: local``, transformers, optional 4-bit NF4) or behind an
OpenAI-compatible server (``backend: http`` with ``backend_options: {base_url: ..., model: ...}``).
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from PIL import Image
from pydantic import Field

from crossfake.methods.base import Detector, MethodConfig, PredictionColumns
from crossfake.methods.registry import register_method
from crossfake.models.backbones.qwen_vl import DEFAULT_QWEN_VL, build_qwen_vl
from crossfake.vlm.backends import VLMBackend, VLMResult, create_backend
from crossfake.vlm.prompts import PromptTemplate, load_prompt

#: Columns :meth:`VlmZeroShot.predict_details` adds to the predictions when ``explain`` is set, by role:
#: the written reasoning explains the score; verdict, confidence and artefacts go beside it; an answer that
#: did not parse is shown as it came (raw answer, parse error).
COLUMNS = PredictionColumns(
    explanation="reasoning",
    details=("verdict", "confidence", "artifacts"),
    raw=("raw_answer", "parse_error"),
    parsed="parsed",
)
DETAIL_COLUMNS = (*COLUMNS.details, COLUMNS.explanation, COLUMNS.parsed, *reversed(COLUMNS.raw))


class VlmZeroShotConfig(MethodConfig):
    backbone: str = Field(DEFAULT_QWEN_VL, description="Qwen2.5-VL hub id, local-dir:PATH or 'tiny'")
    prompt: str = Field("forensic_xml_v1", min_length=1, description="prompt template name or YAML path")
    backend: Literal["local", "http"] = Field("local", description="where the VLM runs")
    backend_options: dict[str, Any] = Field(
        default_factory=dict, description="options of the backend (http: base_url, model, timeout, ...)"
    )
    quantize: Literal["nf4"] | None = Field(None, description="load the local model in 4-bit NF4")
    explain: bool = Field(True, description="also generate, parse and store the written answer")
    max_new_tokens: int = Field(256, ge=1, description="length limit of the written answer")


@register_method("vlm_zero_shot")
class VlmZeroShot(Detector):
    """A prompted VLM as a detector with no trainable parameters (see the module docstring)."""

    config_class = VlmZeroShotConfig
    journal_predictions = True  # an answer costs seconds: an interrupted run must not ask it again
    prediction_columns = COLUMNS

    def __init__(
        self, config: VlmZeroShotConfig, backend: VLMBackend, prompt: PromptTemplate,
        model: torch.nn.Module | None = None,
    ) -> None:
        super().__init__(config)
        self.backend = backend
        self.prompt = prompt
        # Registered as a submodule so that `.to(device)`, `.eval()` and the parameter counts reach it.
        self.model = model

    @classmethod
    def build(cls, config: VlmZeroShotConfig, weights: bool = True) -> VlmZeroShot:
        prompt = load_prompt(config.prompt)
        if config.backend == "local":
            bundle = build_qwen_vl(config.backbone, weights=weights, quantize=config.quantize if weights else None)
            bundle.model.requires_grad_(False)
            backend = create_backend(
                "local", bundle=bundle, max_new_tokens=config.max_new_tokens, **config.backend_options
            )
            return cls(config, backend, prompt, bundle.model)
        options = {"max_new_tokens": config.max_new_tokens, **config.backend_options}
        return cls(config, create_backend(config.backend, **options), prompt)

    def transform(self, image: Image.Image) -> Image.Image:
        # The crop goes through as is: the VLM's processor resizes it to its own patch grid.
        return image.convert("RGB")

    def collate(self, items: list[Image.Image]) -> list[Image.Image]:
        return list(items)

    def _results(self, images: list[Image.Image]) -> list[VLMResult]:
        return self.backend.score(images, self.prompt, self.config.explain)

    def forward(self, images: list[Image.Image]) -> torch.Tensor:
        return torch.tensor([r.logit for r in self._results(images)], dtype=torch.float32)

    @torch.no_grad()
    def predict_details(self, images: list[Image.Image]) -> tuple[torch.Tensor, dict[str, list]]:
        """Logits and, with ``explain``, the parsed answers as extra prediction columns (DETAIL_COLUMNS).

        Extra columns reach the predictions table through :func:`crossfake.scoring.predict.predict_manifest`.
        """
        results = self._results(images)
        logits = torch.tensor([r.logit for r in results], dtype=torch.float32)
        if not self.config.explain:
            return logits, {}
        columns: dict[str, list] = {c: [] for c in DETAIL_COLUMNS}
        for r in results:
            p = r.parsed
            columns["verdict"].append(p.verdict if p else None)
            columns["confidence"].append(p.confidence if p else None)
            columns["artifacts"].append("; ".join(p.artifacts) if p else None)
            columns["reasoning"].append(p.reasoning if p else None)
            columns["parsed"].append(p.parsed if p else None)
            columns["parse_error"].append(p.error if p else None)
            columns["raw_answer"].append(r.text)
        return logits, columns
