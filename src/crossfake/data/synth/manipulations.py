"""The four FaceForensics++ manipulations, imitated on procedural faces.

Each manipulation takes the rendered *target* clip (whose footage the fake shows) and *source* clip (whose
face or expression it borrows) and returns the fake's frames. What matters for a detector is that
their artifacts differ the way the real manipulations' do:

========================  ======================================  =========================================
manipulation              what changes                            the trace it leaves
========================  ======================================  =========================================
``FaceSwap``              inner face replaced by the source's,    a soft (low-resolution) face texture
                          fitted to the target's landmarks,       without camera noise, colour mismatch,
                          rendered from a coarse face model       a sharp seam at the pasted region's edge
``Deepfakes``             whole face replaced by the source's,    blurry face (decoded from a low-res
                          decoded at low resolution               autoencoder), no sensor noise, soft blend,
                                                                  slight frame-to-frame colour flicker
``Face2Face``             target's expression driven by the       geometric warp of mouth and eyes, slightly
                          source (identity kept)                  re-rendered (smoothed) face
``NeuralTextures``        target's mouth re-rendered with the     over-smooth, slightly tinted mouth region,
                          source's mouth motion (identity kept)   nothing else
========================  ======================================  =========================================

All geometry is taken from the target (the fake follows the target's head), and every random choice
comes from the ``rng`` the caller seeds per fake, so a fake is reproducible on its own.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import cv2
import numpy as np

from crossfake.data.synth.faces import Clip, FaceRenderer

#: FF++'s manipulation folder names, in the official order.
MANIPULATIONS = ("Deepfakes", "Face2Face", "FaceSwap", "NeuralTextures")

Manipulation = Callable[[Clip, Clip, np.random.Generator], np.ndarray]


def manipulate(manipulation: str, target: Clip, source: Clip, rng: np.random.Generator) -> np.ndarray:
    """Frames of the fake ``<target>_<source>`` made by ``manipulation``: float32 RGB, shape (T, H, W, 3).

    Args:
        manipulation: one of :data:`MANIPULATIONS`.
        target: the clip whose footage (background, head pose, timing) the fake keeps.
        source: the clip that supplies the face (swaps) or the expression (reenactments).
        rng: randomness of this fake (tints, warp strengths, flicker).
    """
    return _MANIPULATIONS[manipulation](target, source, rng)


# -- regions --------------------------------------------------------------------------------------


def _region(
    name: str, target: FaceRenderer, source: FaceRenderer | None = None, feather: float = 0.0
) -> np.ndarray:
    """A canvas-shaped mask (0..1) of a face region of the target, edge blurred by ``feather`` face units.

    ``inner``: brows to below the mouth, cheek to cheek (what a hull of facial landmarks covers);
    ``face``: the whole face down to the chin; ``mouth``: the lips and the skin around them. The region is
    cut to the bare skin of the target (and of the source, whose face must be valid wherever it is
    pasted), so no hair or background is ever copied.
    """
    p = target.identity
    x, y = target.grid()
    top = p.eye_y - p.brow_gap - 0.1
    if name == "inner":
        bottom = p.mouth_y + 0.18
        cx, cy, ax, ay = 0.0, (top + bottom) / 2, p.face_width * 0.8, (bottom - top) / 2
    elif name == "face":
        cx, cy, ax, ay = 0.0, (top + 0.98) / 2, p.face_width * 0.92, (0.98 - top) / 2
    elif name == "mouth":
        cx, cy, ax, ay = 0.0, p.mouth_y + 0.02, p.mouth_width * 1.5, 0.2
    else:
        raise ValueError(f"unknown region {name!r}")
    mask = ((((x - cx) / ax) ** 2 + ((y - cy) / ay) ** 2) <= 1) * target.skin
    if source is not None:
        mask *= source.skin
    if feather > 0:
        mask = cv2.GaussianBlur(mask, (0, 0), feather * target.unit)
    return mask.astype(np.float32)


def _posed_face(source: FaceRenderer, target: Clip, t: int) -> np.ndarray:
    """The source's face with the target's expression at frame ``t``, in the canvas (premultiplied RGBA).

    Both renderers share the canvas geometry (it depends only on the frame size), so the target's pose
    matrix places this face exactly where the target's face is.
    """
    m = target.motion
    return source.canvas(m.blink[t], m.mouth[t], m.smile[t])


class _Patch:
    """A region of the canvas cropped to the box around its mask: a fake warps and blends only this.

    A fake changes only (part of) the face; working on its bounding box instead of the whole canvas and
    frame makes the manipulations several times faster.
    """

    def __init__(self, mask: np.ndarray) -> None:
        ys, xs = np.nonzero(mask > 1e-3)
        self.x0, self.y0, x1, y1 = int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1
        self.corners = np.array([[self.x0, self.y0], [x1, self.y0], [self.x0, y1], [x1, y1]], np.float64)
        self._slices = (slice(self.y0, y1), slice(self.x0, x1))
        self.mask = mask[self._slices]

    def crop(self, canvas: np.ndarray) -> np.ndarray:
        """The patch's part of a canvas-shaped mask or image (RGB of an RGBA canvas), as float32."""
        part = canvas[self._slices]
        return (part[..., :3] if part.ndim == 3 else part).astype(np.float32)


