"""Benchmark CLIP ViT-B/32 in crossfake: the crop-loading path, training steps of the methods that adapt
CLIP (LoRA beside Effort, LayerNorm tuning and prompt tuning) and the feature cache.

The model is a ViT-B/32 ``CLIPModel`` with the OpenAI checkpoint's shapes and *random* weights, built on
the device here (no download): speed and memory do not depend on the weight values. Its preprocessing is
the OpenAI CLIP processor's (224 px, bicubic, CLIP mean/std), read through crossfake's ``ImagePreprocess``.
``--images`` 256×256 PNG face-crop stand-ins are written to a temporary folder first.

  inference       images/s of ``get_image_features`` on in-memory tensors (the model alone), of the data
                  path alone (PNG decode + checkpoint transform through FaceCropDataset/make_loader), and
                  of crossfake's ``extract_features`` on the crops on disk (both together, as the trainer
                  and ``crossfake evaluate`` run them); the ratio is what reading from disk costs
  linear probe    one epoch of the linear probe over the crops: with a cold FeatureCache (cache key +
                  feature extraction + head training) and then warm (cache key + memory-mapped features +
                  head training), as the trainer does it
  training steps  one training step of each of ``--methods`` (default: the seeds' ``lora``, r=32 alpha=64
                  q_proj/v_proj + head, beside ``effort``, ``layernorm`` and ``prompt_tuning`` at their
                  defaults): the method's own ``training_step`` (its extra losses included) + backward +
                  AdamW, on in-memory tensors, averaged over ``--steps`` steps after one warm-up step; with
                  its peak memory. Each method runs in a fresh process on a fresh copy of the random
                  ViT-B/32 (LoRA and Effort rewrite the vision tower in place). ``prompt_tuning`` trains
                  on cached image features in crossfake's trainer, so its step is also timed on a batch
                  of features (``head`` only);
                  its prompts are tokenised with the tiny test tokenizer (the real one cannot be loaded
                  offline; the token ids change nothing in the cost)

Memory on CPU is the process's resident set size (RSS, from /proc/self/statm) sampled every 2 ms by a
background thread while the steps run: the peak, and the peak minus the RSS just before the warm-up step
(the libraries and the model's weights are in that baseline; activations, gradients, AdamW state and
allocator slack are in the difference). tracemalloc does not see torch's allocations, and ``ru_maxrss`` is a
process-lifetime high-water mark that earlier phases may already have raised, so it is printed for
reference only. On CUDA the figures are ``torch.cuda.max_memory_allocated`` instead.

Run:  python benchmarks/bench_clip.py [--images 256] [--batch-size 32] [--threads N] [--steps 3]
                                     [--workers N] [--device cpu|cuda] [--methods lora effort ...]
                                     [--skip-inference]
"""

from __future__ import annotations

import argparse
import gc
import multiprocessing
import os
import platform
import resource
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import torch
from torch.utils.data import TensorDataset

from crossfake.data.preprocess.crop import save_image
from crossfake.methods import method_class, method_config
from crossfake.models.backbones.clip import ClipBundle, ImagePreprocess, tiny_clip_tokenizer
from crossfake.models.backbones.spec import CLIP_SHAPES
from crossfake.scoring.data import Collate, FaceCropDataset, make_loader
from crossfake.scoring.device import autocast, resolve_precision
from crossfake.scoring.features import FeatureCache, cache_key, extract_features
from crossfake.training.data import shuffled_loader
from crossfake.training.loop import TrainStep
from crossfake.utils.workers import default_workers

BACKBONE = "openai/clip-vit-base-patch32"
MIB = 2**20


# -- setup ------------------------------------------------------------------------------------------------


def random_clip(name: str = BACKBONE, seed: int = 0) -> ClipBundle:
    """A runnable CLIP of the known shape ``name`` with random weights, and the OpenAI CLIP preprocessing.

    ``build_clip(name, weights=False)`` builds on the meta device (no storage, cannot run); this builds the
    same architecture on the CPU. ``CLIPImageProcessor()``'s defaults are the OpenAI checkpoints' processor
    config (shortest edge 224, centre crop 224, bicubic, CLIP mean/std).
    """
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = CLIPModel(CLIPConfig(**CLIP_SHAPES[name]))
    preprocess = ImagePreprocess.from_processor(CLIPImageProcessor())
    return ClipBundle(model.eval(), None, preprocess, name, "random")


