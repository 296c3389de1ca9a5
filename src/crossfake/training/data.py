"""Face crops as a torch dataset, the training/validation rows of a split manifest, and data loaders.

Only the rows of the training and validation splits ever reach the trainer: :func:`read_training_manifest`
skips every other row (test included) while reading the Parquet file, and :func:`training_rows` selects
and checks them.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import DataLoader, Dataset, Sampler

from crossfake.data.manifest import SPLIT_COLUMN, coerce, resolve_paths
from crossfake.training.config import DataConfig
from crossfake.utils.errors import CrossfakeError


class FaceCropDataset(Dataset):
    """Manifest rows as ``(input, label, row)``: the transformed crop, its label and its position.

    Args:
        manifest_df: manifest rows (any subset; positions refer to this frame's order).
        transform: one RGB PIL image -> one model input (the detector's ``transform``).
        root: folder the manifest's relative crop paths start from (default: the manifest's folder,
            remembered by :func:`~crossfake.data.manifest.read_manifest`).
    """

    def __init__(
        self,
        manifest_df: pd.DataFrame,
        transform: Callable[[Image.Image], Any],
        root: str | Path | None = None,
    ) -> None:
        self.paths: list[str] = resolve_paths(manifest_df, root).tolist()
        self.sample_ids: list[str] = manifest_df["sample_id"].astype(str).tolist()
        # Labels as float for BCE; rows without a usable label (unlabelled data) score fine as NaN.
        self.labels = pd.to_numeric(manifest_df["label"], errors="coerce").to_numpy(
            np.float32, na_value=np.nan
        )
        self.transform = transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[Any, float, int]:
        return self.transform(load_crop(self.paths[i], self.sample_ids[i])), float(self.labels[i]), i


def load_crop(path: str | Path, sample_id: str = "") -> Image.Image:
    """Open a face crop as RGB, or raise a CrossfakeError naming the file (missing or unreadable)."""
    what = f"face crop {path}" + (f" (sample {sample_id})" if sample_id else "")
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except FileNotFoundError:
        raise CrossfakeError(f"{what} does not exist; was the prepared folder moved or pruned?") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:  # PIL's errors for bad files
        raise CrossfakeError(f"{what} is unreadable or corrupt: {e}") from None


class Collate:
    """Batch ``(input, label, row)`` items: inputs through the detector's ``collate``, the rest as tensors."""

    def __init__(self, collate_inputs: Callable[[list[Any]], Any]) -> None:
        self.collate_inputs = collate_inputs

    def __call__(self, items: list[tuple[Any, float, int]]) -> tuple[Any, torch.Tensor, torch.Tensor]:
        inputs, labels, rows = zip(*items, strict=True)
        return self.collate_inputs(list(inputs)), torch.tensor(labels), torch.tensor(rows)


class EpochShuffle(Sampler[int]):
    """A fresh permutation per epoch, a pure function of ``(seed, epoch)``.

    Deterministic shuffling is what lets a resumed run replay the interrupted epoch's order and skip the
    batches it already trained on; every process of a multi-GPU run draws the same permutation and
    ``accelerate`` shards it.
    """

    def __init__(self, n: int, seed: int) -> None:
        self.n, self.seed, self.epoch = n, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[int]:
        seed = int(np.random.SeedSequence([self.seed, self.epoch]).generate_state(1)[0])
        yield from torch.randperm(self.n, generator=torch.Generator().manual_seed(seed)).tolist()


def default_workers() -> int:
    """Loader processes when the config says null: leave one CPU to the main process, at most 4."""
    return max(0, min(4, (os.cpu_count() or 1) - 1))


def make_loader(
    dataset: Dataset,
    batch_size: int,
    collate_fn: Callable[[list[Any]], Any] | None = None,
    *,
    shuffle_seed: int | None = None,
    num_workers: int | None = None,
) -> DataLoader:
    """A DataLoader in row order, or shuffled by :class:`EpochShuffle` when ``shuffle_seed`` is given.

    Args:
        dataset: a :class:`FaceCropDataset` or any dataset of ``(input, label, row)``.
        batch_size: items per batch; the last batch may be smaller.
        collate_fn: e.g. :class:`Collate` of the detector's ``collate`` (default: torch's).
        shuffle_seed: shuffle with this seed (call ``loader.sampler.set_epoch`` each epoch).
        num_workers: loading processes (None: :func:`default_workers`).
    """
    workers = default_workers() if num_workers is None else num_workers
    sampler = EpochShuffle(len(dataset), shuffle_seed) if shuffle_seed is not None else None
    # Every new iterator draws a base seed from the loader's generator. Left to the global RNG, that draw
    # would shift the dropout stream by when loaders happen to be iterated, and a resumed run (which
    # creates its iterator mid-epoch) would drift from an uninterrupted one.
    generator = torch.Generator().manual_seed(0 if shuffle_seed is None else shuffle_seed)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        collate_fn=collate_fn,
        num_workers=workers,
        pin_memory=torch.cuda.is_available(),
        generator=generator,
    )


