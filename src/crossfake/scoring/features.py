"""On-disk cache of frozen features, for methods that set ``supports_feature_cache``.

Such a method's ``forward`` is ``head(features(x))`` with ``features`` frozen, so the expensive part runs
once per image, ever: the first run extracts the features of a set of manifest rows into
``<cache>/<key[:2]>/<key>.npy`` (float32, one row per manifest row, in order) and every later run, of any
head on the same features, memory-maps that file in seconds.

The key is a SHA-256 over everything the features depend on, and nothing else:

- the detector class and its method config, except the learning rate (``normalize`` of the linear probe
  changes the features; the learning rate cannot);
- the frozen weights themselves (every non-trainable parameter and buffer, hashed), so a different
  checkpoint under the same backbone name, or a re-downloaded one, never hits a stale entry. Hashing
  them takes most of a second for a ViT-B/32, so the digest is kept per detector object and reused
  while the frozen tensors are provably the same (:func:`frozen_weights_digest`);
- the preprocessing, as the transform's output on a fixed probe image (so any change to resize, crop or
  normalisation changes the key, whatever the transform is made of);
- the precision of the extraction (bf16 features differ from fp32 ones);
- the rows: each one's ``sample_id``, manifest path, crop file size and modification time, in order.

Entries are written through a temporary file and renamed, so an interrupted extraction leaves nothing
that could be mistaken for a finished one. The cache folder is ``$CROSSFAKE_CACHE`` or
``~/.cache/crossfake/features``; deleting it only costs time.
"""

from __future__ import annotations

import hashlib
import json
import os
import weakref
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from accelerate.utils import send_to_device
from PIL import Image
from tqdm.auto import tqdm

from crossfake.data.manifest import resolve_paths
from crossfake.methods.base import Detector
from crossfake.scoring.data import Collate, FaceCropDataset, make_loader
from crossfake.scoring.device import autocast, detector_device
from crossfake.utils.errors import CrossfakeError
from crossfake.utils.io import atomic_path, write_json_atomic
from crossfake.utils.logging import get_logger

log = get_logger("scoring.features")

#: Bumped whenever the key or the file layout changes, so old entries are simply never hit again.
CACHE_FORMAT = 1
CACHE_ENV = "CROSSFAKE_CACHE"


