"""DeepFakeDetection (DFD, Google/Jigsaw's contribution to FaceForensics++) in FF++'s download layout.

::

    ROOT/original_sequences/actors/<compression>/videos/<a>__<scene>.mp4                  363 real videos
    ROOT/manipulated_sequences/DeepFakeDetection/<compression>/videos/<a>_<b>__<scene>__<hash>.mp4   3068

ROOT is the FaceForensics++ root (DFD is downloaded into it with ``--dataset DeepFakeDetection`` and
``DeepFakeDetection_original``). 28 paid actors (ids ``01`` … ``28``) were filmed in several scenes
(``exit_phone_room``, ``kitchen_pan``, …); a fake ``<a>_<b>__<scene>__<hash>`` is actor a's recording of the
scene with actor b's face swapped in.

**Identities.** The actor ids in the names: a real video shows actor a; a fake carries a (target: the
footage) and b (source: the face), so :func:`crossfake.data.identity.identity_groups` joins both actors'
groups, as it does for FF++ pairs. DFD's fakes pair the actors densely, so most actors end up in one
group: an identity-disjoint split *within* DFD has little to cut. Cross-dataset evaluation tests on all
of it. DFD publishes no official split: ``official_split`` is empty.
"""

from __future__ import annotations

import re
from pathlib import Path

from crossfake.data.corpora.base import VideoRecord, list_media, listing, register_corpus
from crossfake.data.manifest import REAL
from crossfake.utils.errors import CrossfakeError
from crossfake.utils.logging import get_logger

log = get_logger("corpora.dfd")

FAKE_MANIPULATION = "DeepFakeDetection"
"""The ``manipulation`` of every DFD fake (FF++'s folder name for it)."""

REAL_DIR = Path("original_sequences", "actors")
FAKE_DIR = Path("manipulated_sequences", FAKE_MANIPULATION)

_REAL_NAME = re.compile(r"^(\d+)__(.+)$")
_FAKE_NAME = re.compile(r"^(\d+)_(\d+)__(.+)__([A-Za-z0-9]+)$")


@register_corpus("dfd")
class DeepFakeDetection:
    """Adapter for DeepFakeDetection inside a FaceForensics++ download.

    Args:
        root: the FF++ root holding ``original_sequences/actors`` and ``manipulated_sequences/DeepFakeDetection``.
        compression: ``raw``, ``c23`` or ``c40`` (the sub-folder of each sequence type).
        include_real: also list the actors' real videos.
    """

    name = "dfd"
    fake_manipulations = (FAKE_MANIPULATION,)

    def __init__(self, root: Path, compression: str = "c23", include_real: bool = True) -> None:
        self.root = Path(root)
        self.compression = compression
        self.include_real = include_real
        self._check_layout()

    def _dir(self, kind: Path) -> Path:
        return self.root / kind / self.compression / "videos"

    def _check_layout(self) -> None:
        present = [d for d in (REAL_DIR, FAKE_DIR) if (self.root / d).is_dir()]
        if not present:
            found = listing(self.root)
            for parent in ("original_sequences", "manipulated_sequences"):
                if (self.root / parent).is_dir():
                    found += f"; in {parent}/: {listing(self.root / parent)}"
            raise CrossfakeError(
                f"{self.root} is not a DeepFakeDetection root: expected folders '{REAL_DIR.as_posix()}/' and "
                f"'{FAKE_DIR.as_posix()}/' (the FaceForensics++ root DFD was downloaded into), found: {found}"
            )
        wanted = [FAKE_DIR, *([REAL_DIR] if self.include_real else [])]
        for kind in wanted:
            if (self.root / kind).is_dir() and not self._dir(kind).is_dir():
                raise CrossfakeError(
                    f"no videos at {self._dir(kind)} (compression {self.compression!r}); found in "
                    f"{self.root / kind}: {listing(self.root / kind)}"
                )

    def records(self) -> list[VideoRecord]:
        # (folder, name pattern, what the name should look like, manipulation, label); a real video's one
        # actor is both its target and its source
        kinds = [(FAKE_DIR, _FAKE_NAME, "<target>_<source>__<scene>__<hash>", FAKE_MANIPULATION, 1)]
        if self.include_real:
            kinds.insert(0, (REAL_DIR, _REAL_NAME, "<actor>__<scene>", REAL, 0))
        out: list[VideoRecord] = []
        for folder, pattern, expected, manipulation, label in kinds:
            for path in list_media(self._dir(folder)):
                m = pattern.match(path.stem)
                if m is None:
                    log.warning("skipping %s: not named %s", path, expected)
                    continue
                target = m.group(1)
                source = m.group(2) if label else target
                out.append(VideoRecord(path=path, corpus=self.name, manipulation=manipulation, name=path.stem,
                                       label=label, target_id=target, source_id=source,
                                       compression=self.compression))
        if not out:
            raise CrossfakeError(
                f"no DeepFakeDetection videos found under {self.root} for compression {self.compression!r} "
                f"(looked in {self._dir(REAL_DIR)} and {self._dir(FAKE_DIR)})"
            )
        return out