def read_training_manifest(data: DataConfig) -> pd.DataFrame:
    """The train and val rows of ``data.manifest``, and no other.

    Parquet filters drop every other row while the file is read, so the test rows, labels included,
    never exist in the training process.
    """
    path = data.manifest
    try:
        if SPLIT_COLUMN not in pq.read_schema(path).names:
            raise CrossfakeError(f"{path} has no '{SPLIT_COLUMN}' column: run `crossfake split` on it first")
        df = pd.read_parquet(path, filters=[(SPLIT_COLUMN, "in", [data.train_split, data.val_split])])
    except (OSError, pa.ArrowException) as e:
        raise CrossfakeError(f"{path} is not a readable Parquet manifest: {e}") from e
    try:
        df = coerce(df)
    except CrossfakeError as e:
        raise CrossfakeError(f"{path}: {e}") from None
    df.attrs["root"] = str(path.parent.resolve())
    return df


def training_rows(manifest: pd.DataFrame, data: DataConfig, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The training and validation rows of a split manifest, subsampled as ``data`` asks.

    Every other row (the test split, unassigned rows) is dropped first; the trainer reads the manifest
    with :func:`read_training_manifest`, which never loads them at all. Training and validation rows must
    be labelled 0/1, and validation must hold both classes (the checkpoint is selected by validation AUC).

    Returns:
        ``(train, val)`` with a fresh 0..n-1 index each; the manifest's ``root`` is kept in ``attrs``.
    """
    if SPLIT_COLUMN not in manifest.columns:
        raise CrossfakeError(
            f"{data.manifest} has no '{SPLIT_COLUMN}' column: run `crossfake split` on it first"
        )
    root = manifest.attrs.get("root")
    splits = manifest[SPLIT_COLUMN]
    parts = []
    for name in (data.train_split, data.val_split):
        rows = manifest.loc[(splits == name).fillna(False).to_numpy()]
        if rows.empty:
            found = sorted(map(str, splits.dropna().unique()))
            raise CrossfakeError(f"{data.manifest} has no rows in split {name!r} (splits present: {found})")
        bad = ~rows["label"].isin([0, 1])
        if bad.any():
            raise CrossfakeError(
                f"{data.manifest}: {int(bad.sum())} row(s) of split {name!r} have a label "
                f"other than 0/1, e.g. {rows.loc[bad, 'sample_id'].iloc[0]}"
            )
        if data.max_frames_per_video is not None:
            rows = _evenly_spaced_frames(rows, data.max_frames_per_video)
        parts.append(rows)
    train, val = parts
    if data.train_fraction < 1:
        train = _video_fraction(train, data.train_fraction, seed)
    if val["label"].nunique() < 2:
        raise CrossfakeError(
            f"{data.manifest}: split {data.val_split!r} needs real and fake rows to compute the "
            "validation AUC that selects the checkpoint"
        )
    out = []
    for rows in (train, val):
        rows = rows.reset_index(drop=True)
        rows.attrs["root"] = root
        out.append(rows)
    return out[0], out[1]


def _evenly_spaced_frames(rows: pd.DataFrame, k: int) -> pd.DataFrame:
    # Evenly spaced in frame order, as the reports' "about 10 frames per video".
    def pick(group: pd.DataFrame) -> pd.DataFrame:
        group = group.sort_values("frame_idx", kind="stable")
        if len(group) <= k:
            return group
        return group.iloc[np.unique(np.linspace(0, len(group) - 1, k).round().astype(int))]

    kept = [pick(g) for _, g in rows.groupby("video_id", sort=False)]
    return pd.concat(kept).sort_index()


def _video_fraction(rows: pd.DataFrame, fraction: float, seed: int) -> pd.DataFrame:
    # Whole videos, per method, so a 20% run still sees every manipulation and the reals in proportion.
    rng = np.random.default_rng([seed, 0x7261])
    keep: list[str] = []
    for _, group in rows.groupby("method", sort=True):
        videos = np.array(sorted(group["video_id"].unique()))
        n = max(1, int(np.ceil(fraction * len(videos))))
        keep.extend(rng.permutation(videos)[:n])
    return rows.loc[rows["video_id"].isin(keep)]
