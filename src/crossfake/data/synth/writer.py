"""Write a synthetic FaceForensics++: the configuration, the corpus plan, and the files on disk.

The output is laid out exactly like the official download, so every reader of FF++ reads it unchanged::

    OUT/original_sequences/youtube/c23/videos/000.mp4 …
    OUT/manipulated_sequences/<Manipulation>/c23/videos/<target>_<source>.mp4
    OUT/train.json  val.json  test.json       pairs [["071", "054"], …], 72/14/14 % of the pairs
    OUT/conversion_dict.json                  "000" -> "<11-char YouTube id> <sequence>", as FF++ writes it
    OUT/synth.json                            the config, and per original its identity and face boxes

Like FF++, originals come in pairs ``(a, b)`` and each pair gives two fakes per manipulation, ``a_b`` (a's
footage, b's face or expression) and ``b_a``; both fakes sit in the pair's split. A few YouTube videos
supply two originals, which then show the same person in two different clips, and one of them straddles
two splits (like FF++'s 605/606), so an identity-aware splitter has something to catch.

Every random draw is seeded by (seed, what, which), never by the order of work, so any single video can
be regenerated alone: that is what makes a re-run over an interrupted OUT resume where it stopped. The
"what" is 0 for the plan, 1 for an identity (:func:`~crossfake.data.synth.faces.sample_identity`), 2 for
a clip's motion, 3 for its sensor noise and 4 for a fake.
"""

from __future__ import annotations

import concurrent.futures
import functools
import json
import os
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TypeVar

import av
import numpy as np
from tqdm import tqdm

import crossfake
from crossfake.data.synth.faces import (
    Clip,
    FaceRenderer,
    FrameGeometry,
    Identity,
    Motion,
    render_clip,
    sample_identity,
    to_uint8,
)
from crossfake.data.synth.manipulations import MANIPULATIONS, manipulate
from crossfake.utils.config import renamed_keys
from crossfake.utils.errors import CrossfakeError
from crossfake.utils.io import atomic_path, write_text_atomic
from crossfake.utils.logging import get_logger
from crossfake.utils.workers import default_workers

log = get_logger("synth")

#: compression folder -> x264 constant rate factor. FF++'s c23/c40 are CRF 23/40; its raw is lossless.
CRF = {"raw": 0, "c23": 23, "c40": 40}
#: FF++'s official split sizes are 360/70/70 pairs.
SPLIT_FRACTIONS = {"train": 0.72, "val": 0.14, "test": 0.14}
MIN_VIDEOS = 8  # 4 pairs: at least one in each split, and room for two shared YouTube videos
_T = TypeVar("_T")
_R = TypeVar("_R")
_YOUTUBE_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
#: Keys of a synthetic corpus's settings renamed by the vocabulary rename (old -> new).
OLD_SYNTH_KEYS = {"methods": "manipulations"}