def write_crops(folder: Path, n: int, size: int = 256, seed: int = 0) -> pd.DataFrame:
    """``n`` photo-like size×size PNG crops (smooth colour field, a face-ish ellipse, sensor noise) and their
    manifest rows (the columns the dataset and the feature cache read; half labelled fake)."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        img = cv2.resize(
            rng.integers(0, 256, (6, 6, 3), dtype=np.uint8), (size, size), interpolation=cv2.INTER_CUBIC
        )
        c = size // 2 + int(rng.integers(-12, 13))
        cv2.ellipse(
            img,
            (c, c),
            (size // 3, int(size * 0.42)),
            0,
            0,
            360,
            tuple(int(v) for v in rng.integers(120, 230, 3)),
            -1,
            cv2.LINE_AA,
        )
        img = cv2.add(img, rng.integers(0, 8, img.shape, dtype=np.uint8))
        rel = f"crops/{i:06d}.png"
        save_image(folder / rel, img)
        manipulation = "fake" if i % 2 else "real"
        rows.append(
            {
                "sample_id": f"bench/{manipulation}/v{i // 8:04d}/{i % 8:06d}",
                "path": rel,
                "video_id": f"bench/{manipulation}/v{i // 8:04d}",
                "label": i % 2,
            }
        )
    df = pd.DataFrame(rows)
    df.attrs["root"] = str(folder)  # what read_manifest sets: crop paths resolve against it
    return df


# -- measuring --------------------------------------------------------------------------------------------


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], object], device: torch.device) -> tuple[float, object]:
    sync(device)
    start = time.perf_counter()
    out = fn()
    sync(device)
    return time.perf_counter() - start, out


def current_rss() -> int | None:
    """Resident set size of this process in bytes (Linux), or None."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def max_rss() -> int:
    """``ru_maxrss`` in bytes (kilobytes on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if platform.system() == "Darwin" else peak * 1024


class RssPeak:
    """Highest RSS seen by a thread polling /proc/self/statm every ``interval`` seconds while active."""

    def __init__(self, interval: float = 0.002) -> None:
        self.interval, self.peak = interval, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, current_rss() or 0)
            self._stop.wait(self.interval)

    def __enter__(self) -> RssPeak:
        self.peak = current_rss() or 0
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, current_rss() or 0)


# -- the three measurements -------------------------------------------------------------------------------


def bench_inference(
    detector, rows: pd.DataFrame, batch: int, workers: int, device: torch.device, precision: str, work: Path
) -> dict[str, float]:
    n = len(rows)
    clip = detector.clip
    pixels = torch.randn(batch, 3, detector.preprocess.crop, detector.preprocess.crop, device=device)

    def raw() -> None:
        with torch.no_grad(), autocast(device, precision):
            for first in range(0, n, batch):
                clip.get_image_features(pixel_values=pixels[: min(batch, n - first)])

    def loader_only() -> None:
        loader = make_loader(
            FaceCropDataset(rows, detector.transform), batch, Collate(detector.collate), num_workers=workers
        )
        for _ in loader:
            pass

    def disk() -> None:
        extract_features(
            detector,
            rows,
            work / "features.npy",
            batch_size=batch,
            precision=precision,
            num_workers=workers,
            progress=False,
        )

    detector.eval()
    with torch.no_grad(), autocast(device, precision):
        clip.get_image_features(pixel_values=pixels)  # warm-up: kernel selection, first-touch allocations
    return {
        "raw": timed(raw, device)[0],
        "loader": timed(loader_only, device)[0],
        "disk": timed(disk, device)[0],
    }


def head_epoch(
    detector,
    features: np.ndarray,
    labels: torch.Tensor,
    batch: int,
    lr: float,
    device: torch.device,
    precision: str,
) -> None:
    """One epoch of the head on cached features, as crossfake's trainer runs it (TrainStep on features)."""
    torch.manual_seed(0)
    detector.classifier.reset_parameters()  # every measured epoch does the same work
    data = TensorDataset(torch.from_numpy(np.array(features)), labels, torch.arange(len(labels)))
    loader = shuffled_loader(data, batch, None, seed=0, num_workers=0)
    step = TrainStep(detector, on_features=True).train()
    optimizer = torch.optim.AdamW(detector.trainable_parameters(), lr=lr)
    for inputs, y, _ in loader:
        with autocast(device, precision):
            loss = step(inputs.to(device), y.to(device))["loss"]
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)


