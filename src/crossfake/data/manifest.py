"""The manifest: one row per face crop, the contract between preprocessing, splitting and training.

A manifest is a Parquet file (``manifest.parquet``) written by ``crossfake prepare``. Paths to crops are
stored relative to the manifest's folder so a prepared corpus can be moved as a whole. Every column is
explicit; nothing downstream parses a path to learn a video's identity (DeepfakeBench's trap).

Video identity is ``video_id = "<corpus>/<manipulation>/<name>"``: the same name under two manipulations
(``000_003`` in Deepfakes and FaceSwap) is two videos, not one.

Vocabulary, the same in every column, config key, flag and document: a *corpus* is a collection of videos
with its own layout (FF++, Celeb-DF, ...; read by an adapter of :mod:`crossfake.data.corpora`); a
*manipulation* is how a video was faked (``FaceSwap``; ``real`` for pristine ones); the *source* is the
person whose face was pasted in (``source_id``); a *method* is a detection method and a *detector* the
deepfake model it builds, never the *face detector* that finds faces. Manifests written before these
names (``dataset``, ``method``, ``detector`` columns) are read under today's names.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from crossfake.utils.errors import CrossfakeError
from crossfake.utils.io import write_parquet_atomic

REAL = "real"
"""The ``manipulation`` of every pristine video, whatever the corpus calls it (FF++'s ``original_sequences``)."""

SPLITS = ("train", "val", "test")

#: Column name -> pandas dtype. Order is the on-disk order.
COLUMNS: dict[str, str] = {
    "sample_id": "string",  # "<video_id>/<frame_idx:06d>", unique per row
    "path": "string",  # crop image, relative to the manifest's folder
    "corpus": "string",  # the corpus adapter's name, e.g. "ffpp", "folder"
    "manipulation": "string",  # "real" or the manipulation's name, e.g. "FaceSwap"
    "video_id": "string",  # "<corpus>/<manipulation>/<name>"
    "video_path": "string",  # the source video or image, absolute
    "frame_idx": "int64",  # index of the frame in the decoded video (0 for images)
    "label": "int8",  # 0 real, 1 fake
    "target_id": "string",  # the person whose video it is (FF++: the <target> of <target>_<source>)
    "source_id": "string",  # the person whose face was pasted in (FF++: <source>); equals target for real
    "identity_group": "string",  # connected component of people sharing a video or a YouTube video
    "official_split": "string",  # the corpus's own split (FF++ train/val/test.json), if it has one
    "face_x0": "float32",  # face box in frame pixels, as tracked (smoothed), before the crop margin
    "face_y0": "float32",
    "face_x1": "float32",
    "face_y1": "float32",
    # The five landmarks (face_detectors.LANDMARK_NAMES: eyes, nose tip, mouth corners, image-left first),
    # tracked like the box, in frame pixels; missing for face detectors without landmarks (Haar).
    **{f"{name}_{axis}": "float32" for name in ("eye_l", "eye_r", "nose", "mouth_l", "mouth_r") for axis in "xy"},
    "crop_x0": "float32",  # the square cut out of the frame (before rotation and resize)
    "crop_y0": "float32",
    "crop_x1": "float32",
    "crop_y1": "float32",
    "crop_angle": "float32",  # degrees the frame was rotated to level the eyes (0 unless aligned)
    "det_score": "float32",  # face detector confidence, its own scale; NaN where interpolated
    "interpolated": "boolean",  # the face box was interpolated across a frame the face detector missed
    "track_id": "Int16",  # the face's track in its video (0 = the subject); missing for centre crops
    "num_faces": "int16",  # faces found in the frame (before tracking)
    "face_detector": "string",
}

#: Optional columns added by ``crossfake split``.
SPLIT_COLUMN = "split"

FAILURE_COLUMNS: dict[str, str] = {
    "video_id": "string",
    "video_path": "string",
    "frame_idx": "Int64",  # missing when the whole video failed
    "stage": "string",  # "open", "decode", "detect", "write"
    "reason": "string",
}


#: Columns that may be absent (read as missing values): the landmarks, crop box and track that manifests
#: written before crossfake 0.2, or by other tools, do not have.
OPTIONAL_COLUMNS = [c for c in COLUMNS if c.startswith(("crop_", "eye_", "nose_", "mouth_"))] + [
    "interpolated",
    "track_id",
]


#: Old column name -> today's (see the module's vocabulary). Tables of scored rows carry these columns too.
RENAMED_COLUMNS = {"detector": "face_detector", "dataset": "corpus", "method": "manipulation"}


def upgrade(df: pd.DataFrame) -> pd.DataFrame:
    """A manifest (or a predictions table) written before today's vocabulary, under today's column names."""
    renames = {old: new for old, new in RENAMED_COLUMNS.items() if old in df.columns and new not in df.columns}
    return df.rename(columns=renames) if renames else df


def current_column(name: str, columns: Iterable[str]) -> str:
    """``name``, or today's name for it when a table has only that (``--group-col method`` names
    ``manipulation``)."""
    columns = set(columns)
    return RENAMED_COLUMNS[name] if name not in columns and RENAMED_COLUMNS.get(name) in columns else name


def empty_manifest() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=t) for c, t in COLUMNS.items()})


