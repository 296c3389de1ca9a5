"""Pseudo-fakes: fake training images made from real face crops, and the registry of their makers.

A *pseudo-fake maker* turns one real crop into a fake one, e.g. SBI's self-blended image
(:mod:`crossfake.data.sbi`). Makers are plain functions registered by name::

    @register_pseudo_fake("sbi")
    def self_blend(image: np.ndarray, face: FaceRegion, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        ...  # -> (the pseudo-fake, uint8 like `image`; the blend mask, float32 in [0, 1])

The trainer knows only this registry (``data.pseudo_fakes.kind`` in a training config names a maker), never
a particular maker. A maker must be deterministic for a given ``rng`` and must use no other randomness, so
that a pseudo-fake is a pure function of (seed, epoch, crop).

Makers need to know where the face is in the crop. :func:`face_region` reads that from the manifest's
columns, best origin first:

1. ``landmarks``: the five landmarks (frame pixels), mapped into the crop through its square cut and
   rotation (``crop_*``) -- YuNet and dlib crops;
2. ``face_box``: the ellipse inscribed in the face box, mapped the same way -- face detectors without
   landmarks (Haar, hence the synthetic benchmark);
3. ``crop_centre``: no usable box either (a centre crop of a frame without a face, or a manifest
   without crop columns): the ellipse inscribed in the face box that ``prepare``'s default 1.3 margin
   would have put in the middle of the crop.
"""

from __future__ import annotations

import importlib
import io
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np

from crossfake.data.preprocess.crop import landmarks_in_crop
from crossfake.data.preprocess.face_detectors.base import LANDMARK_NAMES
from crossfake.utils.io import write_bytes_atomic
from crossfake.utils.registry import Registry

#: Where a crop's face region came from, best first (see the module docstring).
GEOMETRY_ORIGINS = ("landmarks", "face_box", "crop_centre")
GeometryOrigin = Literal["landmarks", "face_box", "crop_centre"]

LANDMARK_COLUMNS = [f"{name}_{axis}" for name in LANDMARK_NAMES for axis in "xy"]
FACE_BOX_COLUMNS = ["face_x0", "face_y0", "face_x1", "face_y1"]
CROP_BOX_COLUMNS = ["crop_x0", "crop_y0", "crop_x1", "crop_y1"]
#: The manifest columns :func:`face_region` reads.
GEOMETRY_COLUMNS = [*LANDMARK_COLUMNS, *FACE_BOX_COLUMNS, *CROP_BOX_COLUMNS, "crop_angle"]
#: ``prepare``'s default crop margin (the crop's side over the face box's longer side), assumed when a
#: row says nothing about its face.
DEFAULT_MARGIN = 1.3


@dataclass(frozen=True)
class FaceRegion:
    """Where the face lies in a crop, in the crop's pixels (x right, y down).

    Exactly one of the two is set.

    Attributes:
        landmarks: ``(5, 2)``: eyes, nose tip, mouth corners, image-left first (``LANDMARK_NAMES``).
        outline: ``(n, 2)``: a convex polygon around the face (the face box's inscribed ellipse).
        origin: where it came from: ``landmarks``, ``face_box`` or ``crop_centre``.
    """

    landmarks: np.ndarray | None = None
    outline: np.ndarray | None = None
    origin: GeometryOrigin = "landmarks"

    def __post_init__(self) -> None:
        if (self.landmarks is None) == (self.outline is None):
            raise ValueError("a FaceRegion has either landmarks or an outline")
        if self.landmarks is not None and np.shape(self.landmarks) != (5, 2):
            raise ValueError(f"landmarks must be (5, 2), got {np.shape(self.landmarks)}")

    @classmethod
    def from_box(
        cls, box: tuple[float, float, float, float], origin: GeometryOrigin = "face_box"
    ) -> FaceRegion:
        """The ellipse inscribed in an axis-aligned ``(x0, y0, x1, y1)`` box of the crop."""
        return cls(outline=ellipse_polygon(box), origin=origin)


def ellipse_polygon(box: tuple[float, float, float, float], n: int = 48) -> np.ndarray:
    """``n`` points on the ellipse inscribed in ``(x0, y0, x1, y1)``, as ``(n, 2)`` float64."""
    x0, y0, x1, y1 = box
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return np.stack([(x0 + x1) / 2 + (x1 - x0) / 2 * np.cos(t), (y0 + y1) / 2 + (y1 - y0) / 2 * np.sin(t)], 1)


def default_face_box(width: int, height: int) -> tuple[float, float, float, float]:
    """The face box that ``prepare``'s default margin puts in the middle of a ``width`` x ``height`` crop."""
    half = 0.5 / DEFAULT_MARGIN
    return (0.5 - half) * width, (0.5 - half) * height, (0.5 + half) * width, (0.5 + half) * height


def geometry_origin(row: Mapping[str, Any]) -> GeometryOrigin:
    """Which face geometry :func:`face_region` will use for a manifest row (see the module docstring)."""
    crop = _finite(row, [*CROP_BOX_COLUMNS])
    if crop and _finite(row, LANDMARK_COLUMNS):
        return "landmarks"
    if crop and _finite(row, FACE_BOX_COLUMNS):
        return "face_box"
    return "crop_centre"


