"""Celeb-DF (v2) in its download layout.

::

    ROOT/Celeb-real/id<a>_<n>.mp4              590 real interviews of 59 celebrities (id0 … id61)
    ROOT/Celeb-synthesis/id<a>_id<b>_<n>.mp4   5639 fakes: id<a>'s video with id<b>'s face swapped in
    ROOT/YouTube-real/<n>.mp4                  300 real YouTube videos of other people
    ROOT/List_of_testing_videos.txt            the official test list, 518 lines "<label> <relpath>"

Copies that keep each folder's videos one level down (``Celeb-real/videos/…``) and spell the YouTube
folder ``Youtube-real`` are read too.

**Labels.** Every label comes from the folder: ``Celeb-real`` and ``YouTube-real`` are real (0),
``Celeb-synthesis`` is fake (1). The test list has its own convention, the opposite of crossfake's:
``1`` means *real* and ``0`` fake (``1 YouTube-real/00170.mp4``, ``0 Celeb-synthesis/id0_id16_0004.mp4``).
Each line's label is checked against its folder; a list whose labels disagree (e.g. one rewritten with
1 = fake) is an error rather than a silent swap.

**Official split.** Videos on the test list get ``official_split = "test"``, every other video ``"train"``
(Celeb-DF has no validation list). Without the list, no video has an official split. The list makes no
promise that its people are absent from the other videos; ``crossfake audit`` counts what is shared.

**Identities.** ``id<a>_<n>`` shows celebrity ``id<a>``. A fake ``id<a>_id<b>_<n>`` shows id<a>'s footage
(target, the scene and the head) with id<b>'s face swapped in (source), so it carries both people, as an
FF++ fake ``<target>_<source>`` does: :func:`crossfake.data.identity.identity_groups` joins it to the
groups of id<a> and of id<b>. An identity-safe split that puts the fake in test thus keeps both
celebrities out of training. Since the fakes pair most of the 59 celebrities with one another, the
celebrities end up in few large groups. A ``YouTube-real`` video shows a person named nowhere else: each
is its own identity, ``youtube-<n>``.
"""

from __future__ import annotations

import re
from pathlib import Path

from crossfake.data.corpora.base import VideoRecord, list_media, listing, register_corpus
from crossfake.data.manifest import REAL
from crossfake.utils.errors import CrossfakeError
from crossfake.utils.logging import get_logger

log = get_logger("corpora.celebdf")

FAKE_MANIPULATION = "Celeb-synthesis"
"""The ``manipulation`` of every Celeb-DF fake (its folder's name)."""

TEST_LIST = "List_of_testing_videos.txt"

#: canonical folder -> (label, accepted spellings)
FOLDERS: dict[str, tuple[int, tuple[str, ...]]] = {
    "Celeb-real": (0, ("Celeb-real",)),
    "YouTube-real": (0, ("YouTube-real", "Youtube-real")),
    "Celeb-synthesis": (1, ("Celeb-synthesis",)),
}

#: The test list's label for a real video (Celeb-DF's convention: 1 = real, 0 = fake).
LIST_REAL = 1

_CELEB_REAL = re.compile(r"^(id\d+)_(\d+)$")
_CELEB_FAKE = re.compile(r"^(id\d+)_(id\d+)_(\d+)$")


