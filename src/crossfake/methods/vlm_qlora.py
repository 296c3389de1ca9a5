"""Qwen2.5-VL + QLoRA: LoRA adapters on the language and vision linear layers of a 4-bit base.

Report 1's fine-tuned VLM: a 4-bit NF4 Qwen2.5-VL-7B-Instruct with LoRA (r=16, alpha=16, dropout 0) on
every linear layer of the language decoder (``q/k/v/o_proj``, ``gate/up/down_proj``) and of the vision
encoder's blocks (``attn.qkv``, ``attn.proj``, ``mlp.gate/up/down_proj``), trained for one epoch at an
effective batch of 32 with LR 2e-4 on the chat

    user:      <image> Please classify the following image as real or fake
    assistant: The class of this image is real|fake

The vision *merger* (the MLP projecting patches into the language model) and ``lm_head`` are not adapted:
targets are matched by a regex that admits only modules under ``model.language_model.layers.N`` and
``model.visual.blocks.N``, because plain names would also hit the merger (none) and, for ``proj``-like
suffixes, layers the report never adapted.

Training is causal-LM cross-entropy on the answer tokens only (the prompt, the image tokens and the
padding are labelled -100). Scoring is *not* the generated text: :func:`crossfake.vlm.scoring.verdict_logits`
reads the model's next-token distribution after the answer prefix (log p("fake") - log p("real")), the
same function the zero-shot detector uses, so a fine-tuned and a zero-shot VLM get comparable scores,
an AUC and an EER.

Backends: transformers + peft + bitsandbytes (the portable path, tested here on the CPU with a tiny
model), or Unsloth's ``FastVisionModel`` (``use_unsloth``: ``"auto"`` uses it only when it is installed
*and* a CUDA GPU is visible). The Unsloth path cannot be installed or run on this project's test machine:
it is untested here.

What is counted at Qwen2.5-VL-7B with the defaults (``crossfake params --method vlm_qlora``):

- language LoRA: 28 layers x r·[(3584+3584)·2 + (3584+512)·2 + (3584+18944)·2 + (18944+3584)]
  = 28 x 1,441,792 = **40,370,176**;
- vision LoRA: 32 blocks x r·[(1280+3840) + (1280+1280) + (1280+3420)·2 + (3420+1280)]
  = 32 x 348,480 = **11,151,360**;
- trainable in all: **51,521,536** (the seed's "~51.5M"); total: 8,292,166,656 (the whole model,
  unquantized count) + 51,521,536 = 8,343,688,192, so crossfake prints **0.6175%**.

The seed's "0.74%" is 51,521,536 / 7.0e9 = 0.736%: the adapters over the *nominal* "7B". No count of
the built model gives it: adapters / (model + adapters) = 0.6175% (peft's ``print_trainable_parameters``
convention, which un-packs 4-bit weights), adapters / model = 0.6213%, and over the 4-bit-*packed*
element counts (quantized linear layers count half) 1.08-1.10%. crossfake keeps its convention
(trainable / total of the built detector, 4-bit weights counted unpacked so that the numbers do not depend
on ``quantize``) and this docstring records why it differs from the seed's rounded figure.
"""

from __future__ import annotations

import importlib.util
import re
from functools import cached_property
from typing import Any, Literal

import torch
from PIL import Image
from pydantic import Field

from crossfake.methods.adapters import lora_parameters
from crossfake.methods.base import Detector, MethodConfig
from crossfake.methods.registry import register_method
from crossfake.models.backbones.qwen_vl import DEFAULT_QWEN_VL, QwenVLBundle, build_qwen_vl
from crossfake.models.backbones.spec import TINY, canonical_name, local_dir
from crossfake.utils.errors import CrossfakeError
from crossfake.utils.logging import get_logger

log = get_logger("methods.vlm_qlora")

LANGUAGE_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
VISION_TARGETS = ("qkv", "proj", "gate_proj", "up_proj", "down_proj")
DEFAULT_TARGETS = tuple(dict.fromkeys(LANGUAGE_TARGETS + VISION_TARGETS))
# The two stacks that may be adapted (module-name prefixes in transformers 5's Qwen2.5-VL).
LANGUAGE_SCOPE = "model.language_model.layers"
VISION_SCOPE = "model.visual.blocks"
# Every Qwen chat template closes a turn with this token; training on it teaches the answer to stop.
END_OF_TURN = "<|im_end|>"
IGNORE_INDEX = -100  # labels torch's cross-entropy skips