def empty_failures() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=t) for c, t in FAILURE_COLUMNS.items()})


def coerce(df: pd.DataFrame, columns: dict[str, str] = COLUMNS) -> pd.DataFrame:
    """Return ``df`` with the schema's columns first, in order and with their dtypes (old names upgraded,
    absent optional columns filled with missing values)."""
    df = upgrade(df)
    missing = [c for c in columns if c not in df.columns and c not in OPTIONAL_COLUMNS]
    if missing:
        raise CrossfakeError(f"manifest is missing column(s) {missing}; expected columns {list(columns)}")
    extra = [c for c in df.columns if c not in columns]
    out = df.reindex(columns=list(columns) + extra)
    return out.astype({c: t for c, t in columns.items()})


def write_manifest(df: pd.DataFrame, path: str | Path) -> None:
    """Write ``df`` to ``path``; crop paths relative to another folder (``df.attrs["root"]``) are rebased."""
    root = df.attrs.get("root")
    target = Path(path).resolve().parent
    if root is not None and Path(root).resolve() != target:
        rel = Path(os.path.relpath(Path(root).resolve(), target))
        df = df.assign(path=df["path"].map(lambda p: str(rel / p)))
    write_parquet_atomic(path, coerce(df))


def read_manifest(path: str | Path, require_split: bool = False) -> pd.DataFrame:
    """Read and validate a manifest; crop paths stay relative (see :func:`resolve_paths`)."""
    path = Path(path)
    if path.is_dir():
        path = path / "manifest.parquet"
    if not path.is_file():
        raise CrossfakeError(f"no manifest at {path}: run `crossfake prepare` first (it writes manifest.parquet)")
    try:
        df = pd.read_parquet(path)
    except Exception as e:  # pyarrow raises several types for a file that is not Parquet
        raise CrossfakeError(f"{path} is not a readable Parquet manifest: {e}") from e
    try:
        df = coerce(df)
    except CrossfakeError as e:
        raise CrossfakeError(f"{path}: {e}") from None
    if require_split and SPLIT_COLUMN not in df.columns:
        raise CrossfakeError(f"{path} has no '{SPLIT_COLUMN}' column: run `crossfake split` on it first")
    df.attrs["root"] = str(path.parent.resolve())
    return df


def resolve_paths(df: pd.DataFrame, root: str | Path | None = None) -> pd.Series:
    """Absolute crop paths for the rows of ``df`` (root defaults to the manifest's folder)."""
    base = Path(root if root is not None else df.attrs.get("root", "."))
    return df["path"].map(lambda p: str(base / p))
