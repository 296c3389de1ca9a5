"""WildDeepfake (WDF) as its archives unpack.

::

    ROOT/real_train/<video>/real/<clip>/<frame>.png     face sequences, one folder of frame images per clip
    ROOT/fake_train/<video>/fake/<clip>/<frame>.png
    ROOT/real_test/…   ROOT/fake_test/…                 the official test half

WildDeepfake is distributed as ``real_train``, ``fake_train``, ``real_test`` and ``fake_test`` folders of
``<k>.tar.gz`` archives holding face *sequences*: 7,314 clips cut from 707 internet deepfake videos, each
clip a folder of already-cropped frame images, not a video file. What this adapter assumes of the unpacked
layout, and no more:

- a **clip** is any folder below a split folder that holds images directly (at any depth, so
  ``<video>/real/<clip>/`` and a flattened ``<clip>/`` both work); a video file found there is a clip too.
  Its frames are its images in the numeric order of their names (``2.png`` before ``10.png``); ``crossfake
  prepare`` samples them like a video's frames, and video-level scores average over a clip.
- the **label** and the **official split** come from the split folder's name (``fake_test``: fake, test).
  WDF has no validation half.
- **identities**: WDF publishes none. Clips are grouped by the video they were cut from, taken to be the
  clip's nearest meaningful ancestor: its grandparent when its parent folder is named ``real`` or ``fake``
  (``<video>/real/<clip>/``), else its parent folder (``extracted/<archive>/<clip>/``: the archive's
  folder, whatever wrapper folders sit above it). So clips of one video never straddle a split, and a
  wrapper folder does not merge a split's clips into one group. A clip directly below its split folder
  (or below a bare ``real/``/``fake/`` there) is a group of its own. Two videos of the same person stay
  separate groups: nothing in WDF says who is who.

Still-packed archives (``real_train/1.tar.gz``) are reported with the command to unpack them.
"""

from __future__ import annotations

import os
from pathlib import Path

from crossfake.data.corpora.base import (
    IMAGE_SUFFIXES,
    VIDEO_SUFFIXES,
    VideoRecord,
    listing,
    register_corpus,
)
from crossfake.data.manifest import REAL
from crossfake.utils.errors import CrossfakeError
from crossfake.utils.logging import get_logger

log = get_logger("corpora.wilddeepfake")

FAKE_MANIPULATION = "fake"
"""The ``manipulation`` of every WildDeepfake fake: the corpus does not say which manipulation made it."""

#: split folder -> (label, official split)
SPLIT_FOLDERS: dict[str, tuple[int, str]] = {
    "real_train": (0, "train"),
    "fake_train": (1, "train"),
    "real_test": (0, "test"),
    "fake_test": (1, "test"),
}
_ARCHIVES = (".tar", ".tar.gz", ".tgz", ".zip")
_LABEL_FOLDERS = ("real", "fake")


@register_corpus("wilddeepfake")
class WildDeepfake:
    """Adapter for an unpacked WildDeepfake download.

    Args:
        root: the folder holding ``real_train/``, ``fake_train/``, ``real_test/`` and ``fake_test/``.
        include_real: also list the real clips.
    """

    name = "wilddeepfake"
    fake_manipulations = (FAKE_MANIPULATION,)

    def __init__(self, root: Path, include_real: bool = True) -> None:
        self.root = Path(root)
        self.include_real = include_real
        self.folders = {name: self.root / name for name in SPLIT_FOLDERS if (self.root / name).is_dir()}
        if not self.folders:
            raise CrossfakeError(
                f"{self.root} is not a WildDeepfake root: expected folders "
                f"{', '.join(repr(n + '/') for n in SPLIT_FOLDERS)}, found: {listing(self.root)}"
            )

    def records(self) -> list[VideoRecord]:
        out: list[VideoRecord] = []
        packed: list[Path] = []
        for folder_name, folder in self.folders.items():
            label, split = SPLIT_FOLDERS[folder_name]
            if label == 0 and not self.include_real:
                continue
            clips = _clips(folder)
            if not clips:
                packed += [p for p in folder.iterdir() if p.name.lower().endswith(_ARCHIVES)]
            for clip in clips:
                rel = clip.relative_to(folder)
                person = f"{folder_name}/{_video_of(rel)}"
                out.append(
                    VideoRecord(
                        path=clip,
                        corpus=self.name,
                        manipulation=REAL if label == 0 else FAKE_MANIPULATION,
                        name=f"{folder_name}/{rel.with_suffix('').as_posix()}",
                        label=label,
                        target_id=person,
                        source_id=person,
                        official_split=split,
                    )
                )
        if not out:
            if packed:
                raise CrossfakeError(
                    f"WildDeepfake under {self.root} is still packed ({len(packed)} archive(s), e.g. "
                    f"{packed[0].relative_to(self.root)}): unpack each in its folder, e.g. "
                    f'`cd {packed[0].parent} && for f in *.tar.gz; do tar -xzf "$f"; done`'
                )
            raise CrossfakeError(
                f"no WildDeepfake clips found under {self.root}: expected folders of frame images (or videos) in "
                f"{', '.join(str(p.name) + '/' for p in self.folders.values())}"
            )
        return out


def _video_of(rel: Path) -> str:
    """The group of the clip at ``rel`` (relative to its split folder): the folder of the video it was cut
    from, i.e. its grandparent when its parent is named ``real``/``fake``, else its parent; the clip itself
    when that is the split folder."""
    video = rel.parent.parent if rel.parent.name.lower() in _LABEL_FOLDERS else rel.parent
    return video.as_posix() if video != Path(".") else rel.with_suffix("").as_posix()


def _clips(folder: Path) -> list[Path]:
    """Every folder below ``folder`` that holds images directly, and every video file, in path order.

    One ``os.walk``: a directory is judged from its own file list (WDF holds about a million frames, so no
    per-file ``stat`` or directory listing is repeated). Hidden files and folders are skipped."""
    clips: list[Path] = []
    seen: set[str] = set()  # real paths walked: a symlink loop is walked once
    for top, dirs, files in os.walk(folder, followlinks=True):
        real = os.path.realpath(top)
        if real in seen:
            dirs[:] = []
            continue
        seen.add(real)
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        here = Path(top)
        suffixes = {f: os.path.splitext(f)[1].lower() for f in files if not f.startswith(".")}
        if here != folder and any(s in IMAGE_SUFFIXES for s in suffixes.values()):
            clips.append(here)
        clips += [here / f for f, s in suffixes.items() if s in VIDEO_SUFFIXES]
    return sorted(clips)  # the order of the paths' parts: the same on every file system