class VlmQloraConfig(MethodConfig):
    """Options of :class:`VlmQloraDetector` (defaults: report 1's Qwen2.5-VL + QLoRA)."""

    backbone: str = Field(DEFAULT_QWEN_VL, description="Qwen2.5-VL hub id, local-dir:PATH or 'tiny'")
    prompt: str = Field("classify_v1", min_length=1, description="prompt template (crossfake.vlm.prompts)")
    lr: float = Field(2e-4, gt=0, description="default learning rate (AdamW)")
    r: int = Field(16, gt=0, description="LoRA rank")
    alpha: int = Field(16, gt=0, description="LoRA scaling numerator (the update is scaled by alpha / r)")
    dropout: float = Field(0.0, ge=0, lt=1, description="dropout on the adapter's input")
    target_modules: tuple[str, ...] = Field(
        DEFAULT_TARGETS, min_length=1,
        description="linear layers to adapt inside the language layers and the vision blocks (never the "
                    "vision merger or lm_head): q_proj k_proj v_proj o_proj gate_proj up_proj down_proj "
                    "qkv proj",
    )
    # "none", not null: method options that are None mean "the default" (registry.method_config), so a
    # null would turn back into nf4 when a run's saved config.yaml is read again.
    quantize: Literal["nf4", "none"] = Field("nf4", description="nf4: 4-bit base (QLoRA); none: LoRA on a "
                                                                "bf16 (GPU) / fp32 (CPU) base")
    use_unsloth: bool | Literal["auto"] = Field(
        "auto", description="Unsloth FastVisionModel backend; auto: only if installed and a GPU is visible"
    )
    gradient_checkpointing: bool = Field(False, description="recompute activations in backward (less memory)")


def target_regex(targets: tuple[str, ...]) -> str:
    """A peft ``target_modules`` regex (full match) for ``targets`` inside the two adaptable stacks only."""
    names = "|".join(re.escape(t) for t in targets)
    scopes = "|".join(re.escape(s) for s in (LANGUAGE_SCOPE, VISION_SCOPE))
    # Any prefix: a model wrapped by peft or Unsloth names the same modules `base_model.model.<name>`.
    return rf"(?:[\w.]*\.)?(?:{scopes})\.\d+\.(?:\w+\.)*(?:{names})"


def _use_unsloth(setting: bool | str) -> bool:
    available = importlib.util.find_spec("unsloth") is not None and torch.cuda.is_available()
    if setting is True and not available:
        raise CrossfakeError("use_unsloth: true needs the `unsloth` package and a CUDA GPU; "
                             "set use_unsloth: auto to fall back to transformers + peft")
    return available if setting == "auto" else bool(setting)


def _logical_numel(p: torch.nn.Parameter) -> int:
    """Elements of a parameter as the model sees it: bitsandbytes packs two 4-bit weights per byte."""
    quant_state = getattr(p, "quant_state", None)
    return quant_state.shape.numel() if quant_state is not None else p.numel()