@dataclass(frozen=True)
class SynthConfig:
    """What to synthesise. Invalid values raise :class:`CrossfakeError`.

    Args:
        n_videos: number of original videos (even: they are paired; at least 8, at most 1000).
        n_frames: frames per video.
        size: frame width in pixels (a multiple of 8); the height is 3/4 of it. From 192 up OpenCV's
            Haar cascade finds >99% of the faces, originals and fakes alike; at 128 about 95%.
        fps: frame rate of the videos.
        seed: everything (identities, motion, pairs, splits, artifacts) follows from it.
        manipulations: manipulations to write, from ``Deepfakes, Face2Face, FaceSwap, NeuralTextures``.
        compression: ``c23`` (CRF 23), ``c40`` (CRF 40) or ``raw`` (lossless); also the folder name.
        shared_youtube: how many YouTube videos supply two originals (the first straddles two splits);
            at most a quarter of ``n_videos``.
    """

    n_videos: int = 24
    n_frames: int = 32
    size: int = 256
    fps: int = 25
    seed: int = 0
    manipulations: tuple[str, ...] = MANIPULATIONS
    compression: str = "c23"
    shared_youtube: int = 2

    def __post_init__(self) -> None:
        for name in ("n_videos", "n_frames", "size", "fps", "seed", "shared_youtube"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise CrossfakeError(f"synth config: {name} must be an integer, got {value!r}")
        if self.n_videos % 2 or not MIN_VIDEOS <= self.n_videos <= 1000:
            raise CrossfakeError(
                f"synth config: n_videos must be even and between {MIN_VIDEOS} and 1000 "
                f"(originals are paired and named 000-999), got {self.n_videos}"
            )
        if self.n_frames < 1:
            raise CrossfakeError(f"synth config: n_frames must be at least 1, got {self.n_frames}")
        if self.size % 8 or not 128 <= self.size <= 2048:
            raise CrossfakeError(
                "synth config: size (frame width) must be a multiple of 8 between 128 and 2048, "
                f"got {self.size}"
            )
        if not 1 <= self.fps <= 240:
            raise CrossfakeError(f"synth config: fps must be between 1 and 240, got {self.fps}")
        if self.seed < 0:
            raise CrossfakeError(f"synth config: seed must be non-negative, got {self.seed}")
        manipulations = self.manipulations
        manipulations = (manipulations,) if isinstance(manipulations, str) else tuple(manipulations)
        unknown = [m for m in manipulations if m not in MANIPULATIONS]
        if unknown or not manipulations:
            raise CrossfakeError(
                f"synth config: manipulations must be a non-empty selection of {', '.join(MANIPULATIONS)}; "
                f"got {list(manipulations)}"
            )
        # Official order, no duplicates: the config (and synth.json) does not depend on how it was typed.
        object.__setattr__(self, "manipulations", tuple(m for m in MANIPULATIONS if m in manipulations))
        if self.compression not in CRF:
            raise CrossfakeError(
                f"synth config: compression must be one of {', '.join(CRF)}, got {self.compression!r}"
            )
        if not 0 <= self.shared_youtube <= self.n_videos // 4:
            raise CrossfakeError(
                f"synth config: shared_youtube must be between 0 and n_videos/4 = {self.n_videos // 4} (each "
                f"shared YouTube video joins two different pairs), got {self.shared_youtube}"
            )

    @property
    def width(self) -> int:
        return self.size

    @property
    def height(self) -> int:
        return self.size * 3 // 4

    def to_dict(self) -> dict[str, object]:
        """JSON-friendly form (as recorded in ``synth.json``)."""
        d = asdict(self)
        d["manipulations"] = list(self.manipulations)
        return d


@dataclass(frozen=True)
class Original:
    """One original video of the plan: its name, person, YouTube video, split and pair partner."""

    name: str
    identity: int
    youtube: str
    split: str
    partner: str


@dataclass(frozen=True)
class Plan:
    """Who is in which video, which videos are paired, and which split each pair is in.

    Attributes:
        originals: by name (``"000"``…), in name order.
        splits: split -> list of pairs, as written to ``<split>.json``.
    """

    originals: dict[str, Original]
    splits: dict[str, list[tuple[str, str]]]

    @property
    def pairs(self) -> list[tuple[str, str]]:
        return [pair for split in SPLIT_FRACTIONS for pair in self.splits[split]]

    @property
    def n_identities(self) -> int:
        return len({o.identity for o in self.originals.values()})


def plan_corpus(config: SynthConfig) -> Plan:
    """Pair the originals, assign pairs to splits and originals to people and YouTube videos."""
    rng = np.random.default_rng([config.seed, 0])
    names = [f"{i:03d}" for i in range(config.n_videos)]
    order = rng.permutation(config.n_videos)
    pairs = [(names[order[k]], names[order[k + 1]]) for k in range(0, config.n_videos, 2)]
    n_val = n_test = max(1, round(len(pairs) * SPLIT_FRACTIONS["val"]))
    counts = {"train": len(pairs) - n_val - n_test, "val": n_val, "test": n_test}
    split_of_pair, start = {}, 0
    for split, count in counts.items():  # pairs are already in random order
        for k in range(start, start + count):
            split_of_pair[k] = split
        start += count

    # Shared YouTube videos: each couples one original from each of two different pairs (never the two
    # originals of one pair: a fake of a person onto themselves would be no fake). The first couple
    # straddles train and val/test; the others stay within a split where possible, as most do in FF++.
    free = list(rng.permutation(len(pairs)))
    couples: list[tuple[int, int]] = []
    for k in range(config.shared_youtube):
        first = next(p for p in free if split_of_pair[p] == "train") if k == 0 else free[0]
        free.remove(first)
        same = [p for p in free if (split_of_pair[p] == split_of_pair[first]) != (k == 0)]
        second = (same or free)[0]
        free.remove(second)
        couples.append((first, second))
    shares = {pairs[b][int(rng.integers(2))]: pairs[a][int(rng.integers(2))] for a, b in couples}

    # People and YouTube videos, numbered in name order; a sharing original reuses its partner's.
    identity_of: dict[str, int] = {}
    youtube_of: dict[str, str] = {}
    partner_of = {a: b for a, b in pairs} | {b: a for a, b in pairs}
    split_of = {n: split_of_pair[k] for k, pair in enumerate(pairs) for n in pair}
    videos: list[str] = []
    for name in sorted(names, key=lambda n: (n in shares, n)):
        if name in shares:
            base = shares[name]
            identity_of[name] = identity_of[base]
            youtube_of[name] = youtube_of[base][:-1] + "1"
        else:
            identity_of[name] = len(videos)
            videos.append("".join(rng.choice(list(_YOUTUBE_ALPHABET), 11)))
            youtube_of[name] = f"{videos[-1]} 0"  # FF++'s form: "<youtube id> <sequence index>"
    originals = {n: Original(n, identity_of[n], youtube_of[n], split_of[n], partner_of[n]) for n in names}
    splits = {s: [pairs[k] for k in range(len(pairs)) if split_of_pair[k] == s] for s in SPLIT_FRACTIONS}
    return Plan(originals=originals, splits=splits)


# -- paths and encoding ---------------------------------------------------------------------------


def original_path(out: Path, compression: str, name: str) -> Path:
    """``OUT/original_sequences/youtube/<compression>/videos/<name>.mp4``."""
    return out / "original_sequences" / "youtube" / compression / "videos" / f"{name}.mp4"


def fake_path(out: Path, compression: str, manipulation: str, target: str, source: str) -> Path:
    """``OUT/manipulated_sequences/<manipulation>/<compression>/videos/<target>_<source>.mp4``."""
    return out / "manipulated_sequences" / manipulation / compression / "videos" / f"{target}_{source}.mp4"


def encode_video(path: Path, frames: Iterable[np.ndarray], fps: int, crf: int) -> None:
    """Encode RGB uint8 frames as H.264 (yuv420p) at ``crf``; the file appears only once complete.

    x264 runs single-threaded: its output then does not depend on the machine's core count, so a seed
    gives byte-identical videos everywhere (parallelism comes from encoding several videos at once).
    """
    with atomic_path(path) as tmp:
        with av.open(str(tmp), mode="w", format="mp4") as container:
            stream = container.add_stream("libx264", rate=fps)
            stream.pix_fmt = "yuv420p"
            stream.options = {"crf": str(crf), "threads": "1"}
            for i, frame in enumerate(frames):
                if i == 0:
                    stream.height, stream.width = frame.shape[:2]
                for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)


