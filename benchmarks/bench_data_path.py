"""Benchmark the crop data path per crop format: how many face crops one CPU core decodes and preprocesses
per second, and so how many cores keep a GPU fed.

A ViT-B/32 scores about 10,000 crops/s on one GPU (issue 15); every crop it sees is first read, decoded and
preprocessed on the CPU by crossfake's loader. This measures that CPU cost for each format crossfake can
read, on ``--images`` face crops of ``--size`` px:

  crops           real faces when ``$CROSSFAKE_REALDATA`` is set: YuNet (its weights from the folder's
                  ``weights/``) on the photos under ``faces/``, faces of at least ``--size``/2.6 px (crops at
                  most ~2x upscaled), cut by crossfake's ``crop_face`` (default ``CropSpec``) and cycled to
                  ``--images`` with other margins and mirrored; else synthetic faces of
                  ``crossfake.data.synth`` (random identities and head motion, 640x480 frames with sensor
                  noise, cut around the renderer's face box). The output says which.
  formats         PNG as ``save_image`` writes it (OpenCV's default compression level); JPEG at
                  ``--quality`` (default: ``CropSpec``'s, 95) and at 90; and "packed": the same crops as one
                  uint8 array (``np.save``, read with ``np.load(mmap_mode="r")``, one crop indexed and
                  copied): the lower bound of any packed/shard format of raw pixels.
  decode          ms/crop of crossfake's ``load_crop`` (PIL open + decode to RGB) over every file; for
                  packed, the indexed copy wrapped as a PIL image, as a loader would hand it on.
  decode + prep   ms/crop of the whole loader: ``FaceCropDataset`` (for packed, a dataset over the array)
                  with the OpenAI CLIP processor's transform as crossfake's CLIP methods apply it
                  (``ImagePreprocess.from_processor(CLIPImageProcessor())``: resize 224 bicubic, centre crop
                  224, CLIP mean/std; the transform does not depend on the weights, so no model is built),
                  batched by ``make_loader`` (batch 32, ``torch.stack``). A last row times the transform
                  alone on crops already decoded in memory: the floor no format can beat.
  GPU decode      ``torchvision.io.decode_jpeg(device="cuda")`` on the JPEG bytes in batches, only where
                  torch sees a CUDA device.

Everything runs in one process on one core (``torch.set_num_threads(1)``, ``cv2.setNumThreads(1)``,
``num_workers=0``), so crops/s is per core; DataLoader workers scale it by about the number of cores.
Each timing is the best of ``--repeat`` passes over all crops, the formats taken in turn in each pass
(other load on the machine only ever slows a pass). The files are read from the page cache: disk or network
reads are not timed; the "MB/s at 10k/s" column is the read bandwidth the format would need at the GPU's
rate. The lossy formats' pixel error against the crops themselves is printed beside them (mean absolute
difference in 0-255 levels and PSNR over all crops).

Run:  python benchmarks/bench_data_path.py [--images 256] [--size 256] [--quality 95] [--repeat 3]
"""

from __future__ import annotations

import argparse
import hashlib
import math
import os
import platform
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import torch
from PIL import Image
from torch.utils.data import Dataset

from crossfake.data.preprocess.crop import CropSpec, crop_face, save_image
from crossfake.data.preprocess.face_detectors import Face, create_face_detector
from crossfake.data.synth.faces import FaceRenderer, Identity, Motion, to_uint8
from crossfake.models.backbones.clip import ImagePreprocess
from crossfake.scoring.data import Collate, FaceCropDataset, load_crop, make_loader

#: ViT-B/32 scoring rate on one GPU that issue 15 quotes: the rate the CPUs must feed.
GPU_RATE = 10_000
BATCH = 32
KIB, MB = 1024, 1e6
YUNET_FILE = "face_detection_yunet_2023mar.onnx"
PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png")


# -- the crops ------------------------------------------------------------------------------------------------