def bench_linear_probe(
    detector,
    rows: pd.DataFrame,
    batch: int,
    workers: int,
    device: torch.device,
    precision: str,
    cache_root: Path,
) -> dict[str, float]:
    cache = FeatureCache(cache_root)
    labels = torch.from_numpy(rows["label"].to_numpy(np.float32))
    lr = detector.config.lr
    out: dict[str, float] = {}
    for phase in ("cold", "warm"):
        misses = cache.misses
        t_get, features = timed(
            lambda: cache.get(
                detector, rows, batch_size=batch, precision=precision, num_workers=workers, progress=False
            ),
            device,
        )
        t_head, _ = timed(
            lambda f=features: head_epoch(detector, f, labels, batch, lr, device, precision), device
        )
        if (cache.misses > misses) != (phase == "cold"):
            raise RuntimeError(f"{phase} feature cache: expected a {'miss' if phase == 'cold' else 'hit'}")
        out[f"{phase}_get"], out[f"{phase}_head"] = t_get, t_head
    out["key"] = timed(lambda: cache_key(detector, rows, precision), device)[0]
    return out


#: Training-step measurements: method -> options (the seeds' LoRA row, then the methods beyond the seeds).
STEP_METHODS: dict[str, dict[str, object]] = {
    "lora": {"r": 32, "alpha": 64, "target_modules": ("q_proj", "v_proj")},
    "effort": {},
    "layernorm": {},
    "prompt_tuning": {},
}


def bench_train_step(
    name: str, batch: int, steps: int, device: torch.device, precision: str
) -> dict[str, float]:
    """Time ``steps`` training steps (after a warm-up step) of method ``name`` on a fresh random ViT-B/32."""
    bundle = random_clip()
    bundle.tokenizer = tiny_clip_tokenizer()  # for text-side methods, which tokenise their prompts at build time
    config = method_config(name, backbone=BACKBONE, **STEP_METHODS.get(name, {}))
    torch.manual_seed(0)
    t_build, detector = timed(lambda: method_class(name)(config, bundle).to(device).train(), device)
    trainable, total = detector.parameter_counts()
    optimizer = torch.optim.AdamW(detector.trainable_parameters(), lr=config.lr)
    size = bundle.preprocess.crop
    pixels = torch.randn(batch, 3, size, size, device=device)
    labels = (torch.arange(batch, device=device) % 2).float()

    def step(inputs: torch.Tensor = pixels, on_features: bool = False) -> None:
        with autocast(device, precision):
            if on_features:  # what crossfake's trainer runs for a feature-cacheable method
                logits = detector.head(inputs)
                loss = torch.nn.functional.binary_cross_entropy_with_logits(logits.float(), labels)
            else:
                loss = detector.training_step(inputs, labels)["loss"]
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    gc.collect()
    weights = sum(t.numel() * t.element_size() for t in detector.state_dict().values())
    out: dict[str, float] = {"trainable": trainable, "total": total, "weights": weights, "build": t_build}
    if detector.supports_feature_cache:
        with torch.no_grad(), autocast(device, precision):
            features = detector.features(pixels).float()
        step(features, True)
        out["feature_steps"] = timed(lambda: [step(features, True) for _ in range(steps)], device)[0]
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        out["warmup"] = timed(step, device)[0]
        out["steps"] = timed(lambda: [step() for _ in range(steps)], device)[0]
        out["mem_before"], out["mem_peak"] = before, torch.cuda.max_memory_allocated(device)
    else:
        maxrss_before, before = max_rss(), current_rss()
        with RssPeak() as peak:
            out["warmup"] = timed(step, device)[0]
            out["steps"] = timed(lambda: [step() for _ in range(steps)], device)[0]
        out["maxrss_before"], out["maxrss_after"] = maxrss_before, max_rss()
        if before is not None:
            out["mem_before"], out["mem_peak"] = before, peak.peak
    return out


