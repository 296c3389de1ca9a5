"""Judge videos, images and folders with a trained run: face tracks, scores, a verdict per person and file.

For each PATH (a video, an image, or a folder searched recursively for them) frames are sampled
(--fps per second of video, or --frames evenly spaced ones, at most --max-frames), the faces in them are
found and linked into tracks (one per person; a face seen in only one of three or more sampled frames is
dropped as a likely false positive), every track's faces are cropped exactly as `crossfake prepare`
cropped the run's training data (the crop specification the run records: face detector, margin,
alignment, size, format), the crops are scored in batches, and the file gets a score and a verdict:

  track score = mean of its faces' scores (one verdict per person)
  video score = max over the tracks (one fake person makes the video fake)
  verdict     = fake if video score >= threshold (the run's validation-EER threshold unless --threshold)

A VLM run (vlm_zero_shot, vlm_qlora) also gives its written explanation for the most suspicious face.
Output: a readable summary (default), --format jsonl (one object per file, every frame and face) or
--format csv (one row per face, and one per frame without a face); --figures DIR adds an annotated image
of the most suspicious frame and, for videos, a score timeline PNG.

A file that cannot be judged (missing, not a video or image, truncated, too large, no face) is reported
and the others go on. Exit status: 0 if every file got a verdict, 1 if some did not, 2 on a usage error
(e.g. a run directory of another crossfake version).

Examples:
  crossfake detect suspect.mp4 --model runs/lora
  crossfake detect clips/ photo.jpg --model runs/lora --fps 4 --figures figures/
  crossfake detect clips/ --model runs/probe --format csv --output scores.csv
  crossfake detect face.png --model runs/qwen_zero_shot --format jsonl
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

from crossfake.inference.detect import DetectionResult, DetectPipeline
from crossfake.inference.formats import FORMATS, csv_rows, csv_writer, summary, write_jsonl
from crossfake.inference.media import DEFAULT_MAX_PIXELS, FrameSampling, InputError, expand_inputs
from crossfake.inference.render import annotated_png, timeline_png
from crossfake.runs.directory import BEST_DIR, LAST_DIR
from crossfake.utils.errors import CrossfakeError
from crossfake.utils.io import atomic_path, write_bytes_atomic
from crossfake.utils.logging import get_logger

log = get_logger("detect")


def add_pipeline_arguments(parser: argparse.ArgumentParser) -> None:
    """The model and sampling options shared by `crossfake detect` and `crossfake serve`."""
    parser.add_argument(
        "--model", type=Path, required=True, metavar="RUN_DIR", help="run directory written by `crossfake train`"
    )
    parser.add_argument("--weights", choices=[BEST_DIR, LAST_DIR], default=BEST_DIR, help="checkpoint to load")
    sampling = parser.add_mutually_exclusive_group()
    sampling.add_argument(
        "--fps", type=float, default=FrameSampling.fps, help="frames scored per second of video (the speed knob)"
    )
    sampling.add_argument("--frames", type=int, help="instead, this many evenly spaced frames per video")
    parser.add_argument(
        "--max-frames", type=int, default=FrameSampling.max_frames, help="at most this many frames per video"
    )
    parser.add_argument(
        "--max-faces", type=int, default=5, help="face tracks (people) scored per file, most persistent first"
    )
    parser.add_argument(
        "--threshold", type=float, help="decision threshold on p(fake) (default: the run's validation threshold)"
    )
    parser.add_argument("--batch-size", type=int, help="face crops per model call (default: the run's)")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto", help="where to score")
    parser.add_argument(
        "--crop-config",
        type=Path,
        help="prepare.json or prepare YAML whose crop settings to use (default: those the run records)",
    )
    parser.add_argument(
        "--max-pixels",
        type=float,
        default=DEFAULT_MAX_PIXELS / 1e6,
        metavar="MP",
        help="refuse images and video frames above this many megapixels",
    )


def pipeline_from_args(args: argparse.Namespace) -> DetectPipeline:
    """Load the run and build the pipeline from :func:`add_pipeline_arguments`' options."""
    if args.max_pixels <= 0:
        raise CrossfakeError(f"--max-pixels must be > 0, not {args.max_pixels}")
    sampling = FrameSampling(fps=args.fps, frames=args.frames, max_frames=args.max_frames)
    return DetectPipeline.from_run(
        args.model,
        weights=args.weights,
        device=args.device,
        crop_config=args.crop_config,
        batch_size=args.batch_size,
        threshold=args.threshold,
        sampling=sampling,
        max_faces=args.max_faces,
        max_pixels=int(args.max_pixels * 1e6),
    )


