"""Sample frames, detect and track faces, crop them, and write a Parquet manifest.

Reads a corpus (FaceForensics++ layout, DFDC, or a real/ + fake/<manipulation>/ folder), keeps N evenly spaced
frames per video (or every K-th, or all), finds the faces in each (YuNet by default), links them into
tracks across the frames, and crops the subject's track (--faces all: every track; one-frame detections
are dropped as false positives) with a margin to square PNGs. Writes OUT/manifest.parquet (one row per
crop, with its box, five landmarks and track), OUT/failures.parquet (frames and videos that gave no crop,
with the reason) and OUT/prepare.json (settings, provenance, summary).

YuNet's weights (0.2 MB) are downloaded once from the OpenCV model zoo, checked against their sha256 and
cached; offline, pass a copy with --face-detector-weights PATH. --face-detector haar needs no download.

Re-running the same command resumes: finished videos are skipped. Changing a crop setting (frames,
face detector, margin, size, ...) on an existing OUT is an error; pass --overwrite or choose a new OUT.
Settings can come from a YAML file of PrepareConfig fields (--config); flags given here win.

--executor ray prepares the videos as Ray tasks (extra 'distributed': pip install crossfake[distributed]),
one per video, on a new local Ray instance or a cluster (--address auto, ray://HEAD:10001). Every node
must see the corpus and OUT at the same paths. The manifest, failures and crops are identical to the local
executor's, and an interrupted Ray run resumes like a local one (with either executor).

Examples:
  crossfake prepare /data/FaceForensics++ --out prepared --manipulations FaceSwap,NeuralTextures
  crossfake prepare /data/FaceForensics++ --out quick --frames 8 --limit 20
  crossfake prepare /data/my_corpus --corpus folder --out prepared --no-face center
  crossfake prepare /data/dfdc --corpus dfdc --out prepared_dfdc --faces all --align
  crossfake prepare /shared/FaceForensics++ --out /shared/prepared --executor ray --address auto
"""

from __future__ import annotations

import argparse
from pathlib import Path

from crossfake.data.corpora import get_corpus, list_corpora
from crossfake.data.corpora.base import first_per_manipulation
from crossfake.data.preprocess import (
    CropSpec,
    FacesPolicy,
    NoFacePolicy,
    PrepareConfig,
    list_face_detectors,
    prepare,
)
from crossfake.executors.base import EXECUTORS, get_executor
from crossfake.utils.errors import CrossfakeError
from crossfake.utils.workers import default_workers

_FIELDS = {**PrepareConfig.model_fields, **CropSpec.model_fields}
#: Flags that set a crop setting (CropSpec field names).
_CROP_FLAGS = ("face_detector", "margin", "size", "align", "format", "quality", "no_face", "faces", "smooth")


