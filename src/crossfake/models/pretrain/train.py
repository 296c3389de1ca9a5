"""Contrastive pretraining of a small CLIP on synthetic faces, and the folder it is shipped as.

``pretrain(config)`` trains a :class:`~transformers.CLIPModel` (the same classes as OpenAI's CLIP, with
a :class:`~transformers.CLIPTokenizer` and :class:`~transformers.CLIPImageProcessor`) with CLIP's
symmetric InfoNCE loss on the image-caption pairs of :mod:`crossfake.models.pretrain.data`;
``save_backbone`` writes it as a ``save_pretrained`` folder that ``build_clip("local-dir:...")`` (or the
``synth-tiny`` alias, for the copy in the package) loads offline::

    OUT/model.safetensors  config.json                     the CLIPModel (fp32)
    OUT/vocab.json  merges.txt  tokenizer_config.json ...  its tokenizer
    OUT/preprocessor_config.json                           input size and normalisation
    OUT/pretrain.yaml                                      the recipe (rebuilds it)
    OUT/training_log.json                                  losses, retrieval accuracy, time, versions
    OUT/manifest.json  README.md                           sha256 of every file; what it is

Deterministic for a seed on a given machine and thread count: the data is a pure function of (seed,
step), the initialisation is seeded, and nothing else is random.
"""

from __future__ import annotations

import concurrent.futures
import math
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from crossfake.evaluation.metrics import roc_auc
from crossfake.models.backbones.clip import ImagePreprocess
from crossfake.models.pretrain.config import PretrainConfig, PretrainModel
from crossfake.models.pretrain.data import FaceCaptionStream, Sample, build_tokenizer
from crossfake.utils.io import write_json_atomic, write_text_atomic
from crossfake.utils.logging import get_logger
from crossfake.utils.provenance import file_sha256, provenance

log = get_logger("pretrain")

#: Files of the shipped folder besides the ones ``save_pretrained`` writes.
CONFIG_FILE = "pretrain.yaml"
LOG_FILE = "training_log.json"
MANIFEST_FILE = "manifest.json"
README_FILE = "README.md"


@dataclass
class PretrainResult:
    """What :func:`pretrain` returns: the trained model with its tokenizer and processor, and its log."""

    model: Any
    tokenizer: Any
    processor: Any
    log: dict[str, Any] = field(default_factory=dict)


