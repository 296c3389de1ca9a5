"""The training/validation rows of a split manifest, pseudo-fakes, and the shuffled training loader.

Only the rows of the training and validation splits ever reach the trainer: :func:`read_training_manifest`
skips every other row (test included) while reading the Parquet file, and :func:`training_rows` selects
and checks them. With ``data.pseudo_fakes`` the training set also holds fakes made from its real crops
every epoch (:class:`PseudoFakeDataset`, through the maker registry of :mod:`crossfake.data.pseudo_fakes`).
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, Sampler

from crossfake.data.manifest import SPLIT_COLUMN, coerce
from crossfake.data.pseudo_fakes import (
    GEOMETRY_COLUMNS,
    GEOMETRY_ORIGINS,
    FaceRegion,
    PseudoFakeExample,
    draw_examples,
    face_region,
    geometry_origin,
    pseudo_fake_maker,
)
from crossfake.runs.config import DataConfig, PseudoFakeConfig
from crossfake.scoring.data import FaceCropDataset, load_crop, make_loader
from crossfake.utils.errors import CrossfakeError


class PseudoFakeDataset(FaceCropDataset):
    """The training rows, followed by pseudo-fakes made afresh every epoch from the real ones.

    Items ``0 .. len(rows) - 1`` are the rows as :class:`FaceCropDataset` serves them. The
    :attr:`n_pseudo` items after them are pseudo-fakes (label 1), each made by the maker ``config.kind``
    from one real row's crop and face geometry (:func:`~crossfake.data.pseudo_fakes.face_region`). Which
    real rows an epoch's pseudo-fakes come from (all of them at ``ratio`` 1) and each pseudo-fake itself
    are pure functions of ``(seed, epoch, crop)``: the crop enters by its ``sample_id``, so loader
    processes, shuffling and resuming cannot change an image. The loader's :class:`EpochShuffle` calls
    :meth:`set_epoch` and keeps each real crop next to its pseudo-fake (:meth:`shuffle_units`), so the two
    share a batch as in SBI's training.

    Pseudo-fakes are never cached: they change every epoch.

    Args:
        manifest_df: the training rows (reals, and fakes if the config keeps them).
        transform: the detector's transform (one RGB PIL image -> one model input).
        config: the ``data.pseudo_fakes`` section.
        seed: the run's seed.
        root: folder of the relative crop paths (default: the manifest's).
    """

    def __init__(
        self,
        manifest_df: pd.DataFrame,
        transform: Callable[[Image.Image], Any],
        config: PseudoFakeConfig,
        seed: int,
        root: str | Path | None = None,
    ) -> None:
        super().__init__(manifest_df, transform, root)
        self.config, self.seed, self.epoch = config, seed, 0
        self.maker = pseudo_fake_maker(config.kind)
        self.n_rows = len(self.paths)
        self.real_rows = np.flatnonzero(self.labels == 0)
        if len(self.real_rows) == 0:
            raise CrossfakeError(
                f"data.pseudo_fakes ({config.kind}) makes fakes from the real training crops, but the "
                "training rows hold none"
            )
        self.n_pseudo = max(1, round(config.ratio * len(self.real_rows)))
        # Frame-pixel geometry, NaN where a column is absent (old manifests) or unknown (Haar: no landmarks).
        self.geometry = (
            manifest_df.reindex(columns=GEOMETRY_COLUMNS).astype("float64").to_numpy(na_value=np.nan)
        )
        self.keys = [
            int.from_bytes(hashlib.sha256(s.encode()).digest()[:8], "little") for s in self.sample_ids
        ]
        self._real_rows_for: tuple[int, np.ndarray] | None = None

    def __len__(self) -> int:
        return self.n_rows + self.n_pseudo

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def real_rows_for(self, epoch: int) -> np.ndarray:
        """The real row each pseudo-fake of ``epoch`` is made from, by pseudo-fake position."""
        if self._real_rows_for is None or self._real_rows_for[0] != epoch:
            rows = self.real_rows
            if self.n_pseudo < len(rows):
                rng = np.random.default_rng([self.seed, epoch, 0x5EED])
                rows = np.sort(rng.choice(rows, self.n_pseudo, replace=False))
            self._real_rows_for = (epoch, rows)
        return self._real_rows_for[1]

    def shuffle_units(self, epoch: int) -> list[list[int]]:
        """Groups of item indices that shuffling keeps together: each real row with its pseudo-fake."""
        units: list[list[int]] = [[i] for i in range(self.n_rows)]
        for j, row in enumerate(self.real_rows_for(epoch)):
            units[row].append(self.n_rows + j)
        return units

    def face(self, row: int, width: int, height: int) -> FaceRegion:
        """Row ``row``'s face region in the pixels of its crop."""
        return face_region(dict(zip(GEOMETRY_COLUMNS, self.geometry[row], strict=True)), width, height)

    def make(self, row: int, epoch: int) -> PseudoFakeExample:
        """The pseudo-fake of real row ``row`` in ``epoch``, with its crop, mask and face region."""
        real = np.asarray(load_crop(self.paths[row], self.sample_ids[row]))
        face = self.face(row, real.shape[1], real.shape[0])
        fake, mask = self.maker(real, face, np.random.default_rng([self.seed, epoch, self.keys[row]]))
        return PseudoFakeExample(self.sample_ids[row], real, fake, mask, face)

    def __getitem__(self, i: int) -> tuple[Any, float, int]:
        if i < self.n_rows:
            return super().__getitem__(i)
        fake = self.make(int(self.real_rows_for(self.epoch)[i - self.n_rows]), self.epoch).fake
        return self.transform(Image.fromarray(fake)), 1.0, i

    def geometry_counts(self) -> dict[str, int]:
        """How many real rows get their face region from landmarks, the face box or the crop's centre."""
        counts = Counter(
            geometry_origin(dict(zip(GEOMETRY_COLUMNS, self.geometry[r], strict=True)))
            for r in self.real_rows
        )
        return {origin: counts.get(origin, 0) for origin in GEOMETRY_ORIGINS}

    def describe(self) -> dict[str, Any]:
        """What a run records about its pseudo-fakes (``run.json``)."""
        return {
            **self.config.model_dump(mode="json"),
            "real_rows": len(self.real_rows),
            "per_epoch": self.n_pseudo,
            "face_geometry": self.geometry_counts(),
        }

    def summary(self) -> str:
        """One log line: how many pseudo-fakes, and where their face regions come from."""
        geometry = self.geometry_counts()
        return (
            f"pseudo-fakes ({self.config.kind}): {self.n_pseudo} per epoch from {len(self.real_rows)} real "
            f"training crops, made afresh every epoch; face region from five landmarks for "
            f"{geometry['landmarks']}, from the face box's ellipse for {geometry['face_box']} (no landmarks, "
            f"e.g. the Haar face detector), from the crop's centre for {geometry['crop_centre']} (no face box)"
        )

    def examples(self, k: int = 4, epoch: int = 0) -> list[PseudoFakeExample]:
        """``k`` pseudo-fakes of ``epoch`` as training sees them, from real rows spread over the set."""
        reals = self.real_rows_for(epoch)
        picks = np.unique(np.linspace(0, len(reals) - 1, min(k, len(reals))).round().astype(int))
        return [self.make(int(reals[p]), epoch) for p in picks]


def training_dataset(
    rows: pd.DataFrame, transform: Callable[[Image.Image], Any], data: DataConfig, seed: int
) -> FaceCropDataset:
    """The training rows as a dataset: with pseudo-fakes when ``data.pseudo_fakes`` asks for them."""
    if data.pseudo_fakes is None:
        return FaceCropDataset(rows, transform)
    return PseudoFakeDataset(rows, transform, data.pseudo_fakes, seed)


def write_examples(dataset: PseudoFakeDataset, path: str | Path, k: int = 4) -> None:
    """Save a figure of ``k`` of the first epoch's pseudo-fakes (real crop, pseudo-fake, mask, difference)."""
    from crossfake.data.sbi import face_hull  # the drawn region: the largest the SBI mask starts from

    examples = [
        PseudoFakeExample(ex.name, ex.real, ex.fake, ex.mask, ex.face, hull=face_hull(ex.face))
        for ex in dataset.examples(k)
    ]
    draw_examples(examples, path, title=f"pseudo-fakes: {dataset.config.kind}, epoch 1")


class EpochShuffle(Sampler[int]):
    """A fresh permutation per epoch, a pure function of ``(seed, epoch)``.

    Deterministic shuffling is what lets a resumed run replay the interrupted epoch's order and skip the
    batches it already trained on; every process of a multi-GPU run draws the same permutation and
    :class:`ShardedBatches` shards it.

    A dataset whose items depend on the epoch takes part: :meth:`set_epoch` is passed on to its own
    ``set_epoch`` (before the loader's iterator, and so its worker processes, exist), and its
    ``shuffle_units(epoch)`` (lists of item indices) are permuted as units that stay adjacent.
    """

    def __init__(self, n: int, seed: int, dataset: Any = None) -> None:
        self.n, self.seed, self.epoch = n, seed, 0
        self.dataset = dataset

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[int]:
        seed = int(np.random.SeedSequence([self.seed, self.epoch]).generate_state(1)[0])
        generator = torch.Generator().manual_seed(seed)
        units: Sequence[Sequence[int]] | None = (
            self.dataset.shuffle_units(self.epoch) if hasattr(self.dataset, "shuffle_units") else None
        )
        if units is None:
            yield from torch.randperm(self.n, generator=generator).tolist()
            return
        for k in torch.randperm(len(units), generator=generator).tolist():
            yield from units[k]


def shuffled_loader(
    dataset: Dataset,
    batch_size: int,
    collate_fn: Callable[[list[Any]], Any] | None,
    *,
    seed: int,
    num_workers: int | None = None,
) -> DataLoader:
    """The training loader: :func:`~crossfake.scoring.data.make_loader` shuffled by :class:`EpochShuffle`.

    Call ``loader.sampler.set_epoch`` each epoch.
    """
    return make_loader(
        dataset,
        batch_size,
        collate_fn,
        sampler=EpochShuffle(len(dataset), seed, dataset),
        seed=seed,
        num_workers=num_workers,
    )


def shard_slice(start: int, stop: int, rank: int, world: int) -> tuple[int, int]:
    """Process ``rank`` of ``world``'s part ``[lo, hi)`` of ``[start, stop)``: contiguous, sizes within 1."""
    size, extra = divmod(stop - start, world)
    lo = start + rank * size + min(rank, extra)
    return lo, lo + size + (rank < extra)


class ShardedBatches(Sampler[list[int]]):
    """This process's part of every global batch of a sampler's order: multi-process training's batches.

    ``world`` processes with micro-batches of ``batch_size`` must train each step on the rows that one
    process with batches of ``world * batch_size`` would: the order (:class:`EpochShuffle`, the same in every
    process) is cut into global batches of ``world * batch_size`` and process ``rank`` takes the ``rank``-th
    contiguous part of each (:func:`shard_slice`). The last, short global batch is split as evenly as
    possible and never padded with repeated rows (what ``accelerate``'s default sharding does, so that those
    rows count twice in their step). A process whose part is empty (fewer rows than processes) gets the
    batch's first row as a stand-in, which the trainer weighs 0 (:meth:`rows`), so that every process still
    takes part in the gradient all-reduce. With ``world`` 1 the batches are the sampler's, ``batch_size`` at
    a time.
    """

    def __init__(self, sampler: Sampler[int], batch_size: int, rank: int = 0, world: int = 1) -> None:
        self.sampler, self.batch_size, self.rank, self.world = sampler, batch_size, rank, world
        self.global_batch = batch_size * world

    def set_epoch(self, epoch: int) -> None:
        self.sampler.set_epoch(epoch)  # type: ignore[attr-defined]

    def __len__(self) -> int:
        return -(-len(self.sampler) // self.global_batch)  # type: ignore[arg-type]

    def rows(self, j: int) -> tuple[int, int]:
        """(rows of this process, rows of all processes) in global batch ``j`` of an epoch."""
        start = j * self.global_batch
        stop = min(len(self.sampler), start + self.global_batch)  # type: ignore[arg-type]
        lo, hi = shard_slice(start, stop, self.rank, self.world)
        return hi - lo, stop - start

    def __iter__(self) -> Iterator[list[int]]:
        order = list(self.sampler)
        for start in range(0, len(order), self.global_batch):
            batch = order[start : start + self.global_batch]
            lo, hi = shard_slice(0, len(batch), self.rank, self.world)
            yield batch[lo:hi] or batch[:1]


def shard_loader(loader: DataLoader, rank: int, world: int) -> DataLoader:
    """``loader`` (its sampler's order) as process ``rank`` of ``world`` loads it: :class:`ShardedBatches`."""
    return DataLoader(
        loader.dataset,
        batch_sampler=ShardedBatches(loader.sampler, loader.batch_size or 1, rank, world),
        collate_fn=loader.collate_fn,
        num_workers=loader.num_workers,
        pin_memory=loader.pin_memory,
        generator=loader.generator,
        worker_init_fn=loader.worker_init_fn,
        prefetch_factor=loader.prefetch_factor,
        persistent_workers=loader.persistent_workers,
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
    With ``data.pseudo_fakes`` (and not its ``manifest_fakes``) only the real training rows are kept.

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
        if (
            name == data.train_split
            and data.pseudo_fakes is not None
            and not data.pseudo_fakes.manifest_fakes
        ):
            rows = rows.loc[rows["label"] == 0]  # real-only training: the fakes are the pseudo-fakes
            if rows.empty:
                raise CrossfakeError(
                    f"{data.manifest}: split {name!r} has no real rows to make pseudo-fakes from"
                )
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
    # Whole videos, per manipulation, so a 20% run still sees every manipulation and the reals in proportion.
    rng = np.random.default_rng([seed, 0x7261])
    keep: list[str] = []
    for _, group in rows.groupby("manipulation", sort=True):
        videos = np.array(sorted(group["video_id"].unique()))
        n = max(1, int(np.ceil(fraction * len(videos))))
        keep.extend(rng.permutation(videos)[:n])
    return rows.loc[rows["video_id"].isin(keep)]
