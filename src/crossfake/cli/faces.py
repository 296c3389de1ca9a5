"""Find the faces in images and videos: boxes, five landmarks and tracks, as CSV or JSON lines, and drawn.

The tool to reach for when `crossfake prepare` misses a face or keeps the wrong one. For each PATH (a
video, an image, or a folder searched recursively for them) it samples frames like `crossfake detect`
(--fps per second of video, or --frames evenly spaced ones), runs the face detector and links the faces
into tracks exactly as prepare does, and reports every detection: its box, face detector score, landmarks
(eyes, nose tip, mouth corners; image-left first) and track. Track 0 is the subject that prepare crops by
default; detections with no track are one-frame detections that tracking drops as likely false positives.

--annotate DIR draws each file's sampled frames (up to 12) in one PNG: boxes and landmarks coloured by
track, dropped detections grey.

Examples:
  crossfake faces photo.jpg clip.mp4
  crossfake faces clips/ --face-detector dlib --format jsonl --output faces.jsonl --annotate faces/
  crossfake faces interview.mp4 --frames 32 --face-detector-weights face_detection_yunet_2023mar.onnx
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

from crossfake.data.preprocess import CropSpec, FaceCropper, list_face_detectors
from crossfake.data.preprocess.face_detectors import LANDMARK_NAMES
from crossfake.inference.faces import contact_sheet, find_faces
from crossfake.inference.media import FrameSampling, InputError, expand_inputs
from crossfake.inference.render import png_bytes
from crossfake.utils.io import atomic_path, json_safe, write_bytes_atomic

COLUMNS = ["path", "kind", "frame", "time_s", "faces_found", "face", "track", "x0", "y0", "x1", "y1", "score",
           *(f"{name}_{axis}" for name in LANDMARK_NAMES for axis in "xy"), "error"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="videos, images or folders")
    parser.add_argument(
        "--face-detector", default=CropSpec.model_fields["face_detector"].default, choices=list_face_detectors(),
        help="face detector",
    )
    parser.add_argument("--face-detector-weights", type=Path, metavar="PATH", help="its weights file (yunet, haar)")
    sampling = parser.add_mutually_exclusive_group()
    sampling.add_argument("--fps", type=float, default=FrameSampling.fps, help="frames per second of video")
    sampling.add_argument("--frames", type=int, help="instead, this many evenly spaced frames per video")
    parser.add_argument("--max-frames", type=int, default=FrameSampling.max_frames, help="at most this many frames")
    parser.add_argument("--format", choices=["csv", "jsonl"], default="csv", help="output format")
    parser.add_argument("--output", type=Path, help="write the table here instead of standard output")
    parser.add_argument("--annotate", type=Path, metavar="DIR", help="write a PNG of each file's faces here")


@contextlib.contextmanager
def _output(path: Path | None) -> Iterator[TextIO]:
    if path is None:
        yield sys.stdout
        return
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8", newline="") as stream:
        yield stream


def run(args: argparse.Namespace) -> int:
    options = {"weights": str(args.face_detector_weights)} if args.face_detector_weights else {}
    cropper = FaceCropper.every_track(CropSpec(face_detector=args.face_detector, face_detector_options=options))
    sampling = FrameSampling(fps=args.fps, frames=args.frames, max_frames=args.max_frames)
    failed = 0
    with _output(args.output) as stream:
        writer = csv.DictWriter(stream, COLUMNS, extrasaction="ignore", lineterminator="\n")
        if args.format == "csv":
            writer.writeheader()
        for path in expand_inputs(args.paths):
            try:
                finding = find_faces(path, cropper, sampling, keep_images=args.annotate is not None)
            except InputError as e:
                failed += 1
                rows = [{"path": str(path), "error": str(e)}]
                print(f"crossfake faces: {e}", file=sys.stderr)
            else:
                rows = finding.rows()
                detections = sum(1 for r in rows if "face" in r)
                print(f"{path}: {detections} faces in {len(finding.frames)} frames, {finding.tracks} tracks"
                      + "".join(f"; {note}" for note in finding.notes), file=sys.stderr)
                if args.annotate is not None and (sheet := contact_sheet(finding)) is not None:
                    write_bytes_atomic(args.annotate / f"{path.stem}.faces.png", png_bytes(sheet))
            for row in rows:
                if args.format == "csv":
                    writer.writerow({k: "" if json_safe(v) is None else v for k, v in row.items()})
                else:
                    stream.write(json.dumps({k: json_safe(v) for k, v in row.items()}) + "\n")
    return 1 if failed else 0