def face_region(row: Mapping[str, Any], width: int, height: int) -> FaceRegion:
    """The face region of a manifest row in the pixels of its crop image (``width`` x ``height``).

    Args:
        row: the row's :data:`GEOMETRY_COLUMNS` (missing or NaN where unknown).
        width, height: the crop image's size (the crop box is square; a non-square image is scaled
            per axis).
    """
    origin = geometry_origin(row)
    if origin == "crop_centre":
        return FaceRegion.from_box(default_face_box(width, height), "crop_centre")
    crop = tuple(float(row[c]) for c in CROP_BOX_COLUMNS)
    angle = float(row.get("crop_angle") or 0.0)
    angle = 0.0 if not np.isfinite(angle) else angle
    scale = np.array([1.0, height / width])

    def to_crop(points: np.ndarray) -> np.ndarray:
        return landmarks_in_crop(points, crop, angle, width) * scale

    if origin == "landmarks":
        points = np.array([float(row[c]) for c in LANDMARK_COLUMNS]).reshape(5, 2)
        return FaceRegion(landmarks=to_crop(points), origin="landmarks")
    box = tuple(float(row[c]) for c in FACE_BOX_COLUMNS)
    return FaceRegion(outline=to_crop(ellipse_polygon(box)), origin="face_box")


def _finite(row: Mapping[str, Any], columns: list[str]) -> bool:
    try:
        return bool(np.isfinite([float(row[c]) for c in columns]).all())
    except (KeyError, TypeError, ValueError):  # absent column, or pandas' NA
        return False


def fill_polygon(points: np.ndarray, height: int, width: int) -> np.ndarray:
    """A ``height`` x ``width`` float32 mask, 1 inside the convex hull of ``points``, 0 elsewhere."""
    mask = np.zeros((height, width), np.float32)
    hull = cv2.convexHull(np.round(points).astype(np.int32))
    cv2.fillConvexPoly(mask, hull, 1.0)
    return mask


# -- the registry ------------------------------------------------------------------------------------

#: ``(image, face, rng) -> (pseudo-fake, mask)``; see the module docstring.
PseudoFakeMaker = Callable[[np.ndarray, FaceRegion, np.random.Generator], tuple[np.ndarray, np.ndarray]]

PSEUDO_FAKES: Registry[PseudoFakeMaker] = Registry("pseudo-fake kind")
register_pseudo_fake = PSEUDO_FAKES.register
#: Modules whose import registers the built-in makers (imported on first use: they need OpenCV only,
#: but the registry must not import them while they import it).
_BUILTIN_MODULES = ("crossfake.data.sbi",)


def _load_builtins() -> None:
    for module in _BUILTIN_MODULES:
        importlib.import_module(module)


def list_pseudo_fakes() -> list[str]:
    """Names of the registered pseudo-fake makers (``data.pseudo_fakes.kind``)."""
    _load_builtins()
    return PSEUDO_FAKES.names()


def pseudo_fake_maker(kind: str) -> PseudoFakeMaker:
    """The maker registered as ``kind``; a CrossfakeError listing the known kinds otherwise."""
    _load_builtins()
    return PSEUDO_FAKES.get(kind)


# -- the example figure ------------------------------------------------------------------------------


@dataclass(frozen=True)
class PseudoFakeExample:
    """One real crop, its pseudo-fake and the blend mask, for :func:`draw_examples`."""

    name: str
    real: np.ndarray
    fake: np.ndarray
    mask: np.ndarray
    face: FaceRegion
    hull: np.ndarray | None = None  # the region the mask was built from, drawn over the real crop


def draw_examples(examples: list[PseudoFakeExample], path: str | Path, title: str = "") -> None:
    """Save a PNG grid: per example the real crop (face region drawn), the pseudo-fake, the mask and the
    amplified difference ``4 |fake - real|``."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    columns = ["real (face region)", "pseudo-fake", "blend mask", "|fake - real| x4"]
    fig, axes = plt.subplots(len(examples), 4, figsize=(8, 2.1 * len(examples) + 0.4), squeeze=False)
    for ax_row, ex in zip(axes, examples, strict=True):
        diff = np.abs(ex.fake.astype(np.int16) - ex.real.astype(np.int16))
        diff = np.clip(4 * diff, 0, 255).astype(np.uint8)
        for ax, image in zip(ax_row, [ex.real, ex.fake, ex.mask, diff], strict=True):
            if image.ndim == 2:
                ax.imshow(image, cmap="gray", vmin=0, vmax=1)
            else:
                ax.imshow(image)
            ax.set_xticks([])
            ax.set_yticks([])
        ax = ax_row[0]
        h, w = ex.real.shape[:2]
        if ex.hull is not None:
            closed = np.vstack([ex.hull, ex.hull[:1]])
            ax.plot(closed[:, 0], closed[:, 1], "-", color="lime", lw=1)
        if ex.face.landmarks is not None:
            ax.plot(ex.face.landmarks[:, 0], ex.face.landmarks[:, 1], ".", color="red", ms=4)
        ax.set_xlim(-0.5, w - 0.5)
        ax.set_ylim(h - 0.5, -0.5)  # a region reaching past the crop must not rescale it
        ax.set_ylabel(f"{ex.name}\n({ex.face.origin})", fontsize=6)
    for ax, name in zip(axes[0], columns, strict=True):
        ax.set_title(name, fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    write_bytes_atomic(path, buffer.getvalue())
