"""Prompt tuning of CLIP's frozen text encoder (CoOp), as in "CLIPping the Deception" (Khan & Dang-Nguyen,
ICMR'24; official code ``sohailahmedkhan/CLIPping-the-Deception``, built on Zhou et al.'s CoOp).

The class prompts are not written but learned: ``n_ctx`` context vectors, in the text encoder's
token-embedding space, take the place of words around the class name. With the paper's settings
(``TRAINER.COOP.N_CTX 16``, ``CSC False``, ``CLASS_TOKEN_POSITION front``, classes ``real`` and ``fake``)
the two prompts are::

    [SOS] real [V1] ... [V16] . [EOS]        [SOS] fake [V1] ... [V16] . [EOS]

with one set of vectors ``V`` shared by both classes (``class_specific`` gives each class its own). The frozen
text encoder turns each prompt into an embedding ``t_c`` (its EOS token, projected); the frozen image encoder
gives ``f(x)``, and ``logit_c = logit_scale · cos(f(x), t_c)`` with CLIP's own logit scale (100). The
detector's one logit is ``logit_fake − logit_real``, so its sigmoid is p(fake) of CoOp's two-way softmax
and the default binary cross-entropy equals CoOp's cross-entropy. The context vectors start as CoOp's
random ones (normal, std 0.02; ``CTX_INIT ""``) and are all that is trained.

Nothing on the image side is trained, so the image features are frozen: the method caches them
(``supports_feature_cache``) and each training step runs only the text encoder on the two prompts.

Counting: ``n_ctx x`` the text encoder's width — 16 x 768 = **12,288** at ViT-L/14 (the paper's backbone and
its "~12K"), 16 x 512 = **8,192** at ViT-B/32; twice that with ``class_specific``.

The paper trains with SGD, lr 2e-3, cosine schedule after a one-epoch constant warm-up at 1e-5, batch 16,
2 epochs over 100k real + 100k fake ProGAN images, fp16, with random-resized-crop, flip and
compression/blur augmentation.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field, field_validator
from torch import nn

from crossfake.methods.base import MethodConfig
from crossfake.methods.clip_base import ClipDetector
from crossfake.methods.registry import register_method
from crossfake.models.backbones.clip import ClipBundle, build_clip
from crossfake.utils.errors import CrossfakeError


class PromptTuningConfig(MethodConfig):
    """Options of :class:`PromptTuningDetector` (defaults: CLIPping the Deception's CoOp settings)."""

    lr: float = Field(2e-3, gt=0, description="default learning rate (AdamW)")
    n_ctx: int = Field(16, gt=0, description="learned context vectors per prompt")
    class_specific: bool = Field(False, description="one set of context vectors per class (CoOp's CSC)")
    class_token_position: Literal["front", "middle", "end"] = Field(
        "front", description="where the class name sits among the context vectors")
    class_names: tuple[str, str] = Field(("real", "fake"), description="the class names in the prompts, "
                                                                       "real first")

    @field_validator("class_names")
    @classmethod
    def _names(cls, names: tuple[str, str]) -> tuple[str, str]:
        if any(not n.strip() for n in names):
            raise ValueError("class names must not be blank")
        if names[0].strip() == names[1].strip():
            raise ValueError("the two class names must differ")
        return names


@register_method("prompt_tuning")
class PromptTuningDetector(ClipDetector):
    """Frozen CLIP classifying by image-text similarity against prompts made of learned context vectors."""

    config_class = PromptTuningConfig
    supports_feature_cache = True

    def __init__(self, config: PromptTuningConfig, bundle: ClipBundle) -> None:
        super().__init__(config, bundle)
        self.freeze_backbone()
        width = self.clip.config.text_config.hidden_size
        n_sets = 2 if config.class_specific else 1
        self.context = nn.Parameter(torch.empty(n_sets, config.n_ctx, width))
        nn.init.normal_(self.context, std=0.02)
        if bundle.tokenizer is None:  # weights=False: shapes only, no tokenizer to build the prompts with
            ids = ctx_index = torch.zeros(2, 1, dtype=torch.long)
            eos = torch.zeros(2, dtype=torch.long)
        else:
            ids, ctx_index, eos = self._prompt_tokens(bundle.tokenizer)
        # Derived from the config and the tokenizer: rebuilt at every build, never saved.
        self.register_buffer("token_ids", ids, persistent=False)
        self.register_buffer("ctx_index", ctx_index, persistent=False)  # position among the context, or -1
        self.register_buffer("eos_position", eos, persistent=False)

    @classmethod
    def build(cls, config: PromptTuningConfig, weights: bool = True) -> PromptTuningDetector:
        return cls(config, build_clip(config.backbone, weights=weights))

    def _prompt_tokens(self, tokenizer) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Token ids of the two prompts (context slots hold a placeholder), each slot's context index, EOS."""
        cfg = self.config
        n = cfg.n_ctx
        ctx = list(range(n))

        def words(text: str) -> list[int]:
            return tokenizer(text, add_special_tokens=False)["input_ids"]

        period = words(".")
        rows = []
        for name in cfg.class_names:
            name_ids = words(name.strip())
            if not name_ids:
                raise CrossfakeError(f"prompt_tuning: class name {name!r} has no tokens")
            # (token id, context index) pairs; -1: a real token, a context slot otherwise
            named = [(t, -1) for t in name_ids]
            slots = [(tokenizer.bos_token_id, i) for i in ctx]
            if cfg.class_token_position == "end":
                body = slots + named
            elif cfg.class_token_position == "front":
                body = named + slots
            else:
                body = slots[: n // 2] + named + slots[n // 2:]
            rows.append([(tokenizer.bos_token_id, -1), *body, *((t, -1) for t in period),
                         (tokenizer.eos_token_id, -1)])
        length = max(len(r) for r in rows)
        limit = self.clip.config.text_config.max_position_embeddings
        if length > limit:
            raise CrossfakeError(f"prompt_tuning: a prompt of {length} tokens (n_ctx {n} + class name + 3) does "
                                 f"not fit the text encoder's {limit} positions; lower n_ctx")
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        eos = torch.tensor([len(r) - 1 for r in rows])
        rows = [r + [(pad, -1)] * (length - len(r)) for r in rows]  # after EOS: causal attention ignores it
        ids = torch.tensor([[t for t, _ in r] for r in rows])
        ctx_index = torch.tensor([[i for _, i in r] for r in rows])
        return ids, ctx_index, eos

    def prompt_embeddings(self) -> torch.Tensor:
        """(2, tokens, width): the token embeddings of both prompts with the context vectors in their slots."""
        embeds = self.clip.text_model.embeddings.token_embedding(self.token_ids)
        slot = self.ctx_index >= 0
        context = self.context.expand(2, -1, -1)  # one shared set, or one per class
        picked = torch.gather(context, 1, self.ctx_index.clamp(min=0)[..., None].expand(-1, -1, context.shape[-1]))
        return torch.where(slot[..., None], picked.to(embeds.dtype), embeds)

    def text_features(self, prompt_embeds: torch.Tensor | None = None) -> torch.Tensor:
        """(2, projection_dim) unit embeddings of the real and fake prompts.

        CLIP's text model run on embeddings instead of ids: positions added, the causal encoder, the final
        LayerNorm, the EOS token's state, the text projection.
        """
        from transformers.masking_utils import create_causal_mask

        text = self.clip.text_model
        embeds = self.prompt_embeddings() if prompt_embeds is None else prompt_embeds
        hidden = text.embeddings(inputs_embeds=embeds)
        mask = create_causal_mask(config=text.config, inputs_embeds=hidden, attention_mask=None,
                                  past_key_values=None)
        hidden = text.encoder(inputs_embeds=hidden, attention_mask=mask, is_causal=True).last_hidden_state
        hidden = text.final_layer_norm(hidden)
        pooled = hidden[torch.arange(len(hidden), device=hidden.device), self.eos_position]
        return nn.functional.normalize(self.clip.text_projection(pooled), dim=-1)

    def features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Unit image embeddings (frozen: cached on disk by the trainer)."""
        with torch.no_grad():
            emb = self.clip.get_image_features(pixel_values=pixel_values).pooler_output
        return nn.functional.normalize(emb, dim=-1)

    def class_logits(self, features: torch.Tensor) -> torch.Tensor:
        """(batch, 2) CLIP logits of the real and fake prompts for unit image embeddings."""
        text = self.text_features()
        return self.clip.logit_scale.exp() * features @ text.to(features.dtype).T

    def head(self, features: torch.Tensor) -> torch.Tensor:
        logits = self.class_logits(features)
        return logits[:, 1] - logits[:, 0]

    def parameter_breakdown(self) -> dict[str, int]:
        """Trainable parameters: the context vectors."""
        sets, n, width = self.context.shape
        shared = "one set per class" if sets > 1 else "shared by both classes"
        return {f"context vectors {n}x{width} ({shared})": self.context.numel()}