def real_crops(root: Path, n: int, size: int) -> tuple[list[np.ndarray], str]:
    """``n`` RGB crops of the real faces in the photos under ``root/faces`` (YuNet, score >= 0.9)."""
    face_detector = create_face_detector("yunet", weights=root / "weights" / YUNET_FILE, score_threshold=0.9)
    photos, seen = [], set()
    for path in sorted((root / "faces").rglob("*")):
        if path.suffix.lower() not in PHOTO_SUFFIXES:
            continue
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if digest in seen:  # the folder holds a few photos twice
            continue
        seen.add(digest)
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is not None:
            photos.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    min_side = size / 2.6  # the crop (1.3x the face) is upscaled at most 2x
    faces = [(rgb, f) for rgb in photos for f in face_detector(rgb) if max(f.width, f.height) >= min_side]
    if not faces:
        raise SystemExit(f"no face of {min_side:.0f}+ px found in the photos under {root / 'faces'}")
    crops = []
    for i in range(n):
        rgb, face = faces[i % len(faces)]
        cycle = i // len(faces)  # later cycles: another margin, every other one mirrored
        crop, _, _ = crop_face(rgb, face, CropSpec(size=size, margin=1.3 + 0.1 * (cycle % 4)))
        crops.append(np.ascontiguousarray(crop[:, ::-1]) if cycle % 2 else crop)
    what = (
        f"real faces: {len(faces)} faces of {min_side:.0f}+ px found by YuNet in {len(photos)} photos under "
        f"{root / 'faces'}, cut by crop_face" + (", cycled with other margins, mirrored" if n > len(faces) else "")
    )
    return crops, what


def synthetic_crops(n: int, size: int, frames_per_identity: int = 8, seed: int = 0) -> tuple[list[np.ndarray], str]:
    """``n`` RGB crops of crossfake's synthetic faces: ``frames_per_identity`` frames of each identity."""
    width, height = 640, 480
    spec = CropSpec(size=size)
    crops: list[np.ndarray] = []
    identities = math.ceil(n / frames_per_identity)
    for k in range(identities):
        identity = Identity.sample(np.random.default_rng([seed, 1, k]), k)
        renderer = FaceRenderer(identity, width, height)
        motion = Motion.sample(np.random.default_rng([seed, 2, k]), frames_per_identity * 3, 25.0)
        noise = np.random.default_rng([seed, 3, k])
        for t in range(0, frames_per_identity * 3, 3):  # 0.12 s apart: the pose and expression move
            if len(crops) == n:
                break
            frame = renderer.frame(motion, t)
            frame = to_uint8(frame + noise.standard_normal(frame.shape, dtype=np.float32) * np.float32(2.0))
            x, y, w, h = renderer.face_box(identity, motion, t)
            crops.append(crop_face(frame, Face(x, y, x + w, y + h, 1.0), spec)[0])
    what = (
        f"synthetic faces (crossfake.data.synth): {identities} identities x {frames_per_identity} frames at "
        f"{width}x{height} with sensor noise, cut by crop_face around the renderer's face box"
    )
    return crops, what


# -- the formats ----------------------------------------------------------------------------------------------


@dataclass
class Format:
    """One way of storing the crops: its label, what to time, and its size on disk."""

    label: str
    decode: Callable[[], list[Image.Image]]  # every crop, decoded to an RGB PIL image
    loader: Callable[[], None]  # one pass of the loader: decode + transform + batch
    bytes_per_crop: float
    decoded: list[np.ndarray] | None = None  # what reading back gives, for the pixel error


class PackedCrops(Dataset):
    """The crops of one ``(n, size, size, 3)`` uint8 ``.npy`` as FaceCropDataset items, memory-mapped."""

    def __init__(self, path: Path, transform: Callable[[Image.Image], torch.Tensor]) -> None:
        self.array = np.load(path, mmap_mode="r")
        self.transform = transform

    def __len__(self) -> int:
        return len(self.array)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, float, int]:
        return self.transform(Image.fromarray(np.array(self.array[i]))), 0.0, i


