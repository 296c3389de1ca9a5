"""Report the identities, identity groups and videos that a split shares between train, val and test.

Lists every identity group found on several sides with its people in each split (on FF++'s official
split: the originals cut from one YouTube video, e.g. 605 in train and 606 in test). Also prints the
videos and frames per manipulation × split, like the reports' tables, and how many test videos show a
person seen in training. With --strict the exit status is 1 when anything is shared, so a pipeline can
refuse a leaky split.

With --faces it also finds people by their faces (the 'faces' extra: dlib's face-recognition ResNet,
128-d descriptors, same person below Euclidean distance 0.6), clusters them, and lists the clusters that
span several identity groups (two name-groups that are one person) and several splits (one person on two
sides, which names cannot show). Embeddings are cached in face_embeddings.parquet beside the manifest.

Example:
  crossfake audit prepared/split_report1.parquet --strict
  crossfake audit prepared/split_report1.parquet --faces --json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from crossfake.data.audit import audit_split
from crossfake.data.face_identity import DLIB_THRESHOLD, FaceSettings, audit_faces
from crossfake.data.manifest import read_manifest
from crossfake.data.preprocess.run import crop_spec_of_manifest


def add_face_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the face embedding and clustering (shared with `crossfake split --merge-faces`)."""
    group = parser.add_argument_group("faces (with --faces / --merge-faces)")
    group.add_argument("--face-threshold", type=float, default=DLIB_THRESHOLD,
                       help=f"same person below this Euclidean distance (dlib's standard: {DLIB_THRESHOLD})")
    group.add_argument("--face-crops", type=int, default=4,
                       help="crops embedded per video, evenly spaced, averaged (0: every crop)")
    group.add_argument("--face-rect", choices=["detect", "centre"], default="detect",
                       help="find the face in each crop with dlib's HOG face detector (default) or take its "
                            "middle square")
    group.add_argument("--faces-of", choices=["auto", "real", "all"], default="auto",
                       help="videos embedded: real ones, plus the fakes of groups without a real video (auto); "
                            "real only; all")
    group.add_argument("--no-progress", action="store_true", help="no progress bar while embedding")


def face_settings(args: argparse.Namespace, margin: float = 1.3) -> FaceSettings:
    return FaceSettings(threshold=args.face_threshold, crops=args.face_crops, face_rect=args.face_rect,
                        margin=margin, faces_of=args.faces_of, progress=not args.no_progress)


def crop_margin(manifest: Path) -> float:
    """The crop margin that `crossfake prepare` recorded for ``manifest``'s crops (beside it, or beside the
    manifest a split manifest was made from: :func:`crop_spec_of_manifest`); 1.3 if none is found."""
    found = crop_spec_of_manifest(manifest / "manifest.parquet" if manifest.is_dir() else manifest)
    return float(found[0].margin) if found else FaceSettings.margin


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("manifest", type=Path, help="a manifest with a 'split' column (from `crossfake split`)")
    parser.add_argument("--strict", action="store_true", help="exit with status 1 if any identity is shared")
    parser.add_argument("--json", action="store_true", help="print the audit as JSON")
    parser.add_argument("--faces", action="store_true",
                        help="also cluster the people by face and report clusters crossing groups and splits")
    add_face_arguments(parser)


def run(args: argparse.Namespace) -> int:
    df = read_manifest(args.manifest, require_split=True)
    report = audit_split(df)
    if args.faces:
        report.faces = audit_faces(df, face_settings(args, crop_margin(args.manifest)))
    print(json.dumps(report.to_dict(), indent=2) if args.json else report.format())
    return 1 if args.strict and report.leaks else 0
