"""Benchmark ``crossfake prepare``'s decode → detect → crop → write path against a naive baseline.

Writes a few 640×480 H.264 videos of a moving synthetic face (crossfake synth's renderer; FF++ c23-like:
25 fps, one keyframe per ``--gop`` frames), then measures, in this one process:

  decode only          every frame decoded, none converted to RGB
  decode + RGB         every frame decoded and converted (what a naive loader does)
  sequential, sampled  one pass, only the sampled frames converted (what crossfake does)
  seek, per sample     seek to each sampled frame's keyframe and decode forward (long and short GOP)
  detection only       the default detector on the sampled frames, already decoded
  crossfake prepare    prepare(workers=0): sampled decode + Haar + crop + PNG + shard + manifest
  baseline             decode and convert every frame, then the same detect + crop + PNG on the sampled
                       frames
  crossfake, workers   prepare(workers=N), for the parallel speed-up

Run:  python benchmarks/bench_prepare.py [--videos 4] [--seconds 10] [--frames 32] [--workers 2]
"""

from __future__ import annotations

import argparse
import resource
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import av
import numpy as np

from crossfake.data.preprocess import (
    PrepareConfig,
    create_face_detector,
    largest_face,
    prepare,
    sample_indices,
)
from crossfake.data.preprocess.crop import crop_face, save_image
from crossfake.data.preprocess.video import decode_frames
from crossfake.data.sources.base import VideoRecord
from crossfake.data.synth.faces import FaceRenderer, Motion, sample_identity, to_uint8