# -- synthesis ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _PairJob:
    """Everything needed to write the missing videos of one pair (a unit of parallel work)."""

    out: Path
    config: SynthConfig
    names: tuple[str, str]
    identities: tuple[Identity, Identity]
    motions: tuple[Motion, Motion]
    todo: tuple[tuple[str, ...], ...]  # ("real", name) or (manipulation, target, source)


def _run_pair(job: _PairJob) -> int:
    """Render one pair's clips and write its missing videos; returns how many were written."""
    cfg = job.config
    clips: dict[str, Clip] = {}

    def clip(k: int) -> Clip:
        name = job.names[k]
        if name not in clips:
            renderer = FaceRenderer(job.identities[k], cfg.width, cfg.height)
            noise_rng = np.random.default_rng([cfg.seed, 3, int(name)])
            clips[name] = render_clip(renderer, job.motions[k], noise_rng)
        return clips[name]

    crf = CRF[cfg.compression]
    for item in job.todo:
        if item[0] == "real":
            k = job.names.index(item[1])
            encode_video(original_path(job.out, cfg.compression, item[1]), clip(k).frames, cfg.fps, crf)
        else:
            manipulation, target, source = item
            t, s = job.names.index(target), job.names.index(source)
            rng = np.random.default_rng([cfg.seed, 4, MANIPULATIONS.index(manipulation), int(target), int(source)])
            frames = to_uint8(manipulate(manipulation, clip(t), clip(s), rng))
            encode_video(fake_path(job.out, cfg.compression, manipulation, target, source), frames, cfg.fps, crf)
    return len(job.todo)