def bench_train_step_isolated(
    name: str, batch: int, steps: int, device: torch.device, precision: str, threads: int | None
) -> dict[str, float]:
    """:func:`bench_train_step` in a fresh process, so that its memory figures are its own: in one process
    the allocator keeps what an earlier method freed, and a later method's RSS barely grows."""
    context = multiprocessing.get_context("spawn")
    with context.Pool(1) as pool:
        return pool.apply(_train_step_child, (name, batch, steps, str(device), precision, threads))


def _train_step_child(
    name: str, batch: int, steps: int, device: str, precision: str, threads: int | None
) -> dict[str, float]:
    if threads:
        torch.set_num_threads(threads)
    return bench_train_step(name, batch, steps, torch.device(device), precision)


# -- main -------------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--images",
        type=int,
        default=256,
        help="crops to write and run through inference and the linear probe (default 256)",
    )
    parser.add_argument("--batch-size", type=int, default=32, help="images per batch (default 32)")
    parser.add_argument(
        "--steps", type=int, default=3, help="timed training steps per method, after one warm-up step (default 3)"
    )
    parser.add_argument(
        "--methods", nargs="+", default=list(STEP_METHODS), metavar="METHOD",
        help=f"methods whose training step is timed (default: {' '.join(STEP_METHODS)})",
    )
    parser.add_argument(
        "--skip-inference", action="store_true",
        help="time only the training steps (no crops, inference or linear probe)",
    )
    parser.add_argument(
        "--threads", type=int, help="torch intra-op threads (default: torch's own, usually the CPU count)"
    )
    parser.add_argument(
        "--workers", type=int, help="image-loading processes (default: crossfake's for the device)"
    )
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="default cpu")
    parser.add_argument(
        "--precision",
        choices=("auto", "fp32", "bf16"),
        default="auto",
        help="auto (default): bf16 autocast on CUDA, fp32 on CPU, as crossfake's trainer",
    )
    parser.add_argument(
        "--keep", type=Path, help="write crops and cache here and keep them (default: a temp dir)"
    )
    args = parser.parse_args()
    if args.images < 1 or args.batch_size < 1 or args.steps < 1:
        parser.error("--images, --batch-size and --steps must be positive")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda, but torch sees no CUDA device")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    precision = resolve_precision(args.precision, device)
    workers = default_workers() if args.workers is None else args.workers
    n, b = args.images, args.batch_size

    work = args.keep or Path(tempfile.mkdtemp(prefix="bench_clip_"))
    work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    try:
        where = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "CPU"
        print(
            f"torch {torch.__version__}, {device} ({where}), {precision}; {torch.get_num_threads()} intra-op / "
            f"{torch.get_num_interop_threads()} inter-op threads, {os.cpu_count()} CPUs, "
            f"{workers} loader worker(s); load average {os.getloadavg()[0]:.2f}"
        )
        inf = lp = None
        if not args.skip_inference:
            t_write, rows = timed(lambda: write_crops(work, n), device)
            kib = sum((work / p).stat().st_size for p in rows["path"]) / len(rows) / 1024
            print(f"wrote {n} 256x256 PNG crops ({kib:.0f} KiB each on average) in {t_write:.1f} s")
            t_build, bundle = timed(random_clip, device)
            probe = method_class("linear_probe")(method_config("linear_probe", backbone=BACKBONE), bundle).to(
                device
            )
            pre = bundle.preprocess
            print(
                f"built ViT-B/32 CLIP with random weights in {t_build:.1f} s; preprocessing: resize "
                f"{pre.resize} {pre.interpolation}, centre crop {pre.crop}, CLIP mean/std"
            )
            inf = bench_inference(probe, rows, b, workers, device, precision, work)
            print("inference done")
            lp = bench_linear_probe(probe, rows, b, workers, device, precision, work / "cache")
            print("linear probe done")
            del probe, bundle
        trained: dict[str, dict[str, float]] = {}
        for name in args.methods:
            trained[name] = bench_train_step_isolated(name, b, args.steps, device, precision, args.threads)
            print(f"{name} steps done ({time.perf_counter() - started:.0f} s in all)")
        print()

        # -- the table --------------------------------------------------------------------------------------
        lines: list[tuple[str, str, str, str]] = []

        def row(label: str, seconds: float | None = None, images: int | None = None, note: str = "") -> None:
            secs = f"{seconds:8.2f}" if seconds is not None else ""
            rate = f"{images / seconds:8.1f}" if seconds and images else ""
            lines.append((label, secs, rate, note))

        def mib(x: float) -> str:
            return f"{x / MIB:,.0f} MiB"

        if inf is not None:
            lines.append((f"inference, {n} images, batch {b}", "", "", ""))
            row("  model only: get_image_features, in-memory", inf["raw"], n)
            row("  data only: PNG decode + transform (loader)", inf["loader"], n)
            row("  crops on disk: extract_features", inf["disk"], n)
            row("  disk path / model only", note=f"{inf['raw'] / inf['disk']:.2f}x the model-only rate")

        steps = args.steps
        what = "GPU memory allocated" if device.type == "cuda" else "RSS"
        for name, m in trained.items():
            options = " ".join(f"{k}={v}" for k, v in STEP_METHODS.get(name, {}).items()) or "defaults"
            lines.append((f"{name} step ({options}), batch {b}", "", "", ""))
            row("  build (from the loaded CLIP)", m["build"])
            row("  warm-up step (first, not averaged)", m["warmup"], b)
            row(f"  training_step + bwd + AdamW, mean of {steps}", m["steps"] / steps, b, "s/step")
            if "feature_steps" in m:
                row(f"  on cached features (head only), mean of {steps}", m["feature_steps"] / steps, b,
                    "s/step: what the trainer runs")
            row(
                "  trainable / total parameters",
                note=f"{m['trainable']:,.0f} / {m['total']:,.0f} ({100 * m['trainable'] / m['total']:.3f}%)",
            )
            if "mem_peak" in m:
                row(
                    f"  {what} before the warm-up step",
                    note=f"{mib(m['mem_before'])} (libraries + model; weights: {mib(m['weights'])})",
                )
                row(
                    f"  peak {what} during the steps",
                    note=f"{mib(m['mem_peak'])} (+{mib(m['mem_peak'] - m['mem_before'])} for the step)",
                )
            if "maxrss_after" in m:
                row(
                    "  ru_maxrss, before -> after the steps",
                    note=f"{mib(m['maxrss_before'])} -> {mib(m['maxrss_after'])} (process high-water mark)",
                )

        if lp is not None:
            lines.append((f"linear-probe epoch, {n} crops, batch {b}", "", "", ""))
            row("  cold cache: key + extract features", lp["cold_get"], n)
            row("  cold cache: head epoch", lp["cold_head"], n)
            row("  cold cache: epoch total", lp["cold_get"] + lp["cold_head"], n)
            row("  warm cache: key + load features (hit)", lp["warm_get"], n)
            row("  warm cache: head epoch", lp["warm_head"], n)
            row("  warm cache: epoch total", lp["warm_get"] + lp["warm_head"], n)
            row("  of which cache key (hashes frozen weights)", lp["key"], note="per cache lookup")
            cold, warm = lp["cold_get"] + lp["cold_head"], lp["warm_get"] + lp["warm_head"]
            row("  cold / warm epoch", note=f"{cold / warm:.1f}x")

        width = max(len(label) for label, *_ in lines)
        print(f"{'':<{width}}  {'wall s':>8}  {'img/s':>8}")
        for label, secs, rate, note in lines:
            print(f"{label:<{width}}  {secs:>8}  {rate:>8}  {note}".rstrip())
        print(
            f"(img/s from wall time; memory: see --help; load average now {os.getloadavg()[0]:.2f}: "
            "other processes on the CPUs slow every row)"
        )
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