def build_model(cfg: PretrainModel, tokenizer, seed: int):
    """A freshly initialised :class:`~transformers.CLIPModel` of shape ``cfg`` (seeded)."""
    from transformers import CLIPConfig, CLIPModel

    config = CLIPConfig(
        projection_dim=cfg.projection_dim,
        text_config={
            "hidden_size": cfg.text_width, "intermediate_size": 4 * cfg.text_width,
            "num_attention_heads": cfg.text_heads, "num_hidden_layers": cfg.text_layers,
            "max_position_embeddings": cfg.max_text_len, "vocab_size": len(tokenizer),
            "bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id,
            "pad_token_id": tokenizer.pad_token_id,
        },
        vision_config={
            "hidden_size": cfg.vision_width, "intermediate_size": 4 * cfg.vision_width,
            "num_attention_heads": cfg.vision_heads, "num_hidden_layers": cfg.vision_layers,
            "patch_size": cfg.patch_size, "image_size": cfg.image_size,
        },
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return CLIPModel(config)


def build_processor(cfg: PretrainModel):
    """The image processor: resize to ``image_size`` (bicubic), OpenAI CLIP's mean and std."""
    from transformers import CLIPImageProcessor

    size = cfg.image_size
    return CLIPImageProcessor(size={"shortest_edge": size}, crop_size={"height": size, "width": size})


def _inputs(samples: list[Sample], tokenizer, transform) -> dict[str, torch.Tensor]:
    # The detectors' own transform (from the processor config), so pretraining sees what they will see;
    # applied to the whole batch at once (the same result as image by image, ~15x faster).
    images = torch.from_numpy(np.stack([s.image for s in samples])).permute(0, 3, 1, 2)
    pixels = transform(images).as_subclass(torch.Tensor).contiguous()
    text = tokenizer([s.caption for s in samples], padding=True, truncation=True, return_tensors="pt")
    return {"pixel_values": pixels, "input_ids": text["input_ids"], "attention_mask": text["attention_mask"]}


#: The two prompts of the authenticity loss (and of zero-shot use): index 1 = edited = "fake".
AUTHENTICITY_PROMPTS = ("a photo of a real face", "a photo of a fake face")


def authenticity_logits(model, image_embeds: torch.Tensor, prompts: dict[str, torch.Tensor]) -> torch.Tensor:
    """CLIP's zero-shot logits of each image against the real / fake prompts (``[n, 2]``)."""
    text = model.get_text_features(**prompts)
    text = getattr(text, "pooler_output", text)
    text = text / text.norm(dim=-1, keepdim=True)
    return model.logit_scale.exp() * image_embeds @ text.T


def _lr_factor(step: int, warmup: int, total: int) -> float:
    """Linear warm-up, then cosine decay to 10% of the peak."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))


@torch.no_grad()
def evaluate(model, tokenizer, transform, batches: list[list[Sample]]) -> dict[str, float]:
    """Held-out retrieval accuracy (image->caption, caption->image, within a batch), loss, and the AUC of
    the zero-shot real/fake prompts on edited vs plain images."""
    model.eval()
    i2t = t2i = loss = 0.0
    prompts = dict(tokenizer(list(AUTHENTICITY_PROMPTS), padding=True, return_tensors="pt"))
    labels, scores = [], []
    for samples in batches:
        out = model(**_inputs(samples, tokenizer, transform), return_loss=True)
        target = torch.arange(len(samples))
        i2t += (out.logits_per_image.argmax(1) == target).float().mean().item()
        t2i += (out.logits_per_text.argmax(1) == target).float().mean().item()
        loss += out.loss.item()
        logits = authenticity_logits(model, out.image_embeds, prompts)
        scores += (logits[:, 1] - logits[:, 0]).tolist()
        labels += [int(bool(s.edits)) for s in samples]
    model.train()
    n = max(1, len(batches))
    auc = roc_auc(np.array(labels), np.array(scores)) if 0 < sum(labels) < len(labels) else float("nan")
    return {"loss": round(loss / n, 4), "image_to_text_top1": round(i2t / n, 4),
            "text_to_image_top1": round(t2i / n, 4), "edited_auc": round(float(auc), 4)}


def pretrain(config: PretrainConfig, progress: bool = True) -> PretrainResult:
    """Train the backbone described by ``config`` (see the module docstring); returns it with its log."""
    t0 = time.perf_counter()
    tc = config.train
    tokenizer = build_tokenizer(config.model.max_text_len)
    processor = build_processor(config.model)
    transform = ImagePreprocess.from_processor(processor).transform()
    model = build_model(config.model, tokenizer, tc.seed)
    stream = FaceCaptionStream(config.data, tc.seed)
    held_out = [stream.batch(-1 - k, tc.batch_size) for k in range(tc.eval_batches)]

    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "embedding" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "embedding" not in n)]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": tc.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=tc.lr)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: _lr_factor(s, tc.warmup_steps, tc.steps))
    n_params = sum(p.numel() for p in model.parameters())
    log.info("pretraining %s: %s parameters, %d steps of %d image-caption pairs",
             config.name, f"{n_params:,}", tc.steps, tc.batch_size)

    losses: list[float] = []
    history: list[dict[str, Any]] = [{"step": 0, **evaluate(model, tokenizer, transform, held_out)}]
    prompts = dict(tokenizer(list(AUTHENTICITY_PROMPTS), padding=True, return_tensors="pt"))
    model.train()
    # Rendering the next batch (numpy/OpenCV) overlaps the optimizer step (torch); batches are a pure
    # function of the step, so the overlap changes nothing in the result.
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool, \
            tqdm(total=tc.steps, desc="pretrain", unit="step", disable=not progress) as bar:
        pending = pool.submit(stream.batch, 0, tc.batch_size)
        for step in range(tc.steps):
            samples = pending.result()
            if step + 1 < tc.steps:
                pending = pool.submit(stream.batch, step + 1, tc.batch_size)
            out = model(**_inputs(samples, tokenizer, transform), return_loss=True)
            loss = out.loss
            if tc.authenticity_weight > 0:  # edited images should match "fake", plain ones "real"
                target = torch.tensor([bool(s.edits) for s in samples], dtype=torch.long)
                logits = authenticity_logits(model, out.image_embeds, prompts)
                loss = loss + tc.authenticity_weight * torch.nn.functional.cross_entropy(logits, target)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            with torch.no_grad():  # CLIP's clamp: a temperature below 1/100 destabilises training
                model.logit_scale.clamp_(0, math.log(100))
            losses.append(round(loss.item(), 4))
            bar.update(1)
            bar.set_postfix(loss=f"{losses[-1]:.3f}")
            if (step + 1) % tc.log_every == 0 or step + 1 == tc.steps:
                record = {"step": step + 1, "train_loss": round(float(np.mean(losses[-tc.log_every:])), 4),
                          "lr": round(schedule.get_last_lr()[0], 6), "temperature": round(
                              1 / model.logit_scale.exp().item(), 4),
                          **evaluate(model, tokenizer, transform, held_out)}
                history.append(record)
                log.info("step %d/%d: train loss %.3f, held-out loss %.3f, image->text top-1 %.3f, "
                         "real/fake prompt AUC %.3f", step + 1, tc.steps, record["train_loss"], record["loss"],
                         record["image_to_text_top1"], record["edited_auc"])
    model.eval()
    seconds = round(time.perf_counter() - t0, 1)
    summary = {"parameters": n_params, "steps": tc.steps, "pairs_seen": tc.steps * tc.batch_size,
               "seconds": seconds, "torch_threads": torch.get_num_threads(), "final": history[-1],
               "initial": history[0]}
    return PretrainResult(model, tokenizer, processor,
                          {"summary": summary, "history": history, "losses": losses})


def save_backbone(result: PretrainResult, config: PretrainConfig, out: str | Path) -> Path:
    """Write the ``save_pretrained`` folder (plus recipe, log, manifest and README) to ``out``.

    The folder is assembled beside ``out`` and swapped in at the end, so ``out`` is never half-written.
    """
    out = Path(out)
    tmp = out.parent / f".{out.name}.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    result.model.save_pretrained(tmp, safe_serialization=True)
    result.tokenizer.save_pretrained(tmp)
    result.processor.save_pretrained(tmp)
    for path in tmp.iterdir():  # safetensors writes its file 0600; the folder is meant to be shipped
        path.chmod(0o644)
    write_text_atomic(tmp / CONFIG_FILE, _yaml_header(config) + config.to_yaml())
    write_json_atomic(tmp / LOG_FILE, {**result.log, "provenance": provenance()})
    files = sorted(p.name for p in tmp.iterdir() if p.is_file())
    manifest = {name: {"sha256": file_sha256(tmp / name), "bytes": (tmp / name).stat().st_size}
                for name in files}
    write_json_atomic(tmp / MANIFEST_FILE, manifest)
    write_text_atomic(tmp / README_FILE, _readme(config, result.log["summary"], manifest))
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    log.info("wrote %s (model.safetensors: %.1f MB)", out, manifest["model.safetensors"]["bytes"] / 1e6)
    return out


def _yaml_header(config: PretrainConfig) -> str:
    return (f"# The recipe of the {config.name} CLIP backbone (crossfake.models.pretrain).\n"
            "# Rebuild: python -m crossfake.models.pretrain --config THIS_FILE --out DIR\n")


def _readme(config: PretrainConfig, summary: dict[str, Any], manifest: dict[str, dict]) -> str:
    m, final, initial = config.model, summary["final"], summary["initial"]
    rows = "\n".join(f"| `{name}` | {entry['bytes']:,} | `{entry['sha256']}` |" for name, entry in manifest.items())
    return f"""# {config.name}: a small CLIP pretrained on synthetic faces

A `transformers` `CLIPModel` (ViT {m.image_size} px, patch {m.patch_size}, width {m.vision_width}, \
{m.vision_layers} layers; text width {m.text_width}, {m.text_layers} layers; {summary['parameters']:,} \
parameters, fp32) with its `CLIPTokenizer` and `CLIPImageProcessor`, trained by crossfake's own
`crossfake.models.pretrain` with CLIP's contrastive loss on {summary['pairs_seen']:,} image-caption pairs of
synthetic faces generated on the fly: faces rendered by `crossfake.data.synth` (identities from a seed
stream `crossfake synth` never uses), cropped as `crossfake prepare` crops, some edited locally (smoothed,
recoloured, warped, pasted or grainy patches at random places) and degraded globally (blur, grain, tint,
exposure, JPEG), and captioned from the renderer's attributes and those edits.

It is the demo's backbone (`method.backbone: synth-tiny`): the stand-in for OpenAI's CLIP where no hub
download is possible: a backbone pretrained on faces like the demo's instead of random weights. It never saw the
synthetic FaceForensics++ manipulations (FaceSwap, NeuralTextures, Face2Face, Deepfakes) nor their labels.
It knows nothing about real photographs.

## Rebuild

    make tiny-backbone          # = python -m crossfake.models.pretrain --out src/crossfake/assets/{config.name}

with the recipe in `pretrain.yaml` (the shipped `configs/pretrain/{config.name}.yaml`). Deterministic for
its seed on a given machine and thread count; `manifest.json` lists every file's sha256.

## Training log

- steps: {summary['steps']} x {config.train.batch_size} pairs, {summary['seconds']} s on \
{summary['torch_threads']} CPU threads
- held-out contrastive loss: {initial['loss']} -> {final['loss']}
- held-out retrieval top-1 within a batch of {config.train.batch_size}: image->caption \
{initial['image_to_text_top1']} -> {final['image_to_text_top1']}, caption->image \
{initial['text_to_image_top1']} -> {final['text_to_image_top1']}

The full history is in `training_log.json`.

## Files

| file | bytes | sha256 |
| --- | ---: | --- |
{rows}
"""