def describe_model(pipeline: DetectPipeline) -> str:
    """Two lines on the model and the crop settings, printed before the text summaries."""
    d = pipeline.describe()
    auc = f", val AUC {d['val_auc']:.3f}" if isinstance(d["val_auc"], float) else ""
    crop = d["crop"]
    return (
        f"model: {d['run_dir']} ({d['method']}, backbone {d['backbone']}{auc}); threshold "
        f"{d['threshold']:.4f} ({d['threshold_origin']})\n"
        f"faces: {d['face_detector']}, crops {crop['margin']:g}× margin, {crop['size']} px {crop['format']} "
        f"(settings from {d['crop_settings_from']}); {d['sampling']}, at most {d['max_frames']} frames"
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="videos, images or folders")
    add_pipeline_arguments(parser)
    parser.add_argument("--format", choices=FORMATS, default="text", help="output format")
    parser.add_argument("--output", type=Path, metavar="FILE", help="write the output here (default: stdout)")
    parser.add_argument(
        "--figures", type=Path, metavar="DIR", help="write <name>.annotated.png and <name>.timeline.png here"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


@contextlib.contextmanager
def _output(path: Path | None) -> Iterator[TextIO]:
    if path is None:
        yield sys.stdout
        return
    with atomic_path(path) as tmp, tmp.open("w", encoding="utf-8", newline="") as f:
        yield f


def _write_figures(result: DetectionResult, folder: Path, used: set[str]) -> list[Path]:
    stem, n = Path(result.path).stem or "input", 1
    name = stem
    while name in used:  # two inputs with the same name (from different folders)
        n += 1
        name = f"{stem}-{n}"
    used.add(name)
    written = []
    annotated = annotated_png(result)
    if annotated is not None:
        write_bytes_atomic(folder / f"{name}.annotated.png", annotated)
        written.append(folder / f"{name}.annotated.png")
    if result.kind == "video":
        write_bytes_atomic(folder / f"{name}.timeline.png", timeline_png(result))
        written.append(folder / f"{name}.timeline.png")
    return written


def run(args: argparse.Namespace) -> int:
    paths = expand_inputs(args.paths)
    pipeline = pipeline_from_args(args)
    verdicts: Counter[str] = Counter()
    used: set[str] = set()
    with _output(args.output) as out:
        writer = csv_writer(out) if args.format == "csv" else None
        if args.format == "text":
            print(describe_model(pipeline) + "\n", file=out)
        for path in paths:
            try:
                result: DetectionResult | dict = pipeline.detect(
                    path, keep_images=args.figures is not None, progress=not args.no_progress
                )
            except InputError as e:
                result = {"path": str(path), "error": str(e), "status": e.status}
                verdicts["error"] += 1
                print(f"crossfake detect: error: {e}", file=sys.stderr)
            else:
                verdicts[result.verdict] += 1
                if args.figures is not None:
                    for figure in _write_figures(result, args.figures, used):
                        log.debug("wrote %s", figure)
            if args.format == "jsonl":
                write_jsonl(out, result)
            elif writer is not None:
                writer.writerows(csv_rows(result))
            elif isinstance(result, DetectionResult):
                print(summary(result) + "\n", file=out)
            out.flush()
    tally = ", ".join(f"{n} {what}" for what, n in verdicts.most_common())
    print(f"{len(paths)} input{'s' * (len(paths) != 1)}: {tally}", file=sys.stderr)
    if args.output is not None:
        print(f"wrote {args.format} to {args.output}", file=sys.stderr)
    if args.figures is not None:
        print(f"figures in {args.figures}", file=sys.stderr)
    return 0 if not (verdicts["error"] or verdicts["no face"]) else 1
