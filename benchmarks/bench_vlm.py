"""Benchmark crossfake's zero-shot VLM scoring (``vlm_zero_shot``): images/s in process, requests/s served.

Two modes, both through :class:`crossfake.vlm.backends.local.LocalBackend`, as ``vlm_zero_shot`` runs them:

  score           ``verdict_logits``: one teacher-forced forward pass per batch (the prompt, the image and
                  the answer prefix up to the verdict word), the verdict logit read from the last position
  score+explain   the same, then ``generate_answers``: greedy generation of the written answer, up to
                  ``--max-new-tokens`` (default 64) new tokens, and its parsing (a second pass, as the backend
                  does it so that the score never depends on the text)

The images are ``--images`` synthetic 256x256 face-like crops (smooth colour field, a skin-toned ellipse
with eyes and a mouth, sensor noise) held in memory: the VLM's processor resizes them itself. Each
(mode, batch size) row runs one untimed warm-up batch first, then all the images in batches of that size.

Models (``--models``, default ``tiny,7b``), both with *random* weights (speed does not depend on them):

  tiny  ``build_qwen_vl("tiny")``: a two-layer Qwen2.5-VL with a 512-token tokenizer and the stock
        Qwen2.5-VL processor capped at 56x56 px (2x2 merged image tokens) - it measures crossfake's code
        path (processor, padding, scoring, generation loop, parsing), not a real VLM's cost
  7b    the real Qwen2.5-VL-7B-Instruct architecture (``_KNOWN_SHAPES``), random weights, bf16, built on the
        GPU: needs ``--device cuda`` and the *real* processor (its tokenizer's ids must match the 7B vocabulary
        and its image processor sets the real image-token count), from ``--processor local-dir:PATH`` (a
        ``save_pretrained`` copy, or any folder holding the checkpoint's processor/tokenizer files) or the
        Hugging Face cache (default: ``Qwen/Qwen2.5-VL-7B-Instruct``, never downloaded). The model weights
        are never read. Without a GPU or a processor its row is printed as skipped, with the reason.

Random weights never emit the end-of-answer token at a realistic point, so generation is forced to exactly
``--max-new-tokens`` new tokens (``min_new_tokens``): every explain row generates the same number of tokens.

``--quantize nf4`` runs the model in 4-bit NF4 (bitsandbytes): the tiny model through crossfake's own
``build_qwen_vl(quantize="nf4")`` on the CPU; on CUDA (tiny and 7B) every linear layer but ``lm_head`` is
swapped for a ``bnb.nn.Linear4bit`` after the bf16 model is built on the GPU (what transformers' loader does
with random weights instead of a checkpoint).

**Served** (``--backend http``): requests/s of the HTTP backend against an OpenAI-compatible server at
each ``--concurrency`` (default 1,2,4,8: requests in flight at once), ``--requests`` images per row (default
32), after one untimed warm-up round per row. Without ``--base-url`` the script starts ``transformers serve``
(needs ``openai``, in the dev extra) on the tiny random Qwen2.5-VL written to a temporary folder, on a free
loopback port, offline, and stops it at the end. ``transformers serve`` ignores ``logprobs`` and rejects
prefix continuation, so the backend runs with ``continue_prefix=False`` there and every request is a greedy
answer of at most ``min(--max-new-tokens, 16)`` tokens (scoring only). It answers one request at a time
(one inference thread; its continuous batching is for text-only models), so concurrency only overlaps the
client's and server's HTTP, JSON, PNG and preprocessing work with generation. With ``--base-url URL
--served-model NAME`` (vLLM, SGLang, ...) the backend keeps its defaults (logprobs, continuation).

Run:  python benchmarks/bench_vlm.py [--models tiny,7b] [--images 32] [--batch-sizes 1,8]
                                    [--max-new-tokens 64] [--device cpu|cuda] [--quantize nf4]
                                    [--processor local-dir:PATH] [--prompt forensic_xml_v1] [--threads N]
      python benchmarks/bench_vlm.py --backend http [--concurrency 1,2,4,8] [--requests 32]
                                    [--base-url URL --served-model NAME] [--max-new-tokens 16]
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import logging
import os
import platform
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image

from crossfake.models.backbones.qwen_vl import DEFAULT_QWEN_VL, QwenVLBundle, build_qwen_vl, save_tiny
from crossfake.models.backbones.spec import QWEN_VL_SHAPES, canonical_name, local_dir
from crossfake.vlm import load_prompt
from crossfake.vlm.backends.http import HttpBackend
from crossfake.vlm.backends.local import LocalBackend
from crossfake.vlm.backends.serve import transformers_serve
from crossfake.vlm.prompts import PromptTemplate
from crossfake.vlm.scoring import encode

MODES = ("score", "score+explain")


class Skip(Exception):
    """A model's rows cannot run here; the message says why and what would make them run."""


