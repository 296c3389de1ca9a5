"""FaceForensics++ in its official download layout.

::

    ROOT/original_sequences/youtube/<compression>/videos/000.mp4 … 999.mp4
    ROOT/manipulated_sequences/<Manipulation>/<compression>/videos/<target>_<source>.mp4
    ROOT/{train,val,test}.json            (or ROOT/splits/…)   official pair lists, optional
    ROOT/conversion_dict.json             (or ROOT/misc/…, ROOT/original_sequences/youtube/…), optional

A fake ``<target>_<source>`` shows the target's footage with the source's face. The official split files
list pairs ``["071", "054"]``; both originals and both fakes (``071_054``, ``054_071``) of a pair share
the pair's split. ``conversion_dict.json`` maps each original to ``"<youtube id> <sequence>"`` (the real
file: ``"605": "nUNnFudF2pA 0"``; ``"<youtube id>_<sequence>"`` is read too); sequences cut from one YouTube
video become one identity key, so an identity split cannot put them on two sides.
``DeepFakeDetection`` (actors footage, different naming) is not read by this adapter.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

from crossfake.data.corpora.base import VideoRecord, list_media, listing, register_corpus
from crossfake.data.corpora.dfd import FAKE_MANIPULATION as DFD_MANIPULATION
from crossfake.data.manifest import REAL, SPLITS
from crossfake.utils.errors import CrossfakeError
from crossfake.utils.logging import get_logger

log = get_logger("corpora.ffpp")

FFPP_MANIPULATIONS = ("Deepfakes", "Face2Face", "FaceSwap", "NeuralTextures", "FaceShifter")
_FAKE_NAME = re.compile(r"^(\d+)_(\d+)$")
# A YouTube id is 11 characters from [A-Za-z0-9_-]; FF++ appends the sequence index within that video,
# after a space in the real conversion_dict.json ("nUNnFudF2pA 0") or after "_" in some copies.
_YOUTUBE_ID = re.compile(r"[A-Za-z0-9_-]{11}")
_SEQUENCE_INDEX = re.compile(r"^(.+)[ _](\d+)$")


def youtube_key(value: str) -> str:
    """The YouTube video behind a ``conversion_dict`` value: drops FF++'s trailing sequence index.

    ``"nUNnFudF2pA 0"`` and ``"nUNnFudF2pA_0"`` both give ``"nUNnFudF2pA"``. Only one trailing
    ``" <digits>"`` or ``"_<digits>"`` is removed, so ids that contain ``_`` or ``-`` themselves
    (``"-7K_Oz8lswo 0"``) keep them; a bare 11-character id (no index) is returned whole.
    """
    value = value.strip()
    if _YOUTUBE_ID.fullmatch(value):
        return value
    m = _SEQUENCE_INDEX.match(value)
    return m.group(1).strip() if m else value


def _first_existing(root: Path, relpaths: list[str]) -> Path | None:
    return next((root / p for p in relpaths if (root / p).is_file()), None)


@register_corpus("ffpp")
class FaceForensics:
    """Adapter for a FaceForensics++ download.

    Args:
        root: the folder holding ``original_sequences`` and ``manipulated_sequences``.
        compression: ``raw``, ``c23`` or ``c40`` (the sub-folder of each sequence type).
        manipulations: manipulations to read; default every one present.
        include_real: also list the original sequences.
        split_dir: folder with ``train.json``/``val.json``/``test.json`` (default: ROOT or ROOT/splits).
    """

    name = "ffpp"

    def __init__(
        self,
        root: Path,
        compression: str = "c23",
        manipulations: list[str] | tuple[str, ...] | None = None,
        include_real: bool = True,
        split_dir: str | Path | None = None,
    ) -> None:
        self.root = Path(root)
        self.compression = compression
        self.include_real = include_real
        self._check_layout()
        present = self.available_manipulations()
        if manipulations is None:
            self.manipulations = present
        else:
            if DFD_MANIPULATION in manipulations:
                raise CrossfakeError(
                    f"{DFD_MANIPULATION} is not an FF++ manipulation: its actors' footage is read by the "
                    f"`dfd` corpus (`--corpus dfd`, or `corpus: dfd` in a corpus of an experiment)"
                )
            unknown = [m for m in manipulations if m not in present]
            if unknown:
                raise CrossfakeError(
                    f"manipulation(s) {unknown} not found at {self.root / 'manipulated_sequences'} for "
                    f"compression {compression!r}; present: {present or 'none'}"
                )
            self.manipulations = list(manipulations)
        self.split_dir = Path(split_dir) if split_dir else None

    # -- layout -------------------------------------------------------------------------------------

    def _check_layout(self) -> None:
        orig = self.root / "original_sequences"
        manip = self.root / "manipulated_sequences"
        if not orig.is_dir() and not manip.is_dir():
            raise CrossfakeError(
                f"{self.root} is not a FaceForensics++ root: expected folders 'original_sequences/' and "
                f"'manipulated_sequences/', found: {listing(self.root)}"
            )
        real_dir = self._real_dir()
        if self.include_real and not real_dir.is_dir():
            found = listing(orig / "youtube") if (orig / "youtube").is_dir() else listing(orig)
            raise CrossfakeError(
                f"no original videos at {real_dir} (compression {self.compression!r}); "
                f"found in {real_dir.parent.parent}: {found}"
            )

    def _real_dir(self) -> Path:
        return self.root / "original_sequences" / "youtube" / self.compression / "videos"

    def _manipulation_dir(self, manipulation: str) -> Path:
        return self.root / "manipulated_sequences" / manipulation / self.compression / "videos"

    def available_manipulations(self) -> list[str]:
        manip = self.root / "manipulated_sequences"
        if not manip.is_dir():
            return []
        # DeepFakeDetection sits in the same folder but is the actors' footage with its own naming: the
        # `dfd` corpus reads it.
        return sorted(
            p.name for p in manip.iterdir()
            if p.is_dir() and p.name != DFD_MANIPULATION and (p / self.compression / "videos").is_dir()
        )

    # -- metadata -----------------------------------------------------------------------------------

    def official_splits(self) -> dict[str, str]:
        """Original id -> ``train``/``val``/``test`` from the official pair lists ({} if absent)."""
        base = self.split_dir or (self.root / "splits" if (self.root / "splits").is_dir() else self.root)
        files = {s: base / f"{s}.json" for s in SPLITS}
        if not any(f.is_file() for f in files.values()):
            if self.split_dir:
                raise CrossfakeError(f"no train.json/val.json/test.json in split folder {base}")
            return {}
        owner: dict[str, str] = {}
        for split, f in files.items():
            if not f.is_file():
                raise CrossfakeError(f"official split file {f} is missing (found {listing(base)})")
            try:
                pairs = json.loads(f.read_text())
                ids = [str(i) for pair in pairs for i in pair]
            except (ValueError, TypeError) as e:
                raise CrossfakeError(f"{f} is not a JSON list of id pairs like [[\"071\", \"054\"], …]: {e}") from e
            for i in ids:
                if owner.setdefault(i, split) != split:
                    raise CrossfakeError(f"video {i} is listed in both {owner[i]}.json and {split}.json")
        return owner

    def youtube_videos(self) -> dict[str, str]:
        """Original id -> YouTube video id (sequence index dropped), from ``conversion_dict.json`` ({} if
        absent)."""
        f = _first_existing(
            self.root,
            ["conversion_dict.json", "misc/conversion_dict.json", "original_sequences/youtube/conversion_dict.json"],
        )
        if f is None:
            log.warning("no conversion_dict.json under %s: sequences from one YouTube video cannot be grouped", self.root)
            return {}
        try:
            mapping = json.loads(f.read_text())
            youtube = {str(k): youtube_key(str(v)) for k, v in mapping.items()}
        except (ValueError, AttributeError) as e:
            raise CrossfakeError(
                f"{f} is not a JSON object mapping video ids to \"<youtube id> <index>\": {e}"
            ) from e
        per_video = Counter(youtube.values())
        log.info(
            "%s: %d originals from %d YouTube videos, %d of which supply several sequences",
            f, len(youtube), len(per_video), sum(n > 1 for n in per_video.values()),
        )
        return youtube

    # -- records ------------------------------------------------------------------------------------

    def records(self) -> list[VideoRecord]:
        splits = self.official_splits()
        youtube = self.youtube_videos()

        def keys(*people: str) -> tuple[str, ...]:
            return tuple(sorted({f"youtube:{youtube[p]}" for p in people if p in youtube}))

        out: list[VideoRecord] = []
        if self.include_real:
            for path in list_media(self._real_dir()):
                vid = path.stem
                out.append(
                    VideoRecord(
                        path=path, corpus=self.name, manipulation=REAL, name=vid, label=0, target_id=vid,
                        source_id=vid, identity_keys=keys(vid), official_split=splits.get(vid),
                        compression=self.compression,
                    )
                )
        for manipulation in self.manipulations:
            for path in list_media(self._manipulation_dir(manipulation)):
                m = _FAKE_NAME.match(path.stem)
                if m is None:
                    log.warning("skipping %s: not named <target>_<source>", path)
                    continue
                target, source = m.groups()
                split = splits.get(target)
                if split is not None and splits.get(source, split) != split:
                    log.warning("%s joins %s and %s from different official splits", path, target, source)
                out.append(
                    VideoRecord(
                        path=path, corpus=self.name, manipulation=manipulation, name=path.stem, label=1,
                        target_id=target, source_id=source, identity_keys=keys(target, source),
                        official_split=split, compression=self.compression,
                    )
                )
        if not out:
            raise CrossfakeError(
                f"no videos found under {self.root} for compression {self.compression!r} "
                f"(looked in {self._real_dir()} and manipulated_sequences/*/{self.compression}/videos)"
            )
        return out
