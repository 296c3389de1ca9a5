"""The DeeperForensics-1.0 perturbations: seven distortions at five levels, for robustness studies.

Jiang et al., "DeeperForensics-1.0: A Large-Scale Dataset for Real-World Face Forgery Detection"
(CVPR 2020) distort videos with seven types at five levels; SBI, LAA-Net and most later detectors report
their AUC under exactly these. The levels' parameters are those of the authors' code,
``perturbation/add_distortion_to_video.py`` (``get_distortion_parameter``) and
``perturbation/distortions.py`` in github.com/EndlessSora/DeeperForensics-1.0 (commit 4f6ecff):

====  ==================================  ===============================  ============================
code  distortion                          parameter, levels 1 .. 5         what the parameter is
====  ==================================  ===============================  ============================
CS    colour saturation change            0.4, 0.3, 0.2, 0.1, 0.0          factor on the chroma (Cb, Cr)
CC    colour contrast change              0.85, 0.725, 0.6, 0.475, 0.35    factor on every pixel value
BW    local block-wise distortion         16, 32, 48, 64, 80               number of grey 8 px blocks
GNC   white Gaussian noise in colour      0.001, 0.002, 0.005, 0.01, 0.05  noise *variance* in YCbCr
GB    Gaussian blur                       7, 9, 13, 17, 21                 kernel size; sigma = size / 6
JPEG  "JPEG compression" (DF's sense)     2, 3, 4, 5, 6                    down-/up-sampling factor
VC    video compression (H.264)           30, 32, 35, 38, 40               x264 constant rate factor
====  ==================================  ===============================  ============================

How each is computed here (on RGB uint8 images; every result is rounded and clipped to 0..255, where
DeeperForensics truncates with ``astype(uint8)``):

- **CS**: the chroma of the YCbCr representation is scaled towards neutral: ``Y + p (RGB - Y)`` (the
  YCbCr transform is linear, so this is DeeperForensics' Cb/Cr scaling); level 5 is greyscale.
- **CC**: ``p * RGB`` (DeeperForensics' "contrast" scales every value towards black).
- **GNC**: DeeperForensics adds ``N(0, p)`` (standard deviation ``sqrt(p)``) to studio-range YCbCr in
  [0, 1] units, i.e. noise of standard deviation ``sqrt(p) * 255/219`` on Y and ``sqrt(p) * 255/224`` on
  Cb and Cr, then converts back to RGB (BT.601); so does this module. The listed values are variances:
  level 1 is a standard deviation of about 9 grey levels on Y, level 5 about 66.
- **BW**, **GB**: spatial sizes are pixels of the frames DeeperForensics distorts. Here they are pixels
  of a 256 px crop (crossfake's default crop size, ``CropSpec.size``) and scale with the crop's shorter
  side ``s``: ``p`` grey (128) blocks of side ``round(8 s / 256)`` at random places, drawn so that a
  level's blocks include the lower levels' (DeeperForensics draws ``p * (s // 256)`` blocks of 8 px,
  none at all below 256 px); a Gaussian blur with sigma ``p s / (6 * 256)`` and an odd kernel of about
  ``p s / 256`` px (at least 3). On a 256 px crop both are DeeperForensics' exactly. (Below about 64 px
  the blur of the lowest levels, sigma < 0.3 px, rounds away.)
- **JPEG**: DeeperForensics' ``jpeg_compression`` does not JPEG-encode: it shrinks the image by the
  factor ``p`` and enlarges it back (bilinear), a pixelation. This module does the same and keeps the
  name, so tables compare with the papers'.
- **VC**: DeeperForensics re-encodes the video with ``ffmpeg -crf p`` (libx264, preset medium). Here a
  video's crops, in frame order, are encoded as one clip with libx264 (PyAV) at ``crf=p``, preset medium,
  yuv420p, 25 fps, one thread, and decoded back (:func:`compress_clip`). The crops are the sampled frames
  of the video, not consecutive frames, so inter-frame prediction finds less to reuse than in the full
  video and the same CRF costs more detail than in DeeperForensics. A single image is compressed as a
  one-frame clip (an intra frame).

Every perturbation is deterministic given its random generator (BW and GNC draw from it, the others do
not use it), and strength grows with the level. :class:`PerturbTransform` seeds each image from the study's
seed, the perturbation, the level and the image's own pixels, so a crop is perturbed the same way whatever
the order, batching or loader process it is scored in.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction

import av
import cv2
import numpy as np
from PIL import Image

from crossfake.utils.errors import CrossfakeError

#: The levels every perturbation has.
LEVELS: tuple[int, ...] = (1, 2, 3, 4, 5)
#: Crop side (px) at which the spatial parameters (BW, GB) are DeeperForensics' own.
REFERENCE_SIZE = 256
#: DeeperForensics' block side (px, at the reference size) and grey value.
BLOCK_SIDE, BLOCK_VALUE = 8, 128
#: Frame rate of the clips encoded for VC (the crops are sampled frames; see the module docstring).
CLIP_FPS = 25
#: x264 preset of VC (ffmpeg's default, which DeeperForensics' command line uses).
X264_PRESET = "medium"

ImageLike = Image.Image | np.ndarray
Apply = Callable[[np.ndarray, float, np.random.Generator], np.ndarray]


@dataclass(frozen=True)
class Perturbation:
    """One DeeperForensics distortion type.

    Attributes:
        code: DeeperForensics' code (``CS``, ``CC``, ``BW``, ``GNC``, ``GB``, ``JPEG``, ``VC``).
        title: what it is, in words.
        parameters: its parameter at levels 1..5 (DeeperForensics' values).
        meaning: what the parameter is.
        per_video: the distortion works on a whole clip (VC): :meth:`apply` compresses one image as a
            one-frame clip; a study compresses each video's crops together (:func:`compress_clip`).
    """

    code: str
    title: str
    parameters: tuple[float, ...]
    meaning: str
    per_video: bool
    function: Apply

    def parameter(self, level: int) -> float:
        """The parameter of ``level`` (1..5)."""
        return self.parameters[check_level(level) - 1]

    def apply(self, image: ImageLike, level: int, rng: np.random.Generator | None = None) -> Image.Image:
        """``image`` (PIL or an RGB uint8 array) distorted at ``level``, as an RGB PIL image of its size.

        ``rng`` drives the random distortions (BW, GNC); without it, a generator seeded with 0.
        """
        array = as_rgb_array(image)
        rng = rng if rng is not None else np.random.default_rng(0)
        return Image.fromarray(self.function(array, self.parameter(level), rng))


def check_level(level: int) -> int:
    """``level`` as an int, or a CrossfakeError saying the levels are 1..5."""
    if isinstance(level, bool) or not isinstance(level, int | np.integer) or int(level) not in LEVELS:
        raise CrossfakeError(
            f"perturbation level must be an integer from {LEVELS[0]} to {LEVELS[-1]}, not {level!r}"
        )
    return int(level)


def as_rgb_array(image: ImageLike) -> np.ndarray:
    """An RGB uint8 array (H, W, 3) of a PIL image or array; a CrossfakeError for anything else."""
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"))
    array = np.asarray(image)
    if array.dtype != np.uint8 or array.ndim != 3 or array.shape[2] != 3 or min(array.shape[:2]) < 1:
        raise CrossfakeError(
            f"a perturbation needs an RGB image (PIL, or a uint8 array H x W x 3), got an array of shape "
            f"{array.shape} and dtype {array.dtype}"
        )
    return array


def _to_uint8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def _luma(x: np.ndarray) -> np.ndarray:
    """BT.601 luma Y of RGB values (the Y of YCbCr), keeping a trailing axis to broadcast."""
    return x @ np.array([0.299, 0.587, 0.114])[:, None]


def _scale(image: np.ndarray) -> float:
    """The image's shorter side relative to the reference crop size."""
    return min(image.shape[:2]) / REFERENCE_SIZE


def color_saturation(image: np.ndarray, factor: float, rng: np.random.Generator) -> np.ndarray:
    """CS: the chroma scaled by ``factor`` around neutral (0: greyscale)."""
    x = image.astype(np.float64)
    y = _luma(x)
    return _to_uint8(y + factor * (x - y))


def color_contrast(image: np.ndarray, factor: float, rng: np.random.Generator) -> np.ndarray:
    """CC: every value scaled by ``factor`` (DeeperForensics' contrast change)."""
    return _to_uint8(image.astype(np.float64) * factor)


def block_wise(image: np.ndarray, blocks: float, rng: np.random.Generator) -> np.ndarray:
    """BW: ``blocks`` grey squares of side 8 px per 256 px of crop, at random places.

    The places of the most blocks any level draws are drawn first, and a level uses the first ``blocks``
    of them, so the generator's state moves the same at every level and a level's blocks include the
    lower levels'.
    """
    h, w = image.shape[:2]
    side = max(1, min(h, w, round(BLOCK_SIDE * _scale(image))))
    most = int(max(PERTURBATIONS["BW"].parameters))
    rows = rng.integers(0, h - side + 1, size=most)
    cols = rng.integers(0, w - side + 1, size=most)
    out = image.copy()
    for r, c in zip(rows[: int(blocks)], cols[: int(blocks)], strict=True):
        out[r : r + side, c : c + side] = BLOCK_VALUE
    return out


def gaussian_noise_color(image: np.ndarray, variance: float, rng: np.random.Generator) -> np.ndarray:
    """GNC: white Gaussian noise of ``variance`` in studio-range YCbCr ([0, 1] units), back in RGB."""
    std = math.sqrt(variance) * 255.0 * 255.0  # in grey levels, before the studio-range factors
    noise = rng.standard_normal(image.shape)
    n_y, n_cb, n_cr = noise[..., 0] * std / 219, noise[..., 1] * std / 224, noise[..., 2] * std / 224
    # YCbCr -> RGB (BT.601, as OpenCV's YCrCb conversion): R = Y + 1.403 Cr, G = Y - 0.344 Cb - 0.714 Cr,
    # B = Y + 1.773 Cb; the noise is linear in the components, so it is added to RGB directly.
    rgb_noise = np.stack([n_y + 1.403 * n_cr, n_y - 0.344 * n_cb - 0.714 * n_cr, n_y + 1.773 * n_cb], axis=-1)
    return _to_uint8(image.astype(np.float64) + rgb_noise)


def gaussian_blur(image: np.ndarray, kernel: float, rng: np.random.Generator) -> np.ndarray:
    """GB: a Gaussian blur of DeeperForensics' kernel size ``kernel`` (sigma = kernel / 6) at 256 px."""
    size = kernel * _scale(image)
    ksize = max(3, 2 * int(size / 2) + 1)
    return cv2.GaussianBlur(image, (ksize, ksize), size / 6.0)


def pixelate(image: np.ndarray, factor: float, rng: np.random.Generator) -> np.ndarray:
    """JPEG (DeeperForensics' sense): shrink by ``factor`` and enlarge back, bilinear."""
    h, w = image.shape[:2]
    small = cv2.resize(
        image, (max(1, w // int(factor)), max(1, h // int(factor))), interpolation=cv2.INTER_LINEAR
    )
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def compress_clip(frames: Sequence[ImageLike], crf: float) -> list[Image.Image]:
    """VC: ``frames`` (one video's crops, in order) encoded as one H.264 clip at ``crf`` and decoded back.

    libx264, preset medium, yuv420p, 25 fps, one thread (deterministic). Frames of several sizes are
    encoded as consecutive clips, one per run of equal sizes; odd sides are padded (edge pixels) for
    yuv420p and cut back after decoding.

    Raises:
        CrossfakeError: no frames, or the encoder or decoder failed.
    """
    arrays = [as_rgb_array(f) for f in frames]
    if not arrays:
        raise CrossfakeError("video compression needs at least one frame")
    out: list[Image.Image] = []
    start = 0
    while start < len(arrays):
        stop = start + 1
        while stop < len(arrays) and arrays[stop].shape == arrays[start].shape:
            stop += 1
        out += _compress_run(arrays[start:stop], int(crf))
        start = stop
    return out


def _compress_run(arrays: list[np.ndarray], crf: int) -> list[Image.Image]:
    h, w = arrays[0].shape[:2]
    ph, pw = h + h % 2, w + w % 2
    encoder = av.CodecContext.create("libx264", "w")
    encoder.width, encoder.height, encoder.pix_fmt = pw, ph, "yuv420p"
    encoder.time_base = Fraction(1, CLIP_FPS)
    encoder.framerate = Fraction(CLIP_FPS, 1)
    encoder.thread_count = 1
    encoder.options = {"crf": str(crf), "preset": X264_PRESET}
    decoder = av.CodecContext.create("h264", "r")
    decoder.thread_count = 1
    decoded: list[np.ndarray] = []
    try:
        packets = []
        for i, array in enumerate(arrays):
            if (ph, pw) != (h, w):
                array = np.pad(array, ((0, ph - h), (0, pw - w), (0, 0)), mode="edge")
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(array), format="rgb24")
            frame.pts = i
            packets += encoder.encode(frame.reformat(format="yuv420p"))
        packets += encoder.encode(None)
        for packet in packets:
            decoded += [f.to_ndarray(format="rgb24") for f in decoder.decode(packet)]
        decoded += [f.to_ndarray(format="rgb24") for f in decoder.decode(None)]
    except av.FFmpegError as e:
        raise CrossfakeError(f"H.264 round trip of a {w}x{h} clip at crf {crf} failed: {e}") from None
    if len(decoded) != len(arrays):
        raise CrossfakeError(f"H.264 round trip returned {len(decoded)} frames for {len(arrays)}")
    return [Image.fromarray(np.ascontiguousarray(d[:h, :w])) for d in decoded]


def _compress_one(image: np.ndarray, crf: float, rng: np.random.Generator) -> np.ndarray:
    return np.asarray(compress_clip([image], crf)[0])


#: code -> perturbation, in DeeperForensics' order.
PERTURBATIONS: dict[str, Perturbation] = {
    p.code: p
    for p in (
        Perturbation(
            "CS",
            "colour saturation change",
            (0.4, 0.3, 0.2, 0.1, 0.0),
            "factor on the chroma",
            False,
            color_saturation,
        ),
        Perturbation(
            "CC",
            "colour contrast change",
            (0.85, 0.725, 0.6, 0.475, 0.35),
            "factor on every pixel value",
            False,
            color_contrast,
        ),
        Perturbation(
            "BW",
            "local block-wise distortion",
            (16, 32, 48, 64, 80),
            "grey blocks of 8 px per 256 px of crop",
            False,
            block_wise,
        ),
        Perturbation(
            "GNC",
            "white Gaussian noise in colour components",
            (0.001, 0.002, 0.005, 0.01, 0.05),
            "noise variance in YCbCr ([0, 1] units)",
            False,
            gaussian_noise_color,
        ),
        Perturbation(
            "GB",
            "Gaussian blur",
            (7, 9, 13, 17, 21),
            "kernel size (px per 256 px), sigma = size / 6",
            False,
            gaussian_blur,
        ),
        Perturbation(
            "JPEG",
            "JPEG compression (DeeperForensics: down/up-sampling)",
            (2, 3, 4, 5, 6),
            "down-sampling factor",
            False,
            pixelate,
        ),
        Perturbation(
            "VC", "video compression (H.264)", (30, 32, 35, 38, 40), "x264 CRF", True, _compress_one
        ),
    )
}


def get_perturbation(code: str) -> Perturbation:
    """The perturbation of a code (case-insensitive), or a CrossfakeError listing the codes."""
    found = PERTURBATIONS.get(str(code).strip().upper())
    if found is None:
        known = ", ".join(f"{p.code} ({p.title})" for p in PERTURBATIONS.values())
        raise CrossfakeError(f"unknown perturbation {code!r}; the DeeperForensics perturbations are {known}")
    return found


def parse_perturbations(text: str | Sequence[str] | None) -> list[Perturbation]:
    """Perturbations from ``"CS,GB"`` or a list of codes (None or ``all``: every one), without repeats."""
    if text is None:
        return list(PERTURBATIONS.values())
    codes = [c.strip() for c in text.split(",")] if isinstance(text, str) else [str(c).strip() for c in text]
    codes = [c for c in codes if c]
    if not codes:
        raise CrossfakeError("no perturbation given; name one or more of " + ", ".join(PERTURBATIONS))
    if len(codes) == 1 and codes[0].lower() == "all":
        return list(PERTURBATIONS.values())
    return list({p.code: p for p in map(get_perturbation, codes)}.values())


def parse_levels(text: str | Sequence[int] | None) -> list[int]:
    """Levels from ``"1,3,5"``, ``"1-5"`` or a list (None: all five), sorted, without repeats."""
    if text is None:
        return list(LEVELS)
    if isinstance(text, str):
        values: list[object] = []
        for part in (p.strip() for p in text.split(",")):
            if not part:
                continue
            low, dash, high = part.partition("-")
            try:
                values += list(range(int(low), int(high) + 1)) if dash else [int(part)]
            except ValueError:
                raise CrossfakeError(
                    f"perturbation levels: {part!r} is not a level or a range like 1-5 (levels {LEVELS[0]}..{LEVELS[-1]})"
                ) from None
    else:
        values = list(text)
    if not values:
        raise CrossfakeError(f"no perturbation level given; levels are {LEVELS[0]}..{LEVELS[-1]}")
    return sorted({check_level(v) for v in values})  # type: ignore[arg-type]


def image_digest(image: Image.Image) -> int:
    """A 64-bit digest of an image's size and pixels (to seed its perturbation)."""
    array = as_rgb_array(image)
    h = hashlib.sha256(np.asarray(array.shape, dtype=np.int64).tobytes())
    h.update(np.ascontiguousarray(array).tobytes())
    return int.from_bytes(h.digest()[:8], "little")


class PerturbTransform:
    """An image -> image transform: one perturbation at one level, seeded per image.

    The generator of an image is ``default_rng([seed, perturbation index, level, image digest])``, so an
    image is perturbed identically wherever and whenever it is scored. Picklable (for loader processes).
    """

    def __init__(self, code: str, level: int, seed: int = 0) -> None:
        self.perturbation = get_perturbation(code)
        self.level = check_level(level)
        self.seed = int(seed)
        self._index = list(PERTURBATIONS).index(self.perturbation.code)

    def rng(self, image: Image.Image) -> np.random.Generator:
        return np.random.default_rng([self.seed, self._index, self.level, image_digest(image)])

    def __call__(self, image: Image.Image) -> Image.Image:
        return self.perturbation.apply(image, self.level, self.rng(image))

    def __repr__(self) -> str:
        return f"PerturbTransform({self.perturbation.code!r}, level={self.level}, seed={self.seed})"


__all__ = [
    "LEVELS",
    "PERTURBATIONS",
    "PerturbTransform",
    "Perturbation",
    "check_level",
    "compress_clip",
    "get_perturbation",
    "image_digest",
    "parse_levels",
    "parse_perturbations",
]
