"""SBI, self-blended images (Shiohara & Yamasaki, CVPR 2022): a real face blended with a jittered copy of itself.

A face swap pastes one face into another frame through a soft mask, and every such blend leaves traces
(a colour or sharpness mismatch at the boundary, a slightly misplaced face). SBI makes training fakes with
exactly those traces and nothing else, from a real crop alone: the crop (*target*) and a copy of it
(*source*) whose colours, frequency content and geometry are jittered are blended through a deformed,
blurred mask of the face region. A detector trained on real crops against their self-blends learns the
blending artefacts that every face swap shares, rather than one manipulation's look.

The recipe is the authors' (``mapooon/SelfBlendedImages``, ``src/utils/sbi.py`` and ``blend.py``),
re-implemented with numpy and OpenCV only:

1. **face hull**: the convex hull of the face's landmarks (theirs: dlib's 81 points, i.e. the 68 points
   plus 13 on the forehead; with probability 0.25 only the 68, without the forehead);
2. **source augmentation**, all on the source: an RGB shift of up to ±20 per channel (p=0.3), brightness
   and contrast ±10%, then either a downscale by 2 or 4 (nearest down, linear up) or a sharpen (alpha
   0.2-0.5, lightness 0.5-1);
3. **source and mask shifted together** by a small random affine: translation up to ±3% (x) and ±1.5% (y)
   of the side, scale 0.95-1/0.95 per axis;
4. **mask deformed** by an elastic transform (alpha 50, sigma 7 pixels, here per 256 pixels of crop);
5. **mask softened** at a random working size of 192-256 pixels per axis: eroded by a 5-25 pixel square
   (their first blur plus ``mask[mask < 1] = 0``), Gaussian-blurred with a 5-25 pixel kernel and sigma
   5-45, normalised to a peak of 1;
6. **blend**: the mask is scaled by a ratio drawn from {0.25, 0.5, 0.75, 1, 1, 1} and
   ``fake = mask * source + (1 - mask) * target``.

Where this differs from the authors' code, and why:

- **Five landmarks, not 81.** crossfake's manifests carry the five landmarks of YuNet or dlib (eyes, nose
  tip, mouth corners). The hull is built from a mean face: the jaw line and eyebrows of dlib's 68-point
  model, averaged over 57 real faces (the photos of ``realdata/faces``) after a least-squares affine fit of
  each face's own five points to the mean five, then made left-right symmetric (:data:`JAW_AND_BROWS`).
  Fitted back to each of those faces by the same affine, this template's jaw-and-brow hull overlaps dlib's
  own with IoU 0.85 (median; mean 0.83, worst 0.51 on a strongly turned head; in-sample, 57 faces). The 81-point model's forehead is
  replaced by a half-ellipse over the jaw's top points reaching one facial third (1.05 interocular
  distances, the measured brow-to-subnasale distance) above the brows (:data:`FOREHEAD`). An affine
  follows roll, scale, and the foreshortening of a turned or tilted head only approximately; the mask
  is deformed and blurred anyway.
- **No landmarks** (the Haar face detector, so the synthetic benchmark): the ellipse inscribed in the face
  box. A Haar box spans roughly brows to chin and cheek to cheek, the 68-point hull's extent; there is no
  forehead variant. No box either: see :mod:`crossfake.data.pseudo_fakes`.
- **Only the source is augmented.** The authors augment the source or, half the time, the target, and then
  pair the blend with the augmented target as its real counterpart. Here the target is always the crop
  itself, so a pseudo-fake equals its real crop wherever the mask is 0 and the real crop is trained on as
  stored: mixed with a manifest's real fakes, reals carry no augmentation that fakes lack (which a detector
  could learn as "augmented means real"). Both directions of the sharpness mismatch remain (downscale: a
  blurrier face; sharpen: a sharper one) and a colour shift is symmetric. What is lost is the authors'
  global augmentation of half the reals.
- **No HueSaturationValue.** Their limits (±0.3 on OpenCV's 0-179 / 0-255 scales) change a uint8 image by
  at most one level, so the step does nothing in their code; it is left out rather than invented.
- Not part of the self-blend, and not done here: their training-time flips, random crop margins and the
  JPEG/colour augmentation of both images of a pair (crossfake trains every method on the crops as they
  are), and the alternative hull shapes of Face X-ray's ``random_get_hull``.

Everything random is drawn from the ``rng`` argument, in a fixed order, so the same generator state gives
the same pseudo-fake.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
from numpy.typing import ArrayLike

from crossfake.data.pseudo_fakes import FaceRegion, default_face_box, fill_polygon, register_pseudo_fake

# -- the face hull from five landmarks ----------------------------------------------------------------

#: The mean five landmarks (eyes, nose tip, mouth corners) in the template's frame: x right, y down,
#: origin at the eyes' midpoint, interocular distance 1 (measured: see the module docstring).
CANONICAL_LANDMARKS = np.array([[-0.5, 0.0], [0.5, 0.0], [0.0, 0.53], [-0.47, 1.09], [0.47, 1.09]])
#: dlib's jaw line (17 points, image-left ear to image-right ear via the chin) and eyebrows (10 points) of
#: the mean face, in the same frame.
JAW_AND_BROWS = np.array(
    [
        [-1.14, 0.09], [-1.13, 0.40], [-1.10, 0.71], [-1.05, 1.01], [-0.95, 1.30], [-0.78, 1.55],
        [-0.55, 1.76], [-0.30, 1.92], [0.00, 1.97], [0.30, 1.92], [0.55, 1.76], [0.78, 1.55],
        [0.95, 1.30], [1.05, 1.01], [1.10, 0.71], [1.13, 0.40], [1.14, 0.09],
        [-0.91, -0.12], [-0.78, -0.27], [-0.59, -0.32], [-0.38, -0.31], [-0.18, -0.25],
        [0.18, -0.25], [0.38, -0.31], [0.59, -0.32], [0.78, -0.27], [0.91, -0.12],
    ]
)  # fmt: skip
#: Top of the forehead: a half-ellipse from the jaw line's top points (x = ±1.14, y = 0.09) up to
#: y = -1.35, one facial third above the brows (-0.30), standing in for the 81-point model's 13.
FOREHEAD = np.stack(
    [1.14 * np.cos(np.linspace(0, np.pi, 13)[1:-1]), 0.09 - 1.44 * np.sin(np.linspace(0, np.pi, 13)[1:-1])], 1
)
#: Probability that the hull includes the forehead (the authors use the 68 points without it 25% of the time).
FOREHEAD_P = 0.75


def template_affine(landmarks: np.ndarray) -> np.ndarray:
    """The least-squares ``(3, 2)`` affine map ``[x, y, 1] @ A`` from the template's frame to ``landmarks``."""
    design = np.hstack([CANONICAL_LANDMARKS, np.ones((5, 1))])
    affine, *_ = np.linalg.lstsq(design, np.asarray(landmarks, np.float64), rcond=None)
    return affine