def default_cache_dir() -> Path:
    """``$CROSSFAKE_CACHE`` if set, else ``~/.cache/crossfake/features``."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "crossfake" / "features").expanduser()


class FeatureCache:
    """Frozen features of manifest rows, extracted once and memory-mapped afterwards.

    Args:
        root: cache folder (default: :func:`default_cache_dir`).

    Attributes:
        hits, misses: how many :meth:`get` calls found / had to extract their entry.
    """

    def __init__(self, root: str | Path | None = None) -> None:
        self.root = Path(root).expanduser() if root is not None else default_cache_dir()
        self.hits = 0
        self.misses = 0

    def path(self, key: str) -> Path:
        """Where the entry of ``key`` lives (two-character shards keep folders small)."""
        return self.root / key[:2] / f"{key}.npy"

    def get(
        self,
        detector: Detector,
        rows: pd.DataFrame,
        *,
        batch_size: int,
        precision: str = "fp32",
        num_workers: int | None = None,
        progress: bool = True,
    ) -> np.ndarray:
        """The features of ``rows`` (``(len(rows), ...)`` float32, read-only memmap), extracting on a miss.

        Args:
            detector: a detector with ``supports_feature_cache``, on the device to extract with.
            rows: manifest rows; row i of the result belongs to row i of ``rows``.
            batch_size: images per extraction batch.
            precision: resolved precision (``fp32`` or ``bf16``) to extract in.
            num_workers: image-loading processes.
            progress: show a progress bar while extracting.
        """
        if not detector.supports_feature_cache:
            raise CrossfakeError(f"{type(detector).__name__} has no frozen features to cache")
        key = cache_key(detector, rows, precision)
        path = self.path(key)
        if path.is_file():
            features = np.load(path, mmap_mode="r")
            if features.shape[0] == len(rows):
                self.hits += 1
                log.info("feature cache hit: %d rows from %s", len(rows), path)
                return features
        self.misses += 1
        log.info("feature cache miss: extracting %d rows into %s", len(rows), path)
        extract_features(
            detector,
            rows,
            path,
            batch_size=batch_size,
            precision=precision,
            num_workers=num_workers,
            progress=progress,
        )
        write_json_atomic(
            path.with_suffix(".json"),
            {
                "format": CACHE_FORMAT,
                "rows": len(rows),
                "method": detector.config.model_dump(mode="json"),
                "precision": precision,
                "created_utc": datetime.now(UTC).isoformat(timespec="seconds"),
            },
        )
        return np.load(path, mmap_mode="r")


def extract_features(
    detector: Detector,
    rows: pd.DataFrame,
    path: Path,
    *,
    batch_size: int,
    precision: str = "fp32",
    num_workers: int | None = None,
    progress: bool = True,
) -> None:
    """Write ``detector.features`` of every row to ``path`` (.npy, float32), streaming batch by batch."""
    device = detector_device(detector)
    dataset = FaceCropDataset(rows, detector.transform)
    loader = make_loader(
        dataset, batch_size, Collate(detector.collate), num_workers=num_workers, gpu=device.type == "cuda"
    )
    detector.eval()
    with atomic_path(path) as tmp:
        out = None
        for inputs, _, idx in tqdm(loader, desc="extracting features", unit="batch", disable=not progress):
            with torch.no_grad(), autocast(device, precision):
                features = detector.features(send_to_device(inputs, device))
            features = features.float().cpu().numpy()
            if out is None:  # the feature shape is known only after the first batch
                out = np.lib.format.open_memmap(
                    tmp, mode="w+", dtype=np.float32, shape=(len(dataset), *features.shape[1:])
                )
            out[idx.numpy()] = features
        if out is None:
            raise CrossfakeError("no rows to extract features from")
        out.flush()
        del out  # close the memmap before the file is renamed


def cache_key(detector: Detector, rows: pd.DataFrame, precision: str) -> str:
    """SHA-256 of what the features of ``rows`` depend on (see the module docstring)."""
    h = hashlib.sha256()
    spec = {
        "format": CACHE_FORMAT,
        "detector": f"{type(detector).__module__}.{type(detector).__qualname__}",
        "method": detector.config.model_dump(mode="json", exclude={"lr"}),
        "precision": precision,
    }
    h.update(json.dumps(spec, sort_keys=True).encode())
    h.update(frozen_weights_digest(detector))
    h.update(probe_digest(detector.transform))
    h.update(_rows_digest(rows))
    return h.hexdigest()


#: detector -> (signature of its frozen tensors, their digest); weak, so it never keeps a detector alive.
_FROZEN_DIGESTS: weakref.WeakKeyDictionary[Detector, tuple[tuple, bytes]] = weakref.WeakKeyDictionary()


def frozen_weights_digest(detector: Detector) -> bytes:
    """SHA-256 of the detector's frozen tensors (every parameter without ``requires_grad``, every buffer).

    The digest is computed once per detector object and reused while :func:`_frozen_signature` is
    unchanged. That signature holds, per frozen tensor, its name, storage address, dtype, shape, device
    and torch's version counter, which every in-place write bumps (``copy_``, ``load_state_dict``, an
    optimizer step): any way of changing a frozen weight through torch (in place, by replacing the tensor,
    by ``.to(dtype)``, or by making a parameter trainable or frozen) changes the signature and re-hashes.
    Only writes that bypass autograd's bookkeeping (through ``tensor.data``, or into the raw memory) go
    unseen, as they would by autograd itself. Reading the signature costs microseconds per tensor.
    """
    frozen = _frozen_tensors(detector)
    signature = _frozen_signature(frozen)
    memo = _FROZEN_DIGESTS.get(detector)
    if memo is not None and memo[0] == signature:
        return memo[1]
    digest = _hash_tensors(frozen)
    _FROZEN_DIGESTS[detector] = (signature, digest)
    return digest


def _frozen_tensors(detector: Detector) -> list[tuple[str, torch.Tensor]]:
    trainable = {name for name, p in detector.named_parameters() if p.requires_grad}
    return [(name, t) for name, t in sorted(detector.state_dict().items()) if name not in trainable]


def _frozen_signature(frozen: list[tuple[str, torch.Tensor]]) -> tuple:
    return tuple(
        (name, t.data_ptr(), t.dtype, tuple(t.shape), str(t.device), t._version) for name, t in frozen
    )


def _hash_tensors(frozen: list[tuple[str, torch.Tensor]]) -> bytes:
    h = hashlib.sha256()
    for name, tensor in frozen:
        h.update(name.encode())
        h.update(_digest(tensor))
    return h.digest()


def probe_digest(transform: Callable[[Image.Image], Any]) -> bytes:
    """Content hash of what ``transform`` makes of a fixed probe image: a stand-in for the transform itself."""
    return _digest(transform(_probe_image()))


def _probe_image() -> Image.Image:
    # A fixed, odd-sized noise image: any change in resizing, cropping or normalisation changes its output.
    pixels = np.random.default_rng(0).integers(0, 256, size=(97, 83, 3), dtype=np.uint8)
    return Image.fromarray(pixels, "RGB")


def _digest(obj: Any) -> bytes:
    """Content hash of a tensor, array or image, or of a (nested) mapping/sequence of them and plain values."""
    h = hashlib.sha256()
    if isinstance(obj, torch.Tensor):
        t = obj.detach().cpu().contiguous()
        h.update(f"{t.dtype}{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    elif isinstance(obj, Image.Image):
        h.update(f"{obj.mode}{obj.size}".encode())
        h.update(obj.tobytes())
    elif isinstance(obj, np.ndarray):
        h.update(f"{obj.dtype}{obj.shape}".encode())
        h.update(np.ascontiguousarray(obj).tobytes())
    elif isinstance(obj, Mapping):
        for k in sorted(obj, key=str):
            h.update(str(k).encode())
            h.update(_digest(obj[k]))
    elif isinstance(obj, Sequence) and not isinstance(obj, str):
        for item in obj:
            h.update(_digest(item))
    else:
        h.update(repr(obj).encode())
    return h.digest()


def _rows_digest(rows: pd.DataFrame) -> bytes:
    h = hashlib.sha256()
    for sample_id, rel, path in zip(rows["sample_id"], rows["path"], resolve_paths(rows), strict=True):
        try:
            st = os.stat(path)
        except FileNotFoundError:
            raise CrossfakeError(f"face crop {path} (sample {sample_id}) does not exist") from None
        h.update(f"{sample_id}\0{rel}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.digest()