def file_format(
    label: str, folder: Path, crops: list[np.ndarray], fmt: str, quality: int, transform: Callable
) -> Format:
    """Write every crop as ``fmt`` with crossfake's ``save_image``; time ``load_crop`` and the loader on them."""
    suffix = "png" if fmt == "png" else f"q{quality}.jpg"
    rel = [f"{i:06d}.{suffix}" for i in range(len(crops))]
    for name, crop in zip(rel, crops, strict=True):
        save_image(folder / name, crop, fmt, quality)
    paths = [folder / name for name in rel]
    rows = pd.DataFrame({"sample_id": [f"bench/{i}" for i in range(len(crops))], "path": rel, "label": 0})
    rows.attrs["root"] = str(folder)  # what read_manifest sets: crop paths resolve against it

    def decode() -> list[Image.Image]:
        return [load_crop(p) for p in paths]

    def loader() -> None:
        for _ in make_loader(FaceCropDataset(rows, transform), BATCH, Collate(torch.stack), num_workers=0):
            pass

    size = sum(p.stat().st_size for p in paths) / len(paths)
    return Format(label, decode, loader, size, [np.asarray(im) for im in decode()])


def packed_format(folder: Path, crops: list[np.ndarray], transform: Callable) -> Format:
    path = folder / "crops.npy"
    np.save(path, np.stack(crops))

    def decode() -> list[Image.Image]:
        array = np.load(path, mmap_mode="r")
        return [Image.fromarray(np.array(array[i])) for i in range(len(array))]

    def loader() -> None:
        for _ in make_loader(PackedCrops(path, transform), BATCH, Collate(torch.stack), num_workers=0):
            pass

    return Format("packed uint8 (.npy, mmap)", decode, loader, crops[0].nbytes, [np.asarray(im) for im in decode()])


def pixel_error(decoded: list[np.ndarray], crops: list[np.ndarray]) -> tuple[float, float]:
    """Mean absolute difference (0-255 levels) and PSNR (dB) of ``decoded`` against ``crops``, over all."""
    a = np.stack(decoded).astype(np.float64)
    b = np.stack(crops).astype(np.float64)
    mae, mse = float(np.abs(a - b).mean()), float(((a - b) ** 2).mean())
    return mae, (math.inf if mse == 0 else 10 * math.log10(255**2 / mse))


def best_of(repeat: int, fns: dict[str, Callable[[], object]]) -> dict[str, float]:
    """The shortest wall time of each function over ``repeat`` rounds, the functions taken in turn each round."""
    best = dict.fromkeys(fns, math.inf)
    for _ in range(repeat):
        for key, fn in fns.items():
            start = time.perf_counter()
            fn()
            best[key] = min(best[key], time.perf_counter() - start)
    return best


def gpu_jpeg_decode(folder: Path, n: int, quality: int, repeat: int) -> float | None:
    """Best seconds to decode the ``q{quality}`` JPEG crops on the GPU in batches (bytes already read)."""
    if not torch.cuda.is_available():
        return None
    from torchvision.io import decode_jpeg, read_file

    data = [read_file(str(folder / f"{i:06d}.q{quality}.jpg")) for i in range(n)]
    device = torch.device("cuda")

    def run() -> None:
        for first in range(0, n, BATCH):
            decode_jpeg(data[first : first + BATCH], device=device)
        torch.cuda.synchronize(device)

    run()  # warm-up: nvjpeg handles, first allocations
    return best_of(repeat, {"gpu": run})["gpu"]