# -- setup ------------------------------------------------------------------------------------------------


def face_crops(n: int, size: int = 256, seed: int = 0) -> list[Image.Image]:
    """``n`` face-like size x size RGB crops: smooth colour field, skin-toned ellipse, eyes, mouth, noise."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        img = cv2.resize(
            rng.integers(0, 256, (6, 6, 3), dtype=np.uint8), (size, size), interpolation=cv2.INTER_CUBIC
        )
        cx, cy = size // 2 + int(rng.integers(-12, 13)), size // 2 + int(rng.integers(-8, 9))
        skin = (int(rng.integers(150, 230)), int(rng.integers(110, 180)), int(rng.integers(90, 150)))
        cv2.ellipse(img, (cx, cy), (size // 3, int(size * 0.42)), 0, 0, 360, skin, -1, cv2.LINE_AA)
        for dx in (-size // 7, size // 7):
            cv2.ellipse(
                img, (cx + dx, cy - size // 10), (size // 18, size // 30), 0, 0, 360, (40, 30, 30), -1
            )
        cv2.ellipse(img, (cx, cy + size // 5), (size // 8, size // 30), 0, 0, 360, (150, 60, 70), -1)
        img = cv2.add(img, rng.integers(0, 8, img.shape, dtype=np.uint8))
        out.append(Image.fromarray(img))
    return out


def to_nf4(model: torch.nn.Module, compute_dtype: torch.dtype) -> torch.nn.Module:
    """Swap every ``nn.Linear`` but ``lm_head`` for a bitsandbytes NF4 ``Linear4bit`` on the same device."""
    import bitsandbytes as bnb

    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if not isinstance(child, torch.nn.Linear) or name == "lm_head":
                continue
            q = bnb.nn.Linear4bit(
                child.in_features,
                child.out_features,
                bias=child.bias is not None,
                compute_dtype=compute_dtype,
                compress_statistics=True,
                quant_type="nf4",
                device="meta",
            )
            q.weight = bnb.nn.Params4bit(
                child.weight.data, requires_grad=False, compress_statistics=True, quant_type="nf4"
            )
            if child.bias is not None:
                q.bias = torch.nn.Parameter(child.bias.data, requires_grad=False)
            setattr(module, name, q.to(child.weight.device))  # .to() quantises the weight
            del child
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return model


@contextlib.contextmanager
def quiet_stdout() -> Iterator[None]:
    """Silence file descriptor 1 (the ``tokenizers`` trainer behind the tiny tokenizer prints blank lines)."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 1)
            yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)


def build_tiny(device: torch.device, dtype: torch.dtype, quantize: str | None) -> QwenVLBundle:
    with quiet_stdout():
        return _build_tiny(device, dtype, quantize)


def _build_tiny(device: torch.device, dtype: torch.dtype, quantize: str | None) -> QwenVLBundle:
    if quantize == "nf4" and device.type == "cuda":
        bundle = build_qwen_vl("tiny", dtype=dtype)
        bundle.model = to_nf4(bundle.model.to(device), dtype)
        return bundle
    bundle = build_qwen_vl("tiny", dtype=dtype, quantize=quantize)  # crossfake's own NF4 path on the CPU
    if quantize is None:
        bundle.model = bundle.model.to(device)
    return bundle