@register_corpus("celebdf")
class CelebDF:
    """Adapter for a Celeb-DF v2 download.

    Args:
        root: the folder holding ``Celeb-real/``, ``Celeb-synthesis/`` and ``YouTube-real/``.
        include_real: also list the real videos.
        test_list: the official test list (default: ``ROOT/List_of_testing_videos.txt`` where present).
    """

    name = "celebdf"
    fake_manipulations = (FAKE_MANIPULATION,)

    def __init__(self, root: Path, include_real: bool = True, test_list: str | Path | None = None) -> None:
        self.root = Path(root)
        self.include_real = include_real
        self.folders = self._find_folders()
        if test_list is not None:
            self.test_list: Path | None = Path(test_list).expanduser()
            if not self.test_list.is_file():
                raise CrossfakeError(f"Celeb-DF test list {self.test_list} does not exist")
        else:
            default = self.root / TEST_LIST
            self.test_list = default if default.is_file() else None
        self.missing: list[str] = []
        """Test-list entries absent on disk (filled by :meth:`records`)."""

    def _find_folders(self) -> dict[str, Path]:
        """Canonical folder name -> the folder holding its videos, for every folder present."""
        found: dict[str, Path] = {}
        for canonical, (_, spellings) in FOLDERS.items():
            folder = next((self.root / s for s in spellings if (self.root / s).is_dir()), None)
            if folder is not None:
                found[canonical] = folder / "videos" if (folder / "videos").is_dir() else folder
        if not found:
            raise CrossfakeError(
                f"{self.root} is not a Celeb-DF v2 root: expected folders 'Celeb-real/', 'Celeb-synthesis/' "
                f"and 'YouTube-real/' (and the file '{TEST_LIST}'), found: {listing(self.root)}"
            )
        return found

    # -- the official test list ----------------------------------------------------------------------

    def read_test_list(self) -> dict[tuple[str, str], int]:
        """(canonical folder, video name) -> label in crossfake's convention (1 = fake), per list line."""
        if self.test_list is None:
            return {}
        spelling = {s.lower(): canonical for canonical, (_, names) in FOLDERS.items() for s in names}
        out: dict[tuple[str, str], int] = {}
        for number, line in enumerate(self.test_list.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            parts = line.split()
            where = f"{self.test_list}, line {number} ({line.strip()!r})"
            if len(parts) != 2 or parts[0] not in ("0", "1"):
                raise CrossfakeError(
                    f"{where}: expected '<label> <folder>/<video>.mp4' with label 1 (real) or 0 (fake), as in "
                    "'1 YouTube-real/00170.mp4'"
                )
            rel = Path(parts[1])
            folder = spelling.get(rel.parts[0].lower()) if len(rel.parts) >= 2 else None
            if folder is None:
                raise CrossfakeError(f"{where}: the video must be in one of {', '.join(FOLDERS)}")
            folder_label = FOLDERS[folder][0]
            list_real = int(parts[0]) == LIST_REAL
            if list_real != (folder_label == 0):
                raise CrossfakeError(
                    f"{where}: label {parts[0]} disagrees with the folder {folder} "
                    f"({'real' if folder_label == 0 else 'fake'}). Celeb-DF's list marks real videos 1 and fakes "
                    "0; is this list written in another convention?"
                )
            out[folder, rel.stem] = folder_label
        if not out:
            raise CrossfakeError(f"the Celeb-DF test list {self.test_list} is empty")
        return out

    # -- records ------------------------------------------------------------------------------------

    def records(self) -> list[VideoRecord]:
        listed = self.read_test_list()
        seen: set[tuple[str, str]] = set()
        out: list[VideoRecord] = []
        for canonical, folder in self.folders.items():
            label = FOLDERS[canonical][0]
            if label == 0 and not self.include_real:
                continue
            for path in list_media(folder):
                name = path.stem
                people = self._people(canonical, name)
                if people is None:
                    log.warning("skipping %s: not named as Celeb-DF names %s videos", path, canonical)
                    continue
                key = (canonical, name)
                seen.add(key)
                split = None if not listed else "test" if key in listed else "train"
                out.append(
                    VideoRecord(
                        path=path,
                        corpus=self.name,
                        manipulation=REAL if label == 0 else FAKE_MANIPULATION,
                        name=name,
                        label=label,
                        target_id=people[0],
                        source_id=people[1],
                        official_split=split,
                    )
                )
        self.missing = sorted(
            f"{folder}/{name}"
            for folder, name in set(listed) - seen
            if self.include_real or FOLDERS[folder][0] == 1
        )
        if self.missing:
            log.warning(
                "%d video(s) of the Celeb-DF test list %s are absent and skipped, e.g. %s",
                len(self.missing),
                self.test_list,
                ", ".join(self.missing[:3]),
            )
        if not out:
            raise CrossfakeError(
                f"no Celeb-DF videos found under {self.root} (looked in "
                f"{', '.join(str(p) for p in self.folders.values())})"
            )
        return out

    @staticmethod
    def _people(folder: str, name: str) -> tuple[str, str] | None:
        """(target, source) of a video, or None when its name does not follow the folder's pattern."""
        if folder == "YouTube-real":
            return (f"youtube-{name}",) * 2
        if folder == "Celeb-real":
            m = _CELEB_REAL.match(name)
            return (m.group(1),) * 2 if m else None
        m = _CELEB_FAKE.match(name)
        return (m.group(1), m.group(2)) if m else None