# -- main -------------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=256, help="face crops per format (default 256)")
    parser.add_argument("--size", type=int, default=256, help="side of the square crops in px (default 256)")
    default_quality = CropSpec.model_fields["quality"].default
    parser.add_argument(
        "--quality", type=int, default=default_quality,
        help=f"JPEG quality besides 90 (default {default_quality}: crossfake's CropSpec)",
    )
    parser.add_argument("--repeat", type=int, default=3, help="timed passes; the best is kept (default 3)")
    args = parser.parse_args()
    if args.images < 1 or args.repeat < 1 or args.size < 32:
        parser.error("--images and --repeat must be positive, --size at least 32")
    if not 1 <= args.quality <= 100:
        parser.error("--quality must be between 1 and 100")
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    n = args.images

    realdata = os.environ.get("CROSSFAKE_REALDATA")
    start = time.perf_counter()
    if realdata:
        crops, origin = real_crops(Path(realdata), n, args.size)
    else:
        crops, origin = synthetic_crops(n, args.size)
    t_crops = time.perf_counter() - start
    from transformers import CLIPImageProcessor

    pre = ImagePreprocess.from_processor(CLIPImageProcessor())
    transform = pre.transform()
    print(
        f"torch {torch.__version__}, 1 intra-op thread, loader in-process (num_workers=0); "
        f"{platform.processor() or 'CPU'}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}"
    )
    print(f"crops: {n} x {args.size}x{args.size} RGB, {origin} ({t_crops:.1f} s)")
    print(
        f"preprocessing: the OpenAI CLIP processor's, as crossfake's CLIP methods apply it: resize "
        f"{pre.resize} {pre.interpolation}, centre crop {pre.crop}, CLIP mean/std; batches of {BATCH}"
    )

    work = Path(tempfile.mkdtemp(prefix="bench_data_path_"))
    try:
        qualities = sorted({args.quality, 90}, reverse=True)
        formats = [file_format("PNG", work, crops, "png", 0, transform)]
        formats += [file_format(f"JPEG q{q}", work, crops, "jpg", q, transform) for q in qualities]
        formats.append(packed_format(work, crops, transform))
        in_memory = [Image.fromarray(c) for c in crops]

        def transform_only() -> None:
            for first in range(0, n, BATCH):
                torch.stack([transform(im) for im in in_memory[first : first + BATCH]])

        for f in formats:  # warm-up: lazy imports, codec set-up
            f.decode()
        transform_only()
        fns: dict[str, Callable[[], object]] = {}
        for f in formats:
            fns[f"{f.label}/decode"] = f.decode
            fns[f"{f.label}/loader"] = f.loader
        fns["memory/loader"] = transform_only
        best = best_of(args.repeat, fns)
        gpu = gpu_jpeg_decode(work, n, args.quality, args.repeat)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    # -- the table ------------------------------------------------------------------------------------------
    header = (
        "format", "KiB/crop", f"MB/s@{GPU_RATE // 1000}k", "decode ms", "+prep ms", "crops/s/core",
        f"cores@{GPU_RATE // 1000}k", "MAE", "PSNR dB",
    )
    lines = []
    for f in [*formats, None]:
        label = f.label if f else "(decoded, in memory: preprocessing alone)"
        full = best[f"{f.label}/loader" if f else "memory/loader"] / n
        size = f"{f.bytes_per_crop / KIB:.1f}" if f else "-"
        bandwidth = f"{f.bytes_per_crop * GPU_RATE / MB:,.0f}" if f else "-"
        decode = f"{1000 * best[f'{f.label}/decode'] / n:.2f}" if f else "-"
        if f and f.decoded is not None:
            mae, psnr = pixel_error(f.decoded, crops)
            error = (f"{mae:.2f}", "lossless" if math.isinf(psnr) else f"{psnr:.1f}")
        else:
            error = ("-", "-")
        rate = 1 / full
        lines.append((label, size, bandwidth, decode, f"{1000 * full:.2f}", f"{rate:,.0f}",
                      f"{GPU_RATE / rate:.1f}", *error))
    widths = [max(len(row[i]) for row in [header, *lines]) for i in range(len(header))]
    print()
    print("  ".join(h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(header, widths, strict=True))))
    for row in lines:
        print("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))))
    print(
        f"(ms per crop: best of {args.repeat} passes over {n} crops on one core; '+prep ms' is the whole loader "
        f"pass: decode + CLIP transform + batching; crops/s/core = 1000 / '+prep ms'; cores@{GPU_RATE // 1000}k = "
        f"cores (loader workers) to feed {GPU_RATE:,} crops/s; MB/s@{GPU_RATE // 1000}k = read bandwidth at that "
        f"rate; MAE / PSNR against the crops themselves; files read from the page cache; load average now "
        f"{os.getloadavg()[0]:.2f})"
    )
    if gpu is None:
        print("no CUDA device: GPU JPEG decoding not measured")
    else:
        print(
            f"GPU JPEG decode (torchvision decode_jpeg on {torch.cuda.get_device_name()}, batches of {BATCH}, "
            f"bytes in memory), JPEG q{args.quality}: {1000 * gpu / n:.3f} ms/crop, {n / gpu:,.0f} crops/s"
        )


if __name__ == "__main__":
    main()