def load_processor(spec: str):
    """The processor of a real Qwen2.5-VL checkpoint, from a folder or the local hub cache (no download)."""
    from transformers import AutoProcessor

    try:
        local = local_dir(spec)
    except Exception as e:  # CrossfakeError: a folder that does not exist
        raise Skip(str(e)) from e
    name = str(local) if local else canonical_name(spec)
    try:
        return AutoProcessor.from_pretrained(name, local_files_only=True)
    except (OSError, ValueError) as e:
        where = f"folder {name}" if local else f"the hub cache ({name!r})"
        raise Skip(
            f"no Qwen2.5-VL processor in {where}: {str(e).splitlines()[0][:120]}. Pass --processor "
            "local-dir:PATH (a copy of the checkpoint's processor/tokenizer files) or cache it where the hub "
            f"is reachable (`hf download {DEFAULT_QWEN_VL} --exclude '*.safetensors'`)"
        ) from e


def build_7b(device: torch.device, quantize: str | None, processor_spec: str) -> QwenVLBundle:
    """Qwen2.5-VL-7B's architecture with random bf16 weights on the GPU, and the real processor."""
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    if device.type != "cuda":
        raise Skip(
            "needs --device cuda: ~8.3B parameters (16.6 GB in bf16) - far too slow and too large for this CPU"
        )
    processor = load_processor(processor_spec)
    tokenizer = processor.tokenizer
    shape = copy.deepcopy(QWEN_VL_SHAPES[DEFAULT_QWEN_VL])
    if len(tokenizer) > shape["text_config"]["vocab_size"]:
        raise Skip(f"the processor's tokenizer ({len(tokenizer)} tokens) is not Qwen2.5-VL's")
    ids = {
        f"{key}_token_id": tokenizer.convert_tokens_to_ids(tok)
        for key, tok in (
            ("image", "<|image_pad|>"),
            ("video", "<|video_pad|>"),
            ("vision_start", "<|vision_start|>"),
            ("vision_end", "<|vision_end|>"),
        )
    }
    eos = tokenizer.convert_tokens_to_ids("<|im_end|>")
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    shape["text_config"].update(eos_token_id=eos, pad_token_id=pad)
    config = Qwen2_5_VLConfig(**shape, **ids, eos_token_id=eos, pad_token_id=pad)
    with torch.random.fork_rng(devices=[device]), torch.device(device):
        torch.manual_seed(0)
        model = Qwen2_5_VLForConditionalGeneration._from_config(config, dtype=torch.bfloat16)
    model.generation_config.eos_token_id, model.generation_config.pad_token_id = eos, pad
    if quantize == "nf4":
        model = to_nf4(model, torch.bfloat16)
    return QwenVLBundle(model.eval(), processor, DEFAULT_QWEN_VL, "shape")


# -- measuring --------------------------------------------------------------------------------------------


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], object], device: torch.device) -> float:
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start


def bench_model(
    bundle: QwenVLBundle,
    images: list[Image.Image],
    prompt: PromptTemplate,
    batch_sizes: list[int],
    max_new_tokens: int,
    device: torch.device,
) -> list[tuple[str, int, int, float]]:
    """(mode, batch, images, wall s) per mode and batch size, each after one untimed warm-up batch."""
    backend = LocalBackend(bundle, max_new_tokens=max_new_tokens)
    bundle.model.generation_config.min_new_tokens = max_new_tokens  # see the module docstring
    rows = []
    for mode in MODES:
        explain = mode != "score"
        for b in batch_sizes:
            backend.score(images[:b], prompt, explain)  # warm-up
            seconds = timed(
                lambda b=b, explain=explain: [
                    backend.score(images[i : i + b], prompt, explain) for i in range(0, len(images), b)
                ],
                device,
            )
            rows.append((mode, b, len(images), seconds))
            print(f"  {mode:<14} batch {b:>3}: {seconds:7.2f} s", flush=True)
    return rows


def describe(bundle: QwenVLBundle, images: list[Image.Image], prompt: PromptTemplate) -> str:
    """Parameters, and the input length of one image's prompt (of which image tokens)."""
    batch = encode(bundle.processor, images[:1], prompt, torch.device("cpu"))
    image_id = bundle.model.config.image_token_id
    n_image = int((batch["input_ids"] == image_id).sum())
    params = sum(p.numel() for p in bundle.model.parameters())
    dtype = next(bundle.model.parameters()).dtype
    return (
        f"{params / 1e6:,.1f}M stored parameters ({dtype}), {batch['input_ids'].shape[1]} input tokens per image "
        f"of which {n_image} image tokens (processor: {images[0].size[0]}x{images[0].size[1]} px -> "
        f"{int(batch['image_grid_thw'][0, 1]) * 14}x{int(batch['image_grid_thw'][0, 2]) * 14} px)"
    )