def _write_if_changed(path: Path, obj: object) -> None:
    """Write JSON atomically, leaving an identical existing file (and its mtime) alone."""
    text = _INNER_LIST.sub(lambda m: "[" + re.sub(r",\s+", ", ", m.group(1)) + "]", json.dumps(obj, indent=2))
    text += "\n"
    if not (path.is_file() and path.read_text(encoding="utf-8") == text):
        write_text_atomic(path, text)


# An indented list holding no list or object: pairs, boxes, colours. Kept on one line, it reads like
# FF++'s own split files instead of one id per line.
_INNER_LIST = re.compile(r"\[\s+([^\[\]{}]*?)\s+\]")


def _check_existing(out: Path, config: SynthConfig) -> None:
    """Refuse to resume into an OUT that this config did not write.

    A folder written with another config (or a real FF++ download) holds videos that do not match the
    plan, yet a resumed run would keep them as if they did.
    """
    meta = out / "synth.json"
    if not meta.is_file():
        # synth.json is written before any video, so even an interrupted synth run left one behind.
        foreign = [d for d in ("original_sequences", "manipulated_sequences") if (out / d).exists()]
        if foreign:
            raise CrossfakeError(
                f"{out} already has {' and '.join(foreign)} but no synth.json: it was not written by "
                "crossfake synth; use an empty or new OUT folder"
            )
        return
    try:
        previous = renamed_keys(json.loads(meta.read_text(encoding="utf-8"))["config"], OLD_SYNTH_KEYS, str(meta),
                                warn=False)
    except (ValueError, KeyError, TypeError) as e:
        raise CrossfakeError(
            f"{meta} exists but is not a crossfake synth record ({e}); use another OUT"
        ) from e
    if previous != config.to_dict():
        changed = sorted(k for k in config.to_dict() if previous.get(k) != config.to_dict()[k])
        raise CrossfakeError(
            f"{out} holds a synthetic corpus made with a different config (differs in "
            f"{', '.join(changed)}); use another OUT folder or delete this one"
        )