def face_hull(face: FaceRegion, forehead: bool = True) -> np.ndarray:
    """The convex polygon (``(n, 2)``, crop pixels) of the face region the SBI mask starts from.

    With landmarks: the template's jaw line and brows (plus the forehead if ``forehead``) fitted to the
    five landmarks; otherwise the region's outline (the face box's ellipse; ``forehead`` is ignored).
    """
    if face.landmarks is None:
        points = np.asarray(face.outline, np.float64)
    else:
        template = np.vstack([JAW_AND_BROWS, FOREHEAD]) if forehead else JAW_AND_BROWS
        points = np.hstack([template, np.ones((len(template), 1))]) @ template_affine(face.landmarks)
    return cv2.convexHull(points.astype(np.float32))[:, 0].astype(np.float64)


def as_face_region(face: FaceRegion | ArrayLike) -> FaceRegion:
    """A :class:`FaceRegion` from itself, five ``(x, y)`` landmarks or an ``(x0, y0, x1, y1)`` face box."""
    if isinstance(face, FaceRegion):
        return face
    array = np.asarray(face, np.float64)
    if array.shape == (5, 2):
        return FaceRegion(landmarks=array, origin="landmarks")
    if array.shape == (4,):
        return FaceRegion.from_box(tuple(array), "face_box")
    raise ValueError(f"expected a FaceRegion, (5, 2) landmarks or a (4,) box, got shape {array.shape}")