# -- served ---------------------------------------------------------------------------------------------


@contextlib.contextmanager
def tiny_served(timeout: float = 300.0) -> Iterator[tuple[str, str]]:
    """``transformers serve`` on the tiny random Qwen2.5-VL in a temporary folder: (root URL, model name)."""
    with tempfile.TemporaryDirectory(prefix="bench_vlm_") as tmp:
        with quiet_stdout():
            folder = save_tiny(Path(tmp) / "tiny-qwen25-vl")
        with transformers_serve(folder, Path(tmp) / "serve.log", timeout=timeout) as url:  # says why it fails
            yield url, str(folder)


def bench_http(
    backend_options: dict, images: list[Image.Image], prompt: PromptTemplate, concurrencies: list[int]
) -> list[tuple[int, int, float]]:
    """(concurrency, requests, wall s) per concurrency, each after an untimed warm-up round."""
    rows = []
    for c in concurrencies:
        backend = HttpBackend(concurrency=c, **backend_options)
        backend.score(images[:c], prompt, explain=False)  # warm-up
        start = time.perf_counter()
        backend.score(images, prompt, explain=False)
        seconds = time.perf_counter() - start
        rows.append((c, len(images), seconds))
        print(f"  concurrency {c:>2}: {seconds:7.2f} s", flush=True)
        logging.getLogger("crossfake.vlm.http").setLevel(logging.ERROR)  # its one-time notices: once
    return rows


def main_http(args: argparse.Namespace, prompt: PromptTemplate) -> None:
    images = face_crops(args.requests)
    options = {"max_new_tokens": args.max_new_tokens, "timeout": 300.0, "retries": 0}
    print(
        f"prompt {prompt.id}, {args.requests} synthetic 256x256 face crops per row, concurrency "
        f"{args.concurrency}, scoring requests (at most {min(args.max_new_tokens, 16)} new tokens); "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}"
    )
    with contextlib.ExitStack() as stack:
        if args.base_url:
            url, model = args.base_url, args.served_model
            where = f"{url} ({model})"
        else:
            t0 = time.perf_counter()
            url, model = stack.enter_context(tiny_served())
            options["continue_prefix"] = False  # transformers serve rejects the continuation fields
            where = f"transformers serve, tiny random Qwen2.5-VL, CPU fp32 (up in {time.perf_counter() - t0:.0f} s)"
        print(f"server: {where}")
        rows = bench_http({"base_url": url, "model": model, **options}, images, prompt, args.concurrency)
    base = rows[0][1] / rows[0][2]
    print(f"\n{'concurrency':>11}  {'requests':>8}  {'wall s':>8}  {'requests/s':>10}  {'x first':>7}")
    for c, n, seconds in rows:
        print(f"{c:>11}  {n:>8}  {seconds:>8.2f}  {n / seconds:>10.2f}  {n / seconds / base:>7.2f}")
    print(f"(load average now {os.getloadavg()[0]:.2f}: other processes on the CPUs slow every row)")


# -- main -------------------------------------------------------------------------------------------------