def write_video(path: Path, seconds: float, fps: int, gop: int, seed: int) -> Path:
    """640×480 H.264 (crf 23, like FF++ c23) of a face over a panning textured scene with sensor noise."""
    # The synthetic FF++ renderer draws the face (Haar finds it), so the benchmark detects what the demo does.
    rng = np.random.default_rng(seed)
    w, h = 640, 480
    n_frames = int(seconds * fps)
    renderer = FaceRenderer(sample_identity(seed, 0, w, h), w, h)
    motion = Motion.sample(rng, n_frames, fps)
    with av.open(str(path), "w") as c:
        stream = c.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.codec_context.gop_size = gop
        stream.options = {"crf": "23", "preset": "veryfast", "sc_threshold": "0"}
        for i in range(n_frames):
            noise = rng.standard_normal((h, w, 3), dtype=np.float32) * 2.0  # sensor noise, as synth adds
            img = to_uint8(renderer.frame(motion, i) + noise)
            c.mux(stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")))
        c.mux(stream.encode())
    return path


def decode_all(path: Path, convert: bool) -> int:
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        stream.thread_type = "AUTO"
        n = 0
        for frame in c.decode(stream):
            if convert:
                frame.to_ndarray(format="rgb24")
            n += 1
    return n


def decode_by_seeking(path: Path, indices: list[int]) -> int:
    """Seek to the keyframe before each wanted frame and decode forward to it (the alternative strategy)."""
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        stream.thread_type = "AUTO"
        pts = sorted(p.pts for p in c.demux(stream) if p.pts is not None)
        n = 0
        for idx in indices:
            c.seek(pts[idx], stream=stream, backward=True)
            for frame in c.decode(stream):
                if frame.pts >= pts[idx]:
                    frame.to_ndarray(format="rgb24")
                    n += 1
                    break
    return n


def _cpu_seconds() -> float:
    # This process (all its threads) plus reaped children (the worker processes of a finished pool).
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def best_times(fns: Sequence[Callable[[], object]], repeat: int) -> list[tuple[float, float]]:
    """Best (wall, CPU) seconds of each function over ``repeat`` rounds.

    The functions take turns within a round, so a change in other load on the machine hits them alike;
    CPU time is reported beside wall time because it is far less sensitive to such load.
    """
    best = [(float("inf"), float("inf"))] * len(fns)
    for _ in range(repeat):
        for i, fn in enumerate(fns):
            wall, cpu = time.perf_counter(), _cpu_seconds()
            fn()
            wall, cpu = time.perf_counter() - wall, _cpu_seconds() - cpu
            best[i] = (min(best[i][0], wall), min(best[i][1], cpu))
    return best


def baseline(videos: list[Path], out: Path, frames: int, cfg: PrepareConfig) -> int:
    """Decode and convert every frame, keep the sampled ones, then detect + crop + save like crossfake."""
    detector = create_face_detector(cfg.detector)
    written = 0
    for path in videos:
        with av.open(str(path)) as c:
            stream = c.streams.video[0]
            stream.thread_type = "AUTO"
            rgb = [f.to_ndarray(format="rgb24") for f in c.decode(stream)]
        for idx in sample_indices(len(rgb), "uniform", frames):
            face = largest_face(detector(rgb[idx]))
            if face is not None:
                save_image(
                    out / path.stem / f"{idx:06d}.png", crop_face(rgb[idx], face, cfg.margin, cfg.size)
                )
                written += 1
    return written


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--videos", type=int, default=4, help="test videos to write (default 4)")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each video (default 10)")
    parser.add_argument("--fps", type=int, default=25, help="frame rate (default 25)")
    parser.add_argument(
        "--gop", type=int, default=250, help="keyframe interval of the main videos (default 250)"
    )
    parser.add_argument("--short-gop", type=int, default=12, help="keyframe interval for the seek comparison")
    parser.add_argument(
        "--frames", type=int, default=32, help="uniformly sampled frames per video (default 32)"
    )
    parser.add_argument(
        "--workers", type=int, default=2, help="workers for the parallel prepare run (default 2)"
    )
    parser.add_argument("--repeat", type=int, default=3, help="best of this many runs per row (default 3)")
    parser.add_argument("--keep", type=Path, help="write everything here and keep it (default: a temp dir)")
    args = parser.parse_args()

    work = args.keep or Path(tempfile.mkdtemp(prefix="bench_prepare_"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        print(f"writing {args.videos} videos of {args.seconds:g} s, 640x480 @ {args.fps} fps, GOP {args.gop}")
        videos = [
            write_video(work / f"v{i}.mp4", args.seconds, args.fps, args.gop, i) for i in range(args.videos)
        ]
        short = write_video(work / "short_gop.mp4", args.seconds, args.fps, args.short_gop, 0)
        n_frames = int(args.seconds * args.fps)
        total = n_frames * len(videos)
        sampled = sample_indices(n_frames, "uniform", args.frames)
        n_sampled = len(sampled) * len(videos)
        cfg = PrepareConfig(frames=args.frames, workers=0)
        records = [VideoRecord(p, "bench", "real", p.stem, 0, p.stem, p.stem) for p in videos]
        n = len(videos)
        par_cfg = cfg.model_copy(update={"workers": args.workers})
        detector = create_face_detector(cfg.detector)
        images = [image for v in videos for _, image in decode_frames(v, sampled)]
        # Labels; also the keys of the comparisons below.
        decode, decode_rgb = "decode only, all frames", "decode + RGB, all frames"
        seq, seek = (
            f"sequential, {args.frames} RGB (GOP {args.gop})",
            f"seek, {args.frames} RGB (GOP {args.gop})",
        )
        seq_short, seek_short = (
            f"{how}, {args.frames} RGB (GOP {args.short_gop})" for how in ("sequential", "seek")
        )
        ours, base, par = (
            "crossfake prepare, workers=0",
            "baseline: RGB every frame",
            f"crossfake prepare, workers={args.workers}",
        )

        # Groups of (label, function, frames counted, videos counted); a group's members take turns.
        groups = [
            [
                (decode, lambda: [decode_all(v, False) for v in videos], total, n),
                (decode_rgb, lambda: [decode_all(v, True) for v in videos], total, n),
            ],
            [
                (seq, lambda: [list(decode_frames(v, sampled)) for v in videos], n_sampled, n),
                (seek, lambda: [decode_by_seeking(v, sampled) for v in videos], n_sampled, n),
            ],
            [
                (seq_short, lambda: list(decode_frames(short, sampled)), len(sampled), 1),
                (seek_short, lambda: decode_by_seeking(short, sampled), len(sampled), 1),
            ],
            [(f"{cfg.detector} detection only", lambda: [detector(i) for i in images], n_sampled, n)],
            [
                (
                    ours,
                    lambda: prepare(records, work / "o0", cfg, progress=False, overwrite=True),
                    n_sampled,
                    n,
                ),
                (base, lambda: baseline(videos, work / "base", args.frames, cfg), n_sampled, n),
                (
                    par,
                    lambda: prepare(records, work / "oN", par_cfg, progress=False, overwrite=True),
                    n_sampled,
                    n,
                ),
            ],
        ]
        decode_all(videos[0], False)  # warm up caches and codec initialisation
        t: dict[str, tuple[float, float]] = {}
        width = max(len(label) for group in groups for label, *_ in group)
        print(f"\n{'':<{width}}  {'wall s':>7}  {'CPU s':>7}  {'frames/s':>8}  {'videos/s':>8}")
        for group in groups:
            timings = best_times([fn for _, fn, *_ in group], args.repeat)
            for (label, _, frames, count), (wall, cpu) in zip(group, timings, strict=True):
                t[label] = (wall, cpu)
                print(f"{label:<{width}}  {wall:7.3f}  {cpu:7.3f}  {frames / wall:8.1f}  {count / wall:8.2f}")
        print("(frames/s: decoded frames in the first two rows, sampled frames below; from wall time)\n")

        comparisons = [
            ("crossfake vs baseline (workers=0)", base, ours),
            ("sampled decode vs decode + RGB", decode_rgb, seq),
            ("RGB conversion slows decoding by", decode_rgb, decode),
            (f"sequential vs seek, GOP {args.gop}", seek, seq),
            (f"sequential vs seek, GOP {args.short_gop}", seek_short, seq_short),
            (f"workers={args.workers} vs workers=0", ours, par),
        ]
        width = max(len(c[0]) for c in comparisons)
        for what, slow, fast in comparisons:
            wall, cpu = t[slow][0] / t[fast][0], t[slow][1] / t[fast][1]
            print(f"{what + ':':<{width + 1}}  {wall:.2f}x wall, {cpu:.2f}x CPU")
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