# -- the recipe's constants (the authors' values) -------------------------------------------------------

RGB_SHIFT, RGB_SHIFT_P = 20.0, 0.3
BRIGHTNESS, CONTRAST = 0.1, 0.1
DOWNSCALE_FACTORS = (2, 4)
SHARPEN_ALPHA, SHARPEN_LIGHTNESS = (0.2, 0.5), (0.5, 1.0)
TRANSLATE = (0.03, 0.015)  # of the width, of the height
SCALE = (0.95, 1 / 0.95)
#: Elastic deformation of the mask, in pixels of a 256-pixel crop (scaled with the crop): displacement
#: amplitude, smoothing sigma, smoothing kernel, and a cap on each displacement component (0.04 of the
#: side: far beyond what the smoothed noise reaches, there to bound the mask's reach).
ELASTIC_ALPHA, ELASTIC_SIGMA, ELASTIC_KERNEL, ELASTIC_CAP = 50.0, 7.0, 17, 0.04
BLUR_SIZE = (192, 256)  # working size of the mask softening, per axis
BLUR_KERNELS = tuple(range(5, 26, 2))
BLUR_SIGMA = (5, 45)
BLEND_RATIOS = (0.25, 0.5, 0.75, 1.0, 1.0, 1.0)


def max_reach(width: int, height: int) -> float:
    """An upper bound, in pixels, on how far the mask's support can reach beyond the face hull.

    The sum of the worst affine shift (scale about the centre plus translation), the elastic cap, the
    widest blur at the smallest working size, and a pixel per resize.
    """
    side = max(width, height)
    grow = SCALE[1] - 1
    affine = math.hypot(grow * width / 2 + TRANSLATE[0] * width, grow * height / 2 + TRANSLATE[1] * height)
    elastic = math.sqrt(2) * ELASTIC_CAP * side
    blur = (max(BLUR_KERNELS) // 2 + 1) * side / BLUR_SIZE[0]
    return affine + elastic + blur + 2


# -- the steps ------------------------------------------------------------------------------------------


def augment_source(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Colour jitter, then a downscale or a sharpen: the source's difference from its target."""
    out = image.astype(np.float32)
    if rng.random() < RGB_SHIFT_P:
        out += rng.uniform(-RGB_SHIFT, RGB_SHIFT, 3).astype(np.float32)
        out = np.clip(out, 0, 255)
    contrast = 1 + rng.uniform(-CONTRAST, CONTRAST)
    brightness = rng.uniform(-BRIGHTNESS, BRIGHTNESS) * 255
    out = np.clip(np.rint(out * contrast + brightness), 0, 255).astype(np.uint8)
    h, w = out.shape[:2]
    if rng.random() < 0.5:
        factor = DOWNSCALE_FACTORS[rng.integers(len(DOWNSCALE_FACTORS))]
        small = cv2.resize(out, (max(1, w // factor), max(1, h // factor)), interpolation=cv2.INTER_NEAREST)
        return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    alpha, lightness = rng.uniform(*SHARPEN_ALPHA), rng.uniform(*SHARPEN_LIGHTNESS)
    effect = np.full((3, 3), -1.0, np.float32)
    effect[1, 1] = 8 + lightness
    identity = np.zeros((3, 3), np.float32)
    identity[1, 1] = 1
    kernel = (1 - alpha) * identity + alpha * effect
    return cv2.filter2D(out, -1, kernel)  # saturates to 0-255 on uint8


def random_affine(
    source: np.ndarray, mask: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Shift and scale the source and its mask together, about the crop's centre."""
    h, w = mask.shape
    sx, sy = rng.uniform(*SCALE, 2)
    tx, ty = rng.uniform(-TRANSLATE[0], TRANSLATE[0]) * w, rng.uniform(-TRANSLATE[1], TRANSLATE[1]) * h
    cx, cy = (w - 1) / 2, (h - 1) / 2
    matrix = np.array([[sx, 0, cx - sx * cx + tx], [0, sy, cy - sy * cy + ty]], np.float64)
    source = cv2.warpAffine(source, matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
    mask = cv2.warpAffine(mask, matrix, (w, h), flags=cv2.INTER_NEAREST, borderValue=0)
    return source, mask


def elastic(mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Bend the mask's outline with a smooth random displacement field."""
    h, w = mask.shape
    scale = max(h, w) / 256
    kernel = max(3, int(round(ELASTIC_KERNEL * scale)) | 1)
    cap = ELASTIC_CAP * max(h, w)
    fields = []
    for _ in range(2):
        noise = rng.uniform(-1, 1, (h, w)).astype(np.float32)
        field = cv2.GaussianBlur(noise, (kernel, kernel), ELASTIC_SIGMA * scale) * (ELASTIC_ALPHA * scale)
        fields.append(np.clip(field, -cap, cap))
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    return cv2.remap(mask, xs + fields[0], ys + fields[1], cv2.INTER_NEAREST, borderValue=0)


def soften(mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Erode, then blur the mask at a random working size; peak 1 (or all 0 for an empty mask)."""
    h, w = mask.shape
    size_w, size_h = rng.integers(BLUR_SIZE[0], BLUR_SIZE[1] + 1, 2)
    k1, k2 = rng.choice(BLUR_KERNELS, 2)
    sigma = int(rng.integers(BLUR_SIGMA[0], BLUR_SIGMA[1] + 1))
    work = cv2.resize(mask, (int(size_w), int(size_h)), interpolation=cv2.INTER_LINEAR)
    work = (work >= 0.5).astype(np.float32)
    eroded = cv2.erode(work, np.ones((int(k1), int(k1)), np.uint8))
    if eroded.any():  # a face too small for the kernel keeps its un-eroded mask
        work = eroded
    work = cv2.GaussianBlur(work, (int(k2), int(k2)), sigma)
    peak = work.max()
    if peak <= 0:
        return np.zeros((h, w), np.float32)
    return cv2.resize(work / peak, (w, h), interpolation=cv2.INTER_LINEAR)


@register_pseudo_fake("sbi")
def self_blend(
    image: np.ndarray, face: FaceRegion | ArrayLike, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """The self-blended image of a real face crop.

    Args:
        image: ``(H, W, 3)`` uint8 RGB crop.
        face: where the face is, in crop pixels: a :class:`~crossfake.data.pseudo_fakes.FaceRegion`,
            five ``(x, y)`` landmarks, or an ``(x0, y0, x1, y1)`` face box.
        rng: the only source of randomness; the same state gives the same result.

    Returns:
        ``(fake, mask)``: the blended ``(H, W, 3)`` uint8 image, equal to ``image`` wherever ``mask`` is 0,
        and the ``(H, W)`` float32 blend weight of the source, in [0, 1].
    """
    image = np.ascontiguousarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 RGB image, got {image.dtype} {image.shape}")
    h, w = image.shape[:2]
    region = as_face_region(face)
    forehead = bool(rng.random() < FOREHEAD_P)
    mask = fill_polygon(face_hull(region, forehead), h, w)
    if not mask.any():  # a degenerate or out-of-crop region: the face the default margin would give
        mask = fill_polygon(face_hull(FaceRegion.from_box(default_face_box(w, h), "crop_centre")), h, w)
    source = augment_source(image, rng)
    source, mask = random_affine(source, mask, rng)
    mask = elastic(mask, rng)
    mask = soften(mask, rng) * rng.choice(BLEND_RATIOS)
    weight = mask[..., None]
    fake = weight * source.astype(np.float32) + (1 - weight) * image.astype(np.float32)
    return np.clip(np.rint(fake), 0, 255).astype(np.uint8), mask.astype(np.float32)
