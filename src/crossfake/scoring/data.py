"""Manifest rows as model inputs: face crops read from disk, batched in row order for scoring.

Training builds on the same dataset and loader (adding shuffling and pseudo-fakes in
:mod:`crossfake.training.data`), so a crop reaches the model the same way whether it is trained on or
scored.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import DataLoader, Dataset, Sampler

from crossfake.data.manifest import resolve_paths
from crossfake.utils.errors import CrossfakeError
from crossfake.utils.workers import default_workers

#: A change made to each decoded crop before the detector's own preprocessing (e.g. a JPEG round trip of
#: a robustness study): RGB PIL image -> RGB PIL image.
CropTransform = Callable[[Image.Image], Image.Image]


class FaceCropDataset(Dataset):
    """Manifest rows as ``(input, label, row)``: the transformed crop, its label and its position.

    Args:
        manifest_df: manifest rows (any subset; positions refer to this frame's order).
        transform: one RGB PIL image -> one model input (the detector's ``transform``).
        root: folder the manifest's relative crop paths start from (default: the manifest's folder,
            remembered by :func:`~crossfake.data.manifest.read_manifest`).
        crop_transform: applied to each decoded crop before ``transform`` (None: the crop as stored). It
            runs in the loader's worker processes, so it must be picklable when they are spawned.
    """

    def __init__(
        self,
        manifest_df: pd.DataFrame,
        transform: Callable[[Image.Image], Any],
        root: str | Path | None = None,
        *,
        crop_transform: CropTransform | None = None,
    ) -> None:
        self.paths: list[str] = resolve_paths(manifest_df, root).tolist()
        self.sample_ids: list[str] = manifest_df["sample_id"].astype(str).tolist()
        # Labels as float for BCE; rows without a usable label (unlabelled data) score fine as NaN.
        self.labels = pd.to_numeric(manifest_df["label"], errors="coerce").to_numpy(
            np.float32, na_value=np.nan
        )
        self.transform = transform
        self.crop_transform = crop_transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[Any, float, int]:
        crop = load_crop(self.paths[i], self.sample_ids[i])
        if self.crop_transform is not None:
            crop = self.crop_transform(crop)
        return self.transform(crop), float(self.labels[i]), i


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


def make_loader(
    dataset: Dataset,
    batch_size: int,
    collate_fn: Callable[[list[Any]], Any] | None = None,
    *,
    sampler: Sampler[int] | None = None,
    seed: int = 0,
    num_workers: int | None = None,
    gpu: bool | None = None,
) -> DataLoader:
    """A DataLoader in row order, or in the order of ``sampler``.

    Args:
        dataset: a :class:`FaceCropDataset` or any dataset of ``(input, label, row)``.
        batch_size: items per batch; the last batch may be smaller.
        collate_fn: e.g. :class:`Collate` of the detector's ``collate`` (default: torch's).
        sampler: the order of the items (None: row order), e.g. training's ``EpochShuffle``.
        seed: seeds the generator each new iterator draws its worker base seed from.
        num_workers: loading processes (None: :func:`~crossfake.utils.workers.default_workers`).
        gpu: whether the loaded batches feed a GPU, which sets the default number of processes (None:
            whether CUDA is visible).
    """
    if gpu is None:
        gpu = torch.cuda.is_available()
    workers = default_workers(gpu=gpu) if num_workers is None else num_workers
    # Every new iterator draws a base seed from the loader's generator. Left to the global RNG, that draw
    # would shift the dropout stream by when loaders happen to be iterated, and a resumed run (which
    # creates its iterator mid-epoch) would drift from an uninterrupted one.
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        collate_fn=collate_fn,
        num_workers=workers,
        pin_memory=torch.cuda.is_available(),
        generator=generator,
    )