def _default(name: str) -> str:
    spec = _FIELDS[name]
    value = spec.default_factory() if spec.default_factory else spec.default
    return f"(default: {getattr(value, 'value', value)})"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    # Crop settings default to SUPPRESS so that only flags actually given override a --config file.
    keep = argparse.SUPPRESS
    parser.add_argument("root", type=Path, help="corpus root folder")
    parser.add_argument(
        "--out", type=Path, required=True, help="output folder (created; resumed if it exists)"
    )
    parser.add_argument(
        "--corpus", "--source", dest="corpus", default="ffpp", choices=list_corpora(), help="corpus layout"
    )
    parser.add_argument(
        "--compression", help="FF++ quality folder: raw, c23 or c40 (the adapter's default: c23)"
    )
    parser.add_argument(
        "--manipulations",
        "--methods",
        dest="manipulations",
        help="comma-separated manipulations to read, e.g. FaceSwap,NeuralTextures",
    )
    parser.add_argument(
        "--limit", type=int, metavar="N", help="only the first N videos of each manipulation (quick tries)"
    )
    parser.add_argument("--config", type=Path, metavar="FILE.yaml", help="PrepareConfig settings from YAML")

    sampling = parser.add_mutually_exclusive_group()
    sampling.add_argument(
        "--frames",
        type=int,
        default=keep,
        metavar="N",
        help=f"N evenly spaced frames per video {_default('frames')}",
    )
    sampling.add_argument("--every", type=int, default=keep, metavar="K", help="every K-th frame instead")
    sampling.add_argument("--all-frames", action="store_true", default=keep, help="every frame instead")

    parser.add_argument(
        "--face-detector",
        "--detector",
        dest="face_detector",
        default=keep,
        choices=list_face_detectors(),
        help=f"face detector: yunet (best measured on real faces), dlib (DeepfakeBench's; extra 'faces'), "
        f"haar (no download) {_default('face_detector')}",
    )
    parser.add_argument(
        "--face-detector-weights",
        "--detector-weights",
        dest="face_detector_weights",
        type=Path,
        default=keep,
        metavar="PATH",
        help="face detector weights (yunet: face_detection_yunet_2023mar.onnx; haar: a cascade XML)",
    )
    parser.add_argument(
        "--faces",
        default=keep,
        choices=[p.value for p in FacesPolicy],
        help=f"crop the video's subject (its most persistent face track) or every track {_default('faces')}",
    )
    parser.add_argument(
        "--align",
        action="store_true",
        default=keep,
        help="rotate each face so the eyes are level before cropping (needs yunet or dlib landmarks)",
    )
    parser.add_argument(
        "--smooth",
        type=int,
        default=keep,
        metavar="N",
        help=f"average face boxes over N consecutive frames of a track, odd; 1 = off {_default('smooth')}",
    )
    parser.add_argument(
        "--margin",
        type=float,
        default=keep,
        help=f"crop side as a multiple of the face box {_default('margin')}",
    )
    parser.add_argument("--size", type=int, default=keep, help=f"crop side in pixels {_default('size')}")
    parser.add_argument(
        "--format",
        default=keep,
        choices=["png", "jpg"],
        help=f"crop image format; png is lossless {_default('format')}",
    )
    parser.add_argument("--quality", type=int, default=keep, help=f"JPEG quality {_default('quality')}")
    parser.add_argument(
        "--no-face",
        default=keep,
        choices=[p.value for p in NoFacePolicy],
        help=f"frames without a face: skip and record, or keep a centre crop {_default('no_face')}",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=keep,
        help="worker processes of the local executor, 0 = none (default: every available CPU but one, at most "
        f"4: {default_workers()} here)",
    )

    parser.add_argument(
        "--executor",
        default="local",
        choices=EXECUTORS,
        help="where videos are prepared: this machine (--workers processes) or Ray tasks (extra 'distributed')",
    )
    parser.add_argument(
        "--address",
        metavar="ADDR",
        help="with --executor ray: the cluster, 'auto' (the one this machine belongs to), 'ray://HEAD:10001' "
        "(Ray client) or HEAD:6379; default: $RAY_ADDRESS, else a new local Ray instance",
    )
    parser.add_argument("--overwrite", action="store_true", help="delete OUT's earlier prepare output first")
    parser.add_argument("--retry-failed", action="store_true", help="redo videos in which no crop was found")


def build_config(args: argparse.Namespace) -> PrepareConfig:
    """The :class:`PrepareConfig` from ``--config`` (if any) with the flags given on top."""
    base = PrepareConfig.from_yaml(args.config) if args.config else PrepareConfig()
    values = base.model_dump()
    crop = values["crop"]
    for name in _CROP_FLAGS:
        if hasattr(args, name):
            crop[name] = getattr(args, name)
    if hasattr(args, "workers"):
        values["workers"] = args.workers
    if hasattr(args, "frames"):
        values.update(sampling="uniform", frames=args.frames)
    elif hasattr(args, "every"):
        values.update(sampling="every", every=args.every)
    elif getattr(args, "all_frames", False):
        values["sampling"] = "all"
    if hasattr(args, "face_detector_weights"):
        crop["face_detector_options"] = {
            **crop["face_detector_options"],
            "weights": str(args.face_detector_weights),
        }
    return PrepareConfig.parse(values)


def run(args: argparse.Namespace) -> int:
    config = build_config(args)  # before listing the corpus, so a bad setting fails at once
    if args.limit is not None and args.limit < 1:
        raise CrossfakeError(f"--limit must be at least 1, got {args.limit}")
    if args.address is not None and args.executor != "ray":
        raise CrossfakeError("--address needs --executor ray")
    # Made before listing the corpus too, so a missing Ray fails at once.
    executor = get_executor(args.executor, workers=config.workers, address=args.address)
    options = {}
    if args.compression:
        options["compression"] = args.compression
    if args.manipulations:
        options["manipulations"] = [m.strip() for m in args.manipulations.split(",") if m.strip()]
    # An option the adapter does not take (--compression for a folder) is a CrossfakeError from the registry.
    records = get_corpus(args.corpus, args.root, **options).records()
    if args.limit is not None:
        records = first_per_manipulation(records, args.limit)
    with executor:
        summary = prepare(
            records,
            args.out,
            config,
            overwrite=args.overwrite,
            retry_failed=args.retry_failed,
            executor=executor,
        )
    print(f"prepared {args.root} -> {args.out}\n")
    print(summary.table())
    print(f"\nmanifest: {args.out / 'manifest.parquet'}\nfailures: {args.out / 'failures.parquet'}")
    if summary.manifest_rows == 0:
        print(
            "\nno face crop was written: see failures.parquet (corpora of face crops: try --no-face center)"
        )
        return 1
    return 0