def positive_ints(text: str) -> list[int]:
    values = [int(v) for v in text.split(",") if v.strip()]
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers separated by commas, got {text!r}")
    return values


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--models",
        default="tiny,7b",
        help="comma-separated, of tiny and 7b (default tiny,7b; 7b needs --device cuda and the processor)",
    )
    parser.add_argument("--images", type=int, default=32, help="images per row (default 32)")
    parser.add_argument(
        "--batch-sizes", type=positive_ints, default=[1, 8], help="comma-separated (default 1,8)"
    )
    parser.add_argument(
        "--max-new-tokens", type=int, default=64, help="tokens generated per explanation (default 64)"
    )
    parser.add_argument(
        "--prompt", default="forensic_xml_v1", help="prompt template (default forensic_xml_v1)"
    )
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="default cpu")
    parser.add_argument(
        "--quantize", choices=("nf4",), help="run the model in 4-bit NF4 through bitsandbytes (default: off)"
    )
    parser.add_argument(
        "--processor",
        default=DEFAULT_QWEN_VL,
        help=f"the 7B's processor: local-dir:PATH, a folder, or a hub id read from the cache only "
        f"(default {DEFAULT_QWEN_VL})",
    )
    parser.add_argument(
        "--threads", type=int, help="torch intra-op threads (default: torch's own, usually the CPU count)"
    )
    parser.add_argument(
        "--backend",
        choices=("local", "http"),
        default="local",
        help="local: in-process rows (default); http: requests/s of the HTTP backend against a server",
    )
    parser.add_argument(
        "--concurrency",
        type=positive_ints,
        default=[1, 2, 4, 8],
        help="http: requests in flight at once, comma-separated (default 1,2,4,8)",
    )
    parser.add_argument("--requests", type=int, default=32, help="http: requests per row (default 32)")
    parser.add_argument(
        "--base-url", help="http: a running OpenAI-compatible server (default: start transformers serve)"
    )
    parser.add_argument("--served-model", help="http: the model name to send with --base-url")
    args = parser.parse_args()
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    if not models or set(models) - {"tiny", "7b"}:
        parser.error("--models takes tiny and/or 7b, comma-separated")
    if args.images < 1 or args.max_new_tokens < 1:
        parser.error("--images and --max-new-tokens must be positive")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda, but torch sees no CUDA device")
    if args.threads:
        torch.set_num_threads(args.threads)
    # transformers' load bars and bitsandbytes' CPU-kernel notice would bury the table.
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    warnings.filterwarnings("ignore", module="transformers")
    if args.backend == "http":
        if args.requests < 1 or args.max_new_tokens < 1:
            parser.error("--requests and --max-new-tokens must be positive")
        if args.base_url and not args.served_model:
            parser.error("--base-url needs --served-model (the request's model name)")
        main_http(args, load_prompt(args.prompt))
        return

    device = torch.device(args.device)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    prompt = load_prompt(args.prompt)
    images = face_crops(args.images)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "CPU"
    print(
        f"torch {torch.__version__}, {device} ({where}), {str(dtype).removeprefix('torch.')}"
        f"{', NF4' if args.quantize else ''}; {torch.get_num_threads()} intra-op threads, {os.cpu_count()} CPUs; "
        f"load average {os.getloadavg()[0]:.2f}\nprompt {prompt.id}, {args.images} synthetic 256x256 face crops, "
        f"batch sizes {args.batch_sizes}, explanations forced to {args.max_new_tokens} new tokens"
    )

    results: list[tuple[str, str, int, int, float]] = []
    skipped: dict[str, str] = {}
    started = time.perf_counter()
    for name in models:
        try:
            t0 = time.perf_counter()
            bundle = (
                build_tiny(device, dtype, args.quantize)
                if name == "tiny"
                else build_7b(device, args.quantize, args.processor)
            )
        except Skip as e:
            skipped[name] = str(e)
            print(f"{name}: skipped - {e}")
            continue
        print(
            f"{name}: built with random weights in {time.perf_counter() - t0:.1f} s; {describe(bundle, images, prompt)}"
        )
        results += [
            (name, *row)
            for row in bench_model(bundle, images, prompt, args.batch_sizes, args.max_new_tokens, device)
        ]
        del bundle
        if device.type == "cuda":
            torch.cuda.empty_cache()
    print(f"done in {time.perf_counter() - started:.0f} s\n")

    # -- the table ----------------------------------------------------------------------------------------
    head = ("model", "mode", "batch", "images", "wall s", "images/s")
    print(f"{head[0]:<6}  {head[1]:<14}  {head[2]:>5}  {head[3]:>6}  {head[4]:>8}  {head[5]:>9}")
    for name, mode, b, n, seconds in results:
        print(f"{name:<6}  {mode:<14}  {b:>5}  {n:>6}  {seconds:>8.2f}  {n / seconds:>9.2f}")
    for name, reason in skipped.items():
        print(f"{name:<6}  skipped: {reason}")
    print(
        f"(score+explain = verdict forward + greedy generation of {args.max_new_tokens} tokens + parsing; random "
        f"weights; load average now {os.getloadavg()[0]:.2f}: other processes on the CPUs slow every row)"
    )


if __name__ == "__main__":
    main()
