"""Any corpus arranged as ``real/…`` and ``fake/<manipulation>/…``: bring Celeb-DF, DFDC or your own data.

::

    ROOT/real/<anything>/clip.mp4                  videos or still images, any depth
    ROOT/fake/<manipulation>/<anything>/clip.mp4   one folder per manipulation
    ROOT/fake/clip.mp4                             fakes of unknown manipulation get manipulation "fake"
    ROOT/identities.csv                            optional: path,target_id[,source_id]

Without ``identities.csv`` each file is its own person, except that files inside the same sub-folder of a
manipulation folder (``real/id07/…``) share that folder's name as their identity — the common way corpora
group clips of one person. Give ``identities.csv`` (paths relative to ROOT) to state who appears where;
only then can a split keep a person's real and fake videos on one side.
"""

from __future__ import annotations

import csv
from pathlib import Path

from crossfake.data.corpora.base import IMAGE_SUFFIXES, VIDEO_SUFFIXES, VideoRecord, listing, register_corpus
from crossfake.data.manifest import REAL
from crossfake.utils.errors import CrossfakeError

_MEDIA = VIDEO_SUFFIXES | IMAGE_SUFFIXES


@register_corpus("folder")
class MediaFolder:
    """Adapter for a ``real/`` + ``fake/<manipulation>/`` folder of videos or images.

    Args:
        root: the folder holding ``real/`` and ``fake/``.
        corpus: the corpus name written to the manifest (default: the root folder's name).
        manipulations: fake manipulations to read; default every one present.
    """

    name = "folder"

    def __init__(self, root: Path, corpus: str | None = None, manipulations: list[str] | None = None) -> None:
        self.root = Path(root)
        self.corpus = corpus or self.root.resolve().name.lower()
        real, fake = self.root / "real", self.root / "fake"
        if not real.is_dir() and not fake.is_dir():
            raise CrossfakeError(
                f"{self.root} is not a real/fake folder corpus: expected 'real/' and 'fake/<manipulation>/' "
                f"sub-folders, found: {listing(self.root)}"
            )
        self.manipulations = manipulations
        self._identities = self._read_identities()

    def _read_identities(self) -> dict[str, tuple[str, str]]:
        f = self.root / "identities.csv"
        if not f.is_file():
            return {}
        with f.open(newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            if not reader.fieldnames or not {"path", "target_id"} <= set(reader.fieldnames):
                raise CrossfakeError(f"{f} must have columns path,target_id[,source_id]; got {reader.fieldnames}")
            return {
                Path(row["path"]).as_posix(): (row["target_id"], row.get("source_id") or row["target_id"])
                for row in reader
            }

    def _groups(self) -> list[tuple[str, int, Path]]:
        """(manipulation, label, folder) for every manipulation folder present."""
        groups: list[tuple[str, int, Path]] = []
        if (self.root / "real").is_dir():
            groups.append((REAL, 0, self.root / "real"))
        fake = self.root / "fake"
        if fake.is_dir():
            subdirs = sorted(p for p in fake.iterdir() if p.is_dir())
            loose = any(p.is_file() and p.suffix.lower() in _MEDIA for p in fake.iterdir())
            if loose or not subdirs:
                groups.append(("fake", 1, fake))
            groups.extend((p.name, 1, p) for p in subdirs)
        if self.manipulations is not None:
            present = {m for m, label, _ in groups if label == 1}
            unknown = sorted(set(self.manipulations) - present)
            if unknown:
                raise CrossfakeError(f"manipulation(s) {unknown} not found under {fake}; present: {sorted(present)}")
            groups = [g for g in groups if g[1] == 0 or g[0] in self.manipulations]
        return groups

    def records(self) -> list[VideoRecord]:
        out: list[VideoRecord] = []
        for manipulation, label, folder in self._groups():
            # The loose-fakes folder must not swallow the per-manipulation folders below it.
            files = folder.glob("*") if manipulation == "fake" else folder.rglob("*")
            media = (p for p in files if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in _MEDIA)
            for path in sorted(media):
                rel = path.relative_to(folder)
                name = rel.with_suffix("").as_posix()
                default_person = rel.parts[0] if len(rel.parts) > 1 else name
                target, source = self._identities.get(
                    path.relative_to(self.root).as_posix(), (default_person, default_person)
                )
                out.append(
                    VideoRecord(
                        path=path, corpus=self.corpus, manipulation=manipulation, name=name, label=label,
                        target_id=target, source_id=source,
                    )
                )
        if not out:
            raise CrossfakeError(
                f"no videos or images found under {self.root}/real or {self.root}/fake "
                f"(accepted suffixes: {', '.join(sorted(_MEDIA))})"
            )
        return out