@register_method("vlm_qlora")
class VlmQloraDetector(Detector):
    """Qwen2.5-VL with LoRA adapters, trained to answer "The class of this image is real|fake".

    Inputs are RGB PIL images (``transform`` keeps them as such and ``collate`` lists them) because the
    chat text, and so the tokens, depend on the label in training; the processor runs in the step.
    """

    config_class = VlmQloraConfig

    def __init__(
        self, config: VlmQloraConfig, bundle: QwenVLBundle, prompt: Any, adapted: bool = False
    ) -> None:
        super().__init__(config)
        self.model = bundle.model
        self.processor = bundle.processor
        self.prompt = prompt
        if not adapted:  # Unsloth's model arrives with its adapters (and only them) trainable
            self._inject_lora(config)

    # -- construction -----------------------------------------------------------------------------

    @classmethod
    def build(cls, config: VlmQloraConfig, weights: bool = True) -> VlmQloraDetector:
        from crossfake.vlm.prompts import load_prompt

        prompt = load_prompt(config.prompt)
        if weights and config.backbone != TINY and _use_unsloth(config.use_unsloth):
            return cls(config, _unsloth_bundle(config), prompt, adapted=True)
        # Counting needs no quantization: the shapes (meta device) are those of the unquantized model.
        quantize = config.quantize == "nf4" and weights
        bundle = build_qwen_vl(config.backbone, weights=weights, quantize="nf4" if quantize else None)
        model = bundle.model
        if quantize:
            from peft import prepare_model_for_kbit_training

            # Upcasts the non-quantized weights (norms, embeddings) to fp32 for stable training and, with
            # checkpointing, makes the input embeddings require grad so checkpointed segments backprop.
            bundle.model = prepare_model_for_kbit_training(
                model, use_gradient_checkpointing=config.gradient_checkpointing,
                gradient_checkpointing_kwargs={"use_reentrant": False},
            )
        elif weights and config.gradient_checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        return cls(config, bundle, prompt)

    def _inject_lora(self, config: VlmQloraConfig) -> None:
        from peft import LoraConfig, inject_adapter_in_model

        for p in self.model.parameters():
            p.requires_grad_(False)
        names = [n for n, _ in self.model.named_modules()]
        pattern = re.compile(target_regex(config.target_modules))
        # A misspelt target beside valid ones would silently shrink the adapter: every one must match.
        unmatched = [t for t in config.target_modules
                     if not any(pattern.fullmatch(n) and n.rsplit(".", 1)[-1] == t for n in names)]
        if unmatched:
            raise CrossfakeError(
                f"vlm_qlora: target_modules {unmatched} match no linear layer under {LANGUAGE_SCOPE} or "
                f"{VISION_SCOPE}; the defaults are {', '.join(DEFAULT_TARGETS)}"
            )
        lora = LoraConfig(r=config.r, lora_alpha=config.alpha, lora_dropout=config.dropout,
                          target_modules=pattern.pattern, bias="none")
        inject_adapter_in_model(lora, self.model)

    # -- data ---------------------------------------------------------------------------------------

    def transform(self, image: Image.Image) -> Image.Image:
        return image.convert("RGB")

    def collate(self, items: list[Image.Image]) -> list[Image.Image]:
        return list(items)

    # -- model --------------------------------------------------------------------------------------

    def forward(self, images: list[Image.Image]) -> torch.Tensor:
        from crossfake.vlm.scoring import verdict_logits

        return verdict_logits(self.model, self.processor, images, self.prompt)

    def training_step(self, images: list[Image.Image], labels: torch.Tensor) -> dict[str, torch.Tensor]:
        """Causal-LM loss of the label's answer; ``logits``: the fake-vs-real margin at the verdict token."""
        batch, verdict_pos = self.training_batch(images, labels)
        batch = {k: v.to(self.model.device) for k, v in batch.items()}
        out = self.model(**batch)
        fake_id, real_id = self._verdict_ids()
        rows = torch.arange(len(images), device=out.logits.device)
        # Position t predicts token t+1: the verdict token's distribution is read one position earlier.
        at = out.logits[rows, verdict_pos.to(out.logits.device) - 1].float()
        return {"loss": out.loss, "logits": (at[:, fake_id] - at[:, real_id]).detach()}

    def training_batch(
        self, images: list[Image.Image], labels: torch.Tensor
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """Model inputs for the chats ending in each label's answer, and each row's verdict-token position.

        The prompt (with its expanded image tokens) goes through the processor; the answer is tokenized
        apart and appended, so the prompt/answer boundary, and with it the loss mask, is exact by
        construction. Rows are right-padded; ``labels`` are the answer's tokens and -100 elsewhere.
        """
        prompt = self._prompt_text()
        enc = self.processor(text=[prompt] * len(images), images=images, return_tensors="pt", padding=True)
        mask = enc["attention_mask"].bool()
        # Per-token side inputs (e.g. mm_token_type_ids, which marks image tokens for the 3-D RoPE) follow
        # the tokens: unpadded, extended with 0 (text) over the answer, padded with 0.
        per_token = [k for k, v in enc.items() if k != "attention_mask" and v.shape == mask.shape]
        answers = self._answer_ids
        pad = {k: 0 for k in per_token} | {"input_ids": self.processor.tokenizer.pad_token_id,
                                           "labels": IGNORE_INDEX, "attention_mask": 0}
        rows: list[dict[str, torch.Tensor]] = []
        for i, label in enumerate(labels.tolist()):
            answer = answers[int(label >= 0.5)]
            n = int(mask[i].sum())
            row = {k: torch.cat([enc[k][i][mask[i]], torch.zeros_like(answer)]) for k in per_token}
            row["input_ids"] = torch.cat([enc["input_ids"][i][mask[i]], answer])
            row["labels"] = torch.cat([torch.full((n,), IGNORE_INDEX), answer])
            row["attention_mask"] = torch.ones(n + len(answer), dtype=torch.long)
            rows.append(row)
        width = max(len(r["input_ids"]) for r in rows)
        batch = {k: torch.full((len(rows), width), v, dtype=torch.long) for k, v in pad.items()}
        for i, row in enumerate(rows):
            for k, v in row.items():
                batch[k][i, : len(v)] = v
        batch |= {k: v for k, v in enc.items() if k not in batch}
        verdict_pos = [int(mask[i].sum()) + self._verdict_offset for i in range(len(rows))]
        return batch, torch.tensor(verdict_pos)

    def _prompt_text(self) -> str:
        """The chat up to the assistant's turn (the same text :func:`verdict_logits` continues)."""
        return self.processor.apply_chat_template(self.prompt.messages(), tokenize=False,
                                                  add_generation_prompt=True)

    @cached_property
    def _answer_ids(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Token ids of the (real, fake) answers: answer prefix + verdict word + end of turn."""
        tok = self.processor.tokenizer
        end = tok.convert_tokens_to_ids(END_OF_TURN)
        return tuple(
            torch.tensor(tok(self.prompt.answer_prefix + word, add_special_tokens=False)["input_ids"] + [end])
            for word in (self.prompt.negative, self.prompt.positive)
        )

    @cached_property
    def _verdict_offset(self) -> int:
        """Index in the answer of the first token where the real and fake answers differ: the verdict."""
        real, fake = self._answer_ids
        return next(i for i, (a, b) in enumerate(zip(real.tolist(), fake.tolist(), strict=False)) if a != b)

    def _verdict_ids(self) -> tuple[int, int]:
        real, fake = self._answer_ids
        at = self._verdict_offset
        return int(fake[at]), int(real[at])

    # -- parameters and checkpoints -----------------------------------------------------------------

    def parameter_counts(self) -> tuple[int, int]:
        """(trainable, total), 4-bit weights counted unpacked so ``quantize`` does not change the total."""
        trainable = sum(p.numel() for p in self.parameters() if p.requires_grad)
        return trainable, sum(_logical_numel(p) for p in self.parameters())

    def parameter_breakdown(self) -> dict[str, int]:
        """Trainable parameters by stack: LoRA in the language decoder and in the vision encoder."""
        parts = {"language": 0, "vision": 0}
        for name, p in lora_parameters(self.model):
            if p.requires_grad:
                parts["vision" if ".visual." in name else "language"] += p.numel()
        return {f"{stack} LoRA (r={self.config.r})": n for stack, n in parts.items()}

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """The LoRA adapter weights only (megabytes; the 4-bit base is rebuilt from its spec)."""
        # Straight from the parameters: state_dict() of a 4-bit model would also serialise every quant state.
        return {n: p.detach().cpu().contiguous() for n, p in self.named_parameters() if p.requires_grad}

    def load_trainable_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        params = self.matching_trainable_parameters(state)
        with torch.no_grad():
            for name, p in params.items():
                p.copy_(state[name])


def _unsloth_bundle(config: VlmQloraConfig) -> QwenVLBundle:
    """Unsloth's FastVisionModel with the same adapters (GPU only; UNTESTED here: not installable).

    Unsloth loads its own patched 4-bit model and applies the LoRA itself (with its fused kernels and
    "unsloth" gradient checkpointing); the target regex is the one the peft path uses, so the adapted
    layers, and the parameter count, are the same.
    """
    from unsloth import FastVisionModel

    model, processor = FastVisionModel.from_pretrained(
        str(local_dir(config.backbone) or canonical_name(config.backbone)),
        load_in_4bit=config.quantize == "nf4",
        use_gradient_checkpointing="unsloth" if config.gradient_checkpointing else False,
    )
    model = FastVisionModel.get_peft_model(
        model, r=config.r, lora_alpha=config.alpha, lora_dropout=config.dropout, bias="none",
        target_modules=target_regex(config.target_modules),
    )
    log.info("vlm_qlora: using Unsloth's FastVisionModel")
    return QwenVLBundle(model, processor, config.backbone, "unsloth")
