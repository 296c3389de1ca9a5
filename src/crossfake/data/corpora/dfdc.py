"""The DeepFake Detection Challenge (DFDC) corpus in its download layout.

::

    ROOT/dfdc_train_part_<k>/metadata.json   {"<name>.mp4": {"label": "FAKE"|"REAL", "split": "train",
    ROOT/dfdc_train_part_<k>/<name>.mp4                        "original": "<original>.mp4"}, …}
    ROOT/metadata.json + ROOT/<name>.mp4      ROOT is a single part
    ROOT/labels.csv + ROOT/<filename>         the public test set: columns filename,label (1 = fake)

Every folder among ROOT and its direct sub-folders that holds a ``metadata.json`` is read from it; one
that holds only a ``labels.csv`` is read from that. A fake's target is its original (the stem of its
``original``), so a fake and its original share an identity group; the person whose face was pasted in
is not in DFDC's metadata, so ``source_id`` equals the target. DFDC does not say which originals show the
same actor either: an identity split of DFDC is disjoint by original footage, not guaranteed by actor.
The public test set's ``labels.csv`` names no originals, so each of its videos is its own identity.

Videos listed in the metadata but absent on disk (parts are often downloaded incompletely) are skipped
and counted in a warning, as are videos on disk that no metadata lists.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from crossfake.data.corpora.base import VideoRecord, list_media, listing, register_corpus
from crossfake.data.manifest import REAL, SPLITS
from crossfake.utils.errors import CrossfakeError
from crossfake.utils.logging import get_logger

log = get_logger("corpora.dfdc")

FAKE = "fake"
"""The ``manipulation`` of every DFDC fake: the metadata does not say which manipulation made it."""

_LABELS = {"FAKE": 1, "REAL": 0}


@register_corpus("dfdc")
class DeepfakeDetectionChallenge:
    """Adapter for a DFDC download (training parts and/or the public test set).

    Args:
        root: the folder holding ``dfdc_train_part_*/`` (or a single part, or the test set).
        include_real: also list the videos labelled ``REAL``.
    """

    name = "dfdc"
    fake_manipulations = (FAKE,)

    def __init__(self, root: Path, include_real: bool = True) -> None:
        self.root = Path(root)
        self.include_real = include_real
        self.parts = self._find_parts()
        self.missing: list[Path] = []
        """Videos listed in the metadata but absent on disk (filled by :meth:`records`)."""

    def _find_parts(self) -> list[Path]:
        folders = [self.root, *sorted(p for p in self.root.iterdir() if p.is_dir())]
        parts = [d for d in folders if (d / "metadata.json").is_file() or (d / "labels.csv").is_file()]
        if not parts:
            raise CrossfakeError(
                f"{self.root} is not a DFDC root: expected folders 'dfdc_train_part_<k>/' with a "
                f"'metadata.json' (or a 'metadata.json' or the test set's 'labels.csv' in it), found: "
                f"{listing(self.root)}"
            )
        return parts

    # -- metadata -----------------------------------------------------------------------------------

    def _read_metadata(self, f: Path) -> list[tuple[str, int, str | None, str | None]]:
        """(file name, label, original file name, split) per entry of a part's ``metadata.json``."""
        try:
            data = json.loads(f.read_text())
        except (OSError, ValueError) as e:
            raise CrossfakeError(f"{f} is not readable JSON: {e}") from e
        if not isinstance(data, dict):
            raise CrossfakeError(
                f"{f} must be a JSON object {{\"<name>.mp4\": {{\"label\": \"FAKE\"|\"REAL\", …}}}}, "
                f"got a {type(data).__name__}"
            )
        entries = []
        for filename, meta in data.items():
            label = str(meta.get("label")).upper() if isinstance(meta, dict) else None
            if label not in _LABELS:
                raise CrossfakeError(
                    f"{f}: entry {filename!r} must have \"label\": \"FAKE\" or \"REAL\", got {meta!r}"
                )
            split = meta.get("split")
            entries.append((filename, _LABELS[label], meta.get("original"), split if split in SPLITS else None))
        return entries

    def _read_labels(self, f: Path) -> list[tuple[str, int, str | None, str | None]]:
        """(file name, label, None, "test") per row of the public test set's ``labels.csv``."""
        with f.open(newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            if not reader.fieldnames or not {"filename", "label"} <= set(reader.fieldnames):
                raise CrossfakeError(f"{f} must have columns filename,label (label 1 = fake); got {reader.fieldnames}")
            entries = []
            for row in reader:
                label = (row["label"] or "").strip()
                if label not in ("0", "1"):
                    raise CrossfakeError(f"{f}: label of {row['filename']!r} must be 0 (real) or 1 (fake), got {label!r}")
                entries.append((row["filename"], int(label), None, "test"))
        return entries

    # -- records ------------------------------------------------------------------------------------

    def records(self) -> list[VideoRecord]:
        out: list[VideoRecord] = []
        where: dict[str, Path] = {}
        self.missing = []
        for part in self.parts:
            meta = part / "metadata.json"
            entries = self._read_metadata(meta) if meta.is_file() else self._read_labels(part / "labels.csv")
            listed = set()
            for filename, label, original, split in entries:
                listed.add(filename)
                path = part / filename
                if not path.is_file():
                    self.missing.append(path)
                    continue
                if label == 0 and not self.include_real:
                    continue
                name = Path(filename).stem
                if name in where:
                    raise CrossfakeError(f"video {name!r} is listed in both {where[name]} and {part}")
                where[name] = part
                target = Path(original).stem if label == 1 and original else name
                out.append(
                    VideoRecord(
                        path=path, corpus=self.name, manipulation=FAKE if label else REAL, name=name, label=label,
                        target_id=target, source_id=target, official_split=split,
                    )
                )
            unlisted = [p.name for p in list_media(part) if p.name not in listed]
            if unlisted:
                log.warning(
                    "%d video(s) in %s are not in its metadata and are skipped, e.g. %s",
                    len(unlisted), part, ", ".join(unlisted[:3]),
                )
        if self.missing:
            log.warning(
                "%d video(s) listed in DFDC metadata under %s are absent and skipped, e.g. %s",
                len(self.missing), self.root, ", ".join(str(p.relative_to(self.root)) for p in self.missing[:3]),
            )
        if not out:
            raise CrossfakeError(
                f"no DFDC videos found under {self.root}: {len(self.missing)} video(s) listed in the metadata "
                f"of {', '.join(p.name for p in self.parts)} are absent"
            )
        return out