class _Window:
    """Where a patch lands in the frame at one pose: the frame slices and the patch-to-window matrix."""

    def __init__(self, renderer: FaceRenderer, patch: _Patch, matrix: np.ndarray) -> None:
        pts = patch.corners @ matrix[:, :2].T + matrix[:, 2]
        x0, y0 = np.maximum(np.floor(pts.min(axis=0)).astype(int) - 2, 0)
        x1, y1 = np.minimum(np.ceil(pts.max(axis=0)).astype(int) + 2, (renderer.width, renderer.height))
        self.slices = (slice(y0, y1), slice(x0, x1))
        self.origin = (int(x0), int(y0))
        self.size = (int(x1 - x0), int(y1 - y0))
        self.matrix = matrix.copy()
        self.matrix[:, 2] += matrix[:, :2] @ (patch.x0, patch.y0) - (x0, y0)
        self._renderer = renderer

    def warp(self, part: np.ndarray) -> np.ndarray:
        """Place a patch-sized image or mask into the window; float32 (h, w, channels)."""
        return self._renderer.warp(part, self.matrix, self.size)


#: The geometry of a face (what landmarks capture), as opposed to its appearance.
_LANDMARK_FIELDS = (
    "face_width",
    "jaw",
    "eye_y",
    "eye_spacing",
    "brow_gap",
    "nose_length",
    "mouth_y",
    "mouth_width",
)


# -- the manipulations ----------------------------------------------------------------------------


def face_swap(target: Clip, source: Clip, rng: np.random.Generator) -> np.ndarray:
    """Paste the source's inner face, fitted to the target's landmarks, with imperfect colour matching.

    FaceSwap fits a coarse face model to the target's landmarks and renders the source's texture onto it:
    the features sit where the target's are but look like the source's (skin, eyes, brows, lips), and the
    rendered face is visibly softer than the footage around it and carries little of its camera noise.
    Its colour correction is only partial and the hull of the landmarks leaves a visible seam.

    The softness is strong on purpose (a blur of about two pixels at the default size): the synthetic
    benchmark is meant to be learnable in CPU minutes by a small backbone (the demo's), and a detector
    that learns it should still fail where a manipulation leaves another trace (NeuralTextures' mouth).
    """
    tr = target.renderer
    landmarks = {name: getattr(tr.identity, name) for name in _LANDMARK_FIELDS}
    sr = FaceRenderer(dataclasses.replace(source.renderer.identity, **landmarks), tr.width, tr.height)
    # Correct only part of the skin-tone difference (plus a small random tint): the mismatch is the cue.
    gain = (np.array(tr.identity.skin) / np.array(sr.identity.skin)) ** rng.uniform(0.4, 0.6)
    gain = (gain * rng.uniform(0.96, 1.04, 3)).astype(np.float32)
    # The source's texture is rendered from a low-resolution face model: softer than the footage.
    sigma = rng.uniform(2.0, 2.6) * tr.unit / 40
    patch = _Patch(_region("inner", tr, sr, feather=0.015))  # a nearly hard edge: the seam
    out = target.clean + target.noise
    for t in range(target.motion.n_frames):
        win = _Window(tr, patch, tr.matrix(target.motion, t))
        face = win.warp(cv2.GaussianBlur(patch.crop(_posed_face(sr, target, t)), (0, 0), sigma) * gain)
        a = win.warp(patch.mask)
        clean, noise = target.clean[t][win.slices], target.noise[t][win.slices]
        out[t][win.slices] = clean * (1 - a) + face * a + noise * (1 - 0.8 * a)
    return out


def deepfakes(target: Clip, source: Clip, rng: np.random.Generator) -> np.ndarray:
    """Blend in the source's whole face as a low-resolution autoencoder would decode it.

    The original Deepfakes pipeline decodes a 64-128 px aligned face and upsamples it into the frame, so
    the face is blurrier than its surroundings and carries none of the camera's noise; its colour is
    matched well, but not identically in every frame.
    """
    tr, sr = target.renderer, source.renderer
    gain = (np.array(tr.identity.skin) / np.array(sr.identity.skin)) ** 0.9
    patch = _Patch(_region("face", tr, sr, feather=0.08))
    h, w = patch.mask.shape
    down = rng.uniform(0.4, 0.55)  # decoder resolution relative to the face's size in the frame
    small = (max(8, round(w * down)), max(8, round(h * down)))
    colour = (gain * (1 + rng.normal(0, 0.015, (target.motion.n_frames, 3)))).astype(np.float32)  # flicker
    out = target.clean + target.noise
    for t in range(target.motion.n_frames):
        win = _Window(tr, patch, tr.matrix(target.motion, t))
        face = cv2.resize(patch.crop(_posed_face(sr, target, t)), small, interpolation=cv2.INTER_AREA)
        face = cv2.resize(face, (w, h), interpolation=cv2.INTER_LINEAR) * colour[t]
        face, a = win.warp(face), win.warp(patch.mask)
        out[t][win.slices] = out[t][win.slices] * (1 - a) + face * a
    return out


