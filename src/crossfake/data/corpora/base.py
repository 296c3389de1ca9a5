"""What a corpus adapter returns, and the registry of adapters."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from crossfake.utils.errors import CrossfakeError
from crossfake.utils.registry import Registry

VIDEO_SUFFIXES = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg"})
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"})


@dataclass(frozen=True)
class VideoRecord:
    """One video (or still image) of a corpus, with everything needed to split it by identity.

    Attributes:
        path: the file on disk, or a folder of frame images holding one clip (WildDeepfake).
        corpus: corpus name, e.g. ``"ffpp"``.
        manipulation: ``"real"`` or how it was faked, e.g. ``"FaceSwap"``.
        name: the file's stem within its manipulation folder, e.g. ``"000_003"``.
        label: 0 real, 1 fake.
        target_id: person whose footage it is.
        source_id: person whose face was inserted (equals ``target_id`` for a real video).
        identity_keys: every key that ties this video to a person: person ids and, where known, the
            YouTube video of each (two FF++ sequences cut from one YouTube video show the same people).
            Videos sharing any key fall into the same identity group.
        official_split: the corpus's own split for this video, if it has one.
        compression: e.g. ``"c23"``, for the record.
    """

    path: Path
    corpus: str
    manipulation: str
    name: str
    label: int
    target_id: str
    source_id: str
    identity_keys: tuple[str, ...] = field(default=())
    official_split: str | None = None
    compression: str | None = None

    @property
    def video_id(self) -> str:
        return f"{self.corpus}/{self.manipulation}/{self.name}"

    @property
    def is_image(self) -> bool:
        return self.path.suffix.lower() in IMAGE_SUFFIXES


class Corpus(Protocol):
    """A corpus adapter: built from a root folder, it lists the corpus's videos."""

    name: str

    def records(self) -> list[VideoRecord]: ...


CORPORA: Registry[type] = Registry("corpus")


def register_corpus(name: str) -> Callable[[type], type]:
    """Class decorator that makes an adapter available to :func:`get_corpus` under ``name``."""

    def deco(cls: type) -> type:
        cls.name = name
        return CORPORA.register(name)(cls)

    return deco


def list_corpora() -> list[str]:
    return CORPORA.names()


def get_corpus(name: str, root: str | Path, **options) -> Corpus:
    """Build the adapter ``name`` over ``root``; options are adapter-specific (e.g. ``compression``)."""
    CORPORA.get(name)  # an unknown name is reported before the path
    root = Path(root).expanduser()
    if not root.is_dir():
        raise CrossfakeError(f"corpus root {root} does not exist or is not a folder")
    return CORPORA.build(name, root, **options)


def corpus_fake_manipulations(name: str) -> tuple[str, ...] | None:
    """The ``manipulation`` names of the fakes adapter ``name`` lists, where they are fixed by the corpus (an
    adapter's ``fake_manipulations`` attribute); None where they depend on the data (FF++, a folder)."""
    manipulations = getattr(CORPORA.get(name), "fake_manipulations", None)
    return tuple(manipulations) if manipulations else None


def list_media(folder: Path, suffixes: frozenset[str] = VIDEO_SUFFIXES) -> list[Path]:
    """The files of ``folder`` (not below) with one of ``suffixes``, sorted; hidden files are skipped (e.g.
    a half-written ``.000.mp4.tmp.mp4``). An absent folder has none."""
    if not folder.is_dir():
        return []
    return sorted(
        p for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in suffixes
    )


def frame_files(folder: Path) -> list[Path]:
    """The still images of a folder that holds one clip as a frame sequence (WildDeepfake), in frame order:
    by the numbers in their names (``2.png`` before ``10.png``), then by name."""

    def order(p: Path) -> tuple[tuple[tuple[int, int | str], ...], str]:
        tokens = (t for t in re.split(r"(\d+)", p.stem) if t)
        return tuple((0, int(t)) if t.isdigit() else (1, t) for t in tokens), p.name

    return sorted(list_media(folder, IMAGE_SUFFIXES), key=order)


def listing(folder: Path, limit: int = 12) -> str:
    """A short listing of what is in ``folder``, for error messages."""
    try:
        names = sorted(p.name + ("/" if p.is_dir() else "") for p in folder.iterdir())
    except OSError:
        return "(unreadable)"
    if not names:
        return "(empty)"
    more = f" … and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def first_per_manipulation(records: list[VideoRecord], limit: int) -> list[VideoRecord]:
    """The first ``limit`` records of every (corpus, manipulation), in the adapter's order."""
    seen: dict[tuple[str, str], int] = {}
    kept = []
    for rec in records:
        key = (rec.corpus, rec.manipulation)
        seen[key] = seen.get(key, 0) + 1
        if seen[key] <= limit:
            kept.append(rec)
    return kept