def synthesize(
    out: str | os.PathLike,
    config: SynthConfig | None = None,
    *,
    workers: int | None = None,
    progress: bool = False,
) -> Path:
    """Write a synthetic FaceForensics++ under ``out`` and return its path.

    Videos that already exist are kept, so re-running over an interrupted ``out`` finishes it; the JSON
    files are rewritten only if their content changed.

    Args:
        out: the corpus root (created if missing).
        config: what to write; defaults to :class:`SynthConfig()`.
        workers: threads drawing identities and rendering and encoding pairs in parallel (default:
            :func:`crossfake.utils.workers.default_workers`, at least 1). The output does not depend on it.
        progress: show a progress bar over videos.

    Raises:
        CrossfakeError: if ``out`` already holds a synthetic corpus made with a different config, or
            FF++ folders that synth did not write.
    """
    config = config or SynthConfig()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    _check_existing(out, config)
    plan = plan_corpus(config)

    workers = max(1, workers or default_workers())  # threads; this one draws too, so at least 1
    # Identities (Haar-checked) and motions are drawn here, once, and handed to the pair jobs.
    people = sorted({o.identity for o in plan.originals.values()})
    draw = functools.partial(sample_identity, config.seed, width=config.width, height=config.height)
    by_identity = dict(zip(people, _parallel_map(draw, people, workers), strict=True))
    motions = {
        n: Motion.sample(np.random.default_rng([config.seed, 2, int(n)]), config.n_frames, config.fps)
        for n in plan.originals
    }
    _write_metadata(out, config, plan, by_identity, motions)

    _remove_stale_temporaries(out, config)
    jobs, total, existing = [], 0, 0
    for a, b in plan.pairs:
        items: list[tuple[str, ...]] = [("real", a), ("real", b)]
        items += [(m, t, s) for m in config.manipulations for t, s in ((a, b), (b, a))]
        paths = [
            original_path(out, config.compression, i[1])
            if i[0] == "real"
            else fake_path(out, config.compression, *i)
            for i in items
        ]
        todo = tuple(i for i, p in zip(items, paths, strict=True) if not p.is_file())
        total += len(items)
        existing += len(items) - len(todo)
        if todo:
            ids = (by_identity[plan.originals[a].identity], by_identity[plan.originals[b].identity])
            jobs.append(_PairJob(out, config, (a, b), ids, (motions[a], motions[b]), todo))
    if existing == total:
        log.info("all %d videos already exist under %s; nothing to write", total, out)
    elif existing:
        log.info(
            "%d of %d videos already exist under %s; writing the other %d",
            existing,
            total,
            out,
            total - existing,
        )

    with tqdm(total=total, initial=existing, unit="video", desc="synth", disable=not progress) as bar:
        for written in _parallel_map(_run_pair, jobs, workers):
            bar.update(written)
    return out


def _remove_stale_temporaries(out: Path, config: SynthConfig) -> None:
    """Delete half-written videos that a killed run (SIGKILL, power loss) left in the video folders.

    Videos are encoded into hidden ``.<name>.mp4.*.tmp.mp4`` files and renamed when complete, so any
    such file found at start-up is garbage; left in place, a reader globbing ``*.mp4`` would see it.
    """
    folders = [original_path(out, config.compression, "x").parent]
    folders += [fake_path(out, config.compression, m, "x", "y").parent for m in config.manipulations]
    for folder in folders:
        for stale in folder.glob(".*.tmp.mp4"):
            log.info("removing %s, left over from an interrupted run", stale)
            stale.unlink()


def _parallel_map(fn: Callable[[_T], _R], items: Sequence[_T], workers: int) -> Iterator[_R]:
    """``map(fn, items)`` on ``workers`` threads, in order.

    The heavy lifting (numpy, OpenCV, x264) releases the GIL, so threads use the cores without the
    start-up cost and pickling of processes. On an error or Ctrl-C the queued items are dropped instead
    of finished; those in flight complete (their files are written atomically either way).
    """
    if workers <= 1 or len(items) <= 1:
        yield from map(fn, items)
        return
    pool = concurrent.futures.ThreadPoolExecutor(min(workers, len(items)))
    try:
        yield from pool.map(fn, items)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _write_metadata(
    out: Path,
    config: SynthConfig,
    plan: Plan,
    identities: dict[int, Identity],
    motions: dict[str, Motion],
) -> None:
    """Split files, ``conversion_dict.json`` and ``synth.json`` (config, identities, face boxes)."""
    for split, pairs in plan.splits.items():
        _write_if_changed(out / f"{split}.json", [list(p) for p in pairs])
    _write_if_changed(out / "conversion_dict.json", {n: o.youtube for n, o in plan.originals.items()})
    geometry = FrameGeometry(config.width, config.height)
    videos = {}
    for name, o in plan.originals.items():
        videos[name] = {
            "identity": o.identity,
            "youtube": o.youtube,
            "split": o.split,
            "pair": o.partner,
            "identity_params": identities[o.identity].summary(),
            "face_boxes": [
                geometry.face_box(identities[o.identity], motions[name], t) for t in range(config.n_frames)
            ],
        }
    record = {
        "generator": f"crossfake {crossfake.__version__} synth",
        "config": config.to_dict(),
        "frame_size": [config.width, config.height],
        "n_identities": plan.n_identities,
        "videos": videos,
    }
    _write_if_changed(out / "synth.json", record)