def face2face(target: Clip, source: Clip, rng: np.random.Generator) -> np.ndarray:
    """Re-enact the target with the source's mouth, smile and blinks by warping the target's own face.

    Face2Face tracks both faces, transfers the expression and re-renders the target's face: identity and
    texture stay the target's, geometry around mouth and eyes moves, and the re-rendered face is a
    little smoother than the footage.
    """
    tr, m, sm = target.renderer, target.motion, source.motion
    p = tr.identity
    strength = rng.uniform(0.8, 1.2)
    patch = _Patch(_region("face", tr))
    smooth_mask = patch.crop(_region("inner", tr, feather=0.06))
    out = target.clean + target.noise
    for t in range(m.n_frames):
        matrix = tr.matrix(m, t)
        win = _Window(tr, patch, matrix)
        (x0, y0), (w, h) = win.origin, win.size
        ys, xs = np.mgrid[y0 : y0 + h, x0 : x0 + w].astype(np.float32)
        # Canonical coordinates (face units) of every window pixel, through the inverse pose.
        inv = cv2.invertAffineTransform(matrix)
        cx = (inv[0, 0] * xs + inv[0, 1] * ys + inv[0, 2] - tr.origin[0]) / tr.unit
        cy = (inv[1, 0] * xs + inv[1, 1] * ys + inv[1, 2] - tr.origin[1]) / tr.unit
        # Backward vertical displacement (where each output pixel samples the target), in face units:
        # the mouth opens or closes and its corners rise or fall by the expression difference. It fades
        # to nothing well inside the window, so the warped face joins the footage without a seam.
        mouth_w = _gauss(cx, cy, 0, p.mouth_y, p.mouth_width * 1.3, 0.16)
        opening = 0.5 * strength * (sm.mouth[t] - m.mouth[t])
        smile = 0.06 * strength * (sm.smile[t] - m.smile[t])
        corners = np.minimum((cx / p.mouth_width) ** 2, 1)
        dy = (smile * corners - opening * (cy - p.mouth_y)) * mouth_w
        for side in (-1, 1):  # the source's blinks squeeze the target's eyes
            eye_w = _gauss(cx, cy, side * p.eye_spacing, p.eye_y, p.eye_size * 1.3, 0.12)
            dy += 0.6 * (sm.blink[t] - m.blink[t]) * (cy - p.eye_y) * eye_w
        # Sampling canonical (cx, cy + dy) instead of (cx, cy) moves the frame sample point by the pose's
        # image of the vector (0, dy).
        shift = (dy * tr.unit).astype(np.float32)
        map_x = xs + np.float32(matrix[0, 1]) * shift
        map_y = ys + np.float32(matrix[1, 1]) * shift
        frame = target.clean[t] + target.noise[t]
        warped = cv2.remap(frame, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        a = win.warp(smooth_mask)
        out[t][win.slices] = warped * (1 - a) + cv2.GaussianBlur(warped, (0, 0), 0.7) * a
    return out


def neural_textures(target: Clip, source: Clip, rng: np.random.Generator) -> np.ndarray:
    """Re-render only the target's mouth, with the source's mouth motion and an over-smooth texture.

    NeuralTextures learns a texture of the target and re-renders the mouth region driven by the source's
    expression; its output is slightly blurry and tinted there and untouched elsewhere.
    """
    tr, m, sm = target.renderer, target.motion, source.motion
    tint = (1 + rng.normal(0, 0.02, 3)).astype(np.float32)
    sigma = rng.uniform(0.9, 1.3) * tr.unit / 40  # about one pixel at the default size
    patch = _Patch(_region("mouth", tr, feather=0.05))
    out = target.clean + target.noise
    for t in range(m.n_frames):
        win = _Window(tr, patch, tr.matrix(m, t))
        mouth = patch.crop(tr.canvas(m.blink[t], sm.mouth[t], sm.smile[t]))
        mouth, a = win.warp(cv2.GaussianBlur(mouth, (0, 0), sigma) * tint), win.warp(patch.mask)
        clean, noise = target.clean[t][win.slices], target.noise[t][win.slices]
        # The re-rendered mouth keeps only a trace of the camera noise: smoother than the skin around it.
        out[t][win.slices] = clean * (1 - a) + mouth * a + noise * (1 - 0.8 * a)
    return out


def _gauss(x: np.ndarray, y: np.ndarray, cx: float, cy: float, sx: float, sy: float) -> np.ndarray:
    return np.exp(-0.5 * (((x - cx) / sx) ** 2 + ((y - cy) / sy) ** 2))


_MANIPULATIONS: dict[str, Manipulation] = {
    "Deepfakes": deepfakes,
    "Face2Face": face2face,
    "FaceSwap": face_swap,
    "NeuralTextures": neural_textures,
}
