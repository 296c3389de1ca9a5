"""Procedural faces: an identity, a clip's head motion, and a renderer that draws both into frames.

A face is drawn once per frame in a *canonical canvas* (face upright, centred, one "face unit" = half
the head height) and then placed in the frame by a 2x3 affine matrix (translation, scale, in-plane
rotation). Keeping the geometry canonical is what makes the manipulations simple and honest: a
FaceSwap renders the *source* identity in the canvas and places it with the *target's* matrix, so the
pasted face follows the target's head exactly as a landmark-driven swap would.

The static parts of a face (head, hair, ears, neck, clothes, nose, brows, shading, skin texture) are
rendered once per identity; only the eyes (blink) and the mouth (open, smile) are redrawn per frame.
Everything is numpy + OpenCV and deterministic for given parameters.

Coordinates: canonical units have x to the right and y down, origin at the face centre; the head spans
y in [-1, 1] (skull top to chin). Colours are RGB.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import cv2
import numpy as np

#: Face height (skull top to chin, two units) as a fraction of frame height, before per-clip scaling.
#: With the clip's framing (x0.9-1.1) and motion (x0.94-1.06) the head fills ~35-48% of the height.
FACE_HEIGHT_FRACTION = 0.41

# Canonical canvas extent in face units around the face centre: wide enough for long hair and
# shoulders, tall enough that the shoulders leave the frame at the bottom (no visible canvas edge).
_CANVAS_LEFT, _CANVAS_RIGHT = -2.4, 2.4
_CANVAS_TOP, _CANVAS_BOTTOM = -1.7, 3.2

_SHIFT = 4  # fixed-point bits for cv2 drawing, so features sit at sub-pixel positions
_ONE = 1 << _SHIFT

# Fixed feature colours (RGBA for drawing on the canvas; the face is opaque).
_SCLERA = (238, 236, 232, 255)
_LASH = (30, 24, 22, 255)
_PUPIL = (12, 10, 10, 255)
_MOUTH_INSIDE = (60, 22, 26, 255)
_TEETH = (170, 165, 155, 255)
# Every style shows hair behind the upper head: besides looking right, that silhouette is what makes the
# Haar cascade reliable (measured at 192x144: 95% of frames detected without it, 99.7% with it).
# style -> (how far the hair reaches beyond the head's side, how low it falls, forehead hairline)
_HAIR_SHAPES = {
    "buzz": (0.05, 0.0, -0.7),
    "short": (0.1, 0.15, -0.62),
    "curly": (0.2, 0.4, -0.6),
    "bob": (0.16, 0.8, -0.6),
    "bangs": (0.16, 0.8, -0.38),
    "long": (0.22, 1.45, -0.58),
}
HAIR_STYLES = tuple(_HAIR_SHAPES)
BACKGROUNDS = ("gradient", "stripes", "blobs", "tiles")
# (light, dark) endpoints of the skin-tone line; an identity sits somewhere between them.
_SKIN_LIGHT = np.array([236.0, 200.0, 176.0])
_SKIN_DARK = np.array([110.0, 72.0, 52.0])
_HAIR_COLOURS = {
    "black": (28, 22, 20),
    "brown": (92, 60, 36),
    "blonde": (196, 162, 104),
    "auburn": (140, 62, 34),
    "grey": (150, 148, 146),
}
_IRIS_COLOURS = {
    "brown": (92, 56, 30),
    "blue": (70, 110, 170),
    "green": (70, 120, 70),
    "hazel": (130, 100, 50),
    "grey": (110, 120, 128),
}


@dataclass(frozen=True)
class Identity:
    """The appearance of one person (and the scene they were filmed in).

    All lengths are in face units (half the head height). Sampled by :meth:`sample`; two originals cut
    from one YouTube video share an ``Identity``.
    """

    index: int
    face_width: float  # head half-width
    jaw: float  # how much the head narrows towards the chin (0: ellipse)
    skin: tuple[float, float, float]
    eye_y: float
    eye_spacing: float  # half the distance between eye centres
    eye_size: float  # half-width of an eye
    iris: str
    brow_thickness: float
    brow_gap: float  # height of the brows above the eyes
    brow_tilt: float
    nose_length: float
    nose_width: float
    mouth_y: float
    mouth_width: float  # half-width
    lip_thickness: float
    lips: tuple[float, float, float]
    hair_style: str
    hair: str
    clothes: tuple[float, float, float]
    background: str
    background_colours: tuple[tuple[float, float, float], tuple[float, float, float]]
    light: float  # horizontal light direction, -1 (from the left) .. 1
    texture_seed: int

    @classmethod
    def sample(cls, rng: np.random.Generator, index: int) -> Identity:
        """Draw a random identity; ``index`` is only recorded (the caller seeds ``rng`` per identity)."""

        def u(lo: float, hi: float) -> float:
            return float(rng.uniform(lo, hi))

        tone = u(0.0, 1.0)
        skin = _SKIN_LIGHT + tone * (_SKIN_DARK - _SKIN_LIGHT) + rng.normal(0, 6, 3)
        lips = skin * np.array([0.72, 0.48, 0.5]) + np.array([20.0, 0.0, 0.0])
        bg_hue = rng.uniform(0, 180, 2)
        bg = [_hsv_to_rgb(h, u(0.15, 0.5), u(0.35, 0.85)) for h in bg_hue]
        return cls(
            index=index,
            face_width=u(0.66, 0.82),
            jaw=u(0.0, 0.3),
            skin=_rgb(skin),
            eye_y=u(-0.12, -0.02),
            eye_spacing=u(0.25, 0.33),
            eye_size=u(0.11, 0.145),
            iris=str(rng.choice(list(_IRIS_COLOURS))),
            brow_thickness=u(0.05, 0.08),
            brow_gap=u(0.14, 0.2),
            brow_tilt=u(-0.04, 0.04),
            nose_length=u(0.26, 0.38),
            nose_width=u(0.09, 0.14),
            mouth_y=u(0.5, 0.6),
            mouth_width=u(0.21, 0.29),
            lip_thickness=u(0.035, 0.07),
            lips=_rgb(lips),
            hair_style=str(rng.choice(HAIR_STYLES)),
            hair=str(rng.choice(list(_HAIR_COLOURS))),
            clothes=_hsv_to_rgb(u(0, 180), u(0.2, 0.8), u(0.2, 0.8)),
            background=str(rng.choice(BACKGROUNDS)),
            background_colours=(bg[0], bg[1]),
            light=u(-1.0, 1.0),
            texture_seed=int(rng.integers(2**31)),
        )

    def summary(self) -> dict[str, object]:
        """JSON-friendly parameters (rounded) for ``synth.json``."""
        out: dict[str, object] = {}
        for name, value in self.__dict__.items():
            if isinstance(value, float):
                value = round(value, 4)
            elif isinstance(value, tuple):
                value = np.round(np.asarray(value, dtype=float), 1).tolist()
            out[name] = value
        return out


@dataclass(frozen=True)
class Motion:
    """Per-frame head pose and expression of one clip (arrays of length ``n_frames``).

    ``dx``/``dy`` are offsets of the face centre in fractions of frame width/height, ``scale`` multiplies
    the face size, ``angle`` is the in-plane rotation in degrees; ``blink`` (1 = closed), ``mouth``
    (1 = wide open) and ``smile`` (-1 .. 1) drive the expression.
    """

    dx: np.ndarray
    dy: np.ndarray
    scale: np.ndarray
    angle: np.ndarray
    blink: np.ndarray
    mouth: np.ndarray
    smile: np.ndarray

    @property
    def n_frames(self) -> int:
        return len(self.dx)

    @classmethod
    def sample(cls, rng: np.random.Generator, n_frames: int, fps: float) -> Motion:
        """Smooth random motion: a fixed framing plus slow sinusoids, talking and occasional blinks."""
        t = np.arange(n_frames) / fps

        def wave(amplitude: float, lo_hz: float, hi_hz: float) -> np.ndarray:
            # Two sinusoids with random frequency and phase: smooth, never periodic-looking.
            out = np.zeros(n_frames)
            for _ in range(2):
                f, phase = rng.uniform(lo_hz, hi_hz), rng.uniform(0, 2 * np.pi)
                out += 0.5 * amplitude * np.sin(2 * np.pi * f * t + phase)
            return out

        # The clip's framing (camera placement) stays fixed; the head moves around it.
        dx = rng.uniform(-0.06, 0.06) + wave(0.05, 0.2, 0.9)
        dy = rng.uniform(-0.04, 0.04) + wave(0.03, 0.2, 0.9)
        scale = rng.uniform(0.9, 1.1) * (1 + wave(0.06, 0.1, 0.6))
        angle = rng.uniform(-3, 3) + wave(7.0, 0.2, 0.8)
        talk = rng.uniform(0.3, 1.0)
        mouth = np.clip(talk * (0.45 + wave(1.1, 2.0, 4.5)), 0, 1)
        smile = np.clip(rng.uniform(-0.3, 0.6) + wave(0.4, 0.1, 0.5), -1, 1)
        blink = np.zeros(n_frames)
        # A blink is a ~160 ms closing and opening, every 2-5 s.
        start = rng.uniform(-1.0, 3.0)
        while start < t[-1] + 1:
            blink = np.maximum(blink, np.clip(1 - np.abs(t - start) / 0.08, 0, 1))
            start += rng.uniform(2.0, 5.0)
        return cls(dx=dx, dy=dy, scale=scale, angle=angle, blink=blink, mouth=mouth, smile=smile)


class FrameGeometry:
    """Where the canonical canvas sits in a frame of a given size; no drawing.

    Args:
        width: frame width in pixels.
        height: frame height in pixels.

    Attributes:
        unit: canvas pixels per face unit. The canvas is drawn at the face's nominal size in the frame,
            so placing it neither blurs nor aliases much.
        origin: canvas pixel position of the face centre.
        canvas_w, canvas_h: canvas size in pixels.
    """

    def __init__(self, width: int, height: int) -> None:
        self.width, self.height = width, height
        self.unit = FACE_HEIGHT_FRACTION * height / 2
        self.canvas_w = int(np.ceil((_CANVAS_RIGHT - _CANVAS_LEFT) * self.unit))
        self.canvas_h = int(np.ceil((_CANVAS_BOTTOM - _CANVAS_TOP) * self.unit))
        self.origin = (-_CANVAS_LEFT * self.unit, -_CANVAS_TOP * self.unit)

    def grid(self) -> tuple[np.ndarray, np.ndarray]:
        """Canonical (x, y) in face units of every canvas pixel centre."""
        xs = (np.arange(self.canvas_w, dtype=np.float32) + 0.5 - self.origin[0]) / self.unit
        ys = (np.arange(self.canvas_h, dtype=np.float32) + 0.5 - self.origin[1]) / self.unit
        return np.meshgrid(xs, ys)

    def matrix(self, motion: Motion, t: int) -> np.ndarray:
        """The 2x3 affine matrix that maps canvas pixels to frame pixels at frame ``t``."""
        centre = (self.width * (0.5 + motion.dx[t]), self.height * (0.5 + motion.dy[t]))
        m = cv2.getRotationMatrix2D(self.origin, float(motion.angle[t]), float(motion.scale[t]))
        m[:, 2] += np.array(centre) - np.array(self.origin)
        return m

    def face_box(self, identity: Identity, motion: Motion, t: int) -> list[int]:
        """Ground-truth face box ``[x, y, w, h]`` in frame pixels at frame ``t``.

        It spans forehead to chin and ear to ear, about the box OpenCV's Haar cascade draws.
        """
        half_w = identity.face_width + 0.1
        corners = np.array([(sx * half_w, sy) for sx in (-1, 1) for sy in (-0.8, 1.0)]) * self.unit
        m = self.matrix(motion, t)
        mapped = (corners + self.origin) @ m[:, :2].T + m[:, 2]
        x0, y0 = mapped.min(axis=0)
        x1, y1 = mapped.max(axis=0)
        return [round(x0), round(y0), round(x1 - x0), round(y1 - y0)]


class FaceRenderer(FrameGeometry):
    """Draws one identity into frames of a fixed size.

    Args:
        identity: who to draw.
        width: frame width in pixels.
        height: frame height in pixels.

    Attributes:
        skin: canvas-shaped coverage (0..1) of the bare face skin (the head without the hair over it);
            the manipulations confine their edits to it.
        background: the static backdrop, float32 RGB of frame size.
    """

    def __init__(self, identity: Identity, width: int, height: int) -> None:
        super().__init__(width, height)
        self.identity = identity
        self._base, self.skin = self._render_static()
        self.background = render_background(identity, width, height)

    def _pt(self, x: float, y: float) -> tuple[int, int]:
        """Canonical point -> fixed-point canvas pixel for cv2 drawing."""
        return (
            round((self.origin[0] + x * self.unit) * _ONE),
            round((self.origin[1] + y * self.unit) * _ONE),
        )

    def _len(self, v: float) -> int:
        """Canonical length -> fixed-point canvas pixels for cv2 drawing."""
        return max(1, round(v * self.unit * _ONE))

    def _ellipse(
        self,
        img: np.ndarray,
        centre: tuple[float, float],
        axes: tuple[float, float],
        colour: tuple[float, ...],
        arc: tuple[int, int] = (0, 360),
        thickness: int = -1,
    ) -> None:
        """Draw an anti-aliased ellipse (or an arc of it) given in canonical units; filled by default."""
        axes_px = (self._len(axes[0]), self._len(axes[1]))
        cv2.ellipse(img, self._pt(*centre), axes_px, 0, *arc, colour, thickness, cv2.LINE_AA, _SHIFT)

    # -- drawing ----------------------------------------------------------------------------------

    def _render_static(self) -> tuple[np.ndarray, np.ndarray]:
        """Clothes, neck, hair, ears, head, nose and brows with shading and skin texture.

        Returns the premultiplied RGBA canvas (uint8) and the bare-skin coverage of the face.
        """
        p = self.identity
        x, y = self.grid()
        skin = np.array(p.skin, dtype=np.float32)
        hair = np.array(_HAIR_COLOURS[p.hair], dtype=np.float32)
        rgb = np.zeros((self.canvas_h, self.canvas_w, 3), np.float32)
        alpha = np.zeros((self.canvas_h, self.canvas_w), np.float32)
        px = 1.0 / self.unit  # one pixel in face units: the width of an anti-aliased edge

        def paint(mask: np.ndarray, colour: np.ndarray) -> None:
            nonlocal rgb, alpha
            m = mask[..., None]
            rgb = rgb * (1 - m) + colour * m
            alpha = np.maximum(alpha, mask)

        def inside(d: np.ndarray) -> np.ndarray:  # signed distance (units, <0 inside) -> coverage
            return np.clip(0.5 - d / px, 0, 1).astype(np.float32)

        head_w = p.face_width * (1 - p.jaw * np.clip(y, 0, 1) ** 2)  # narrower towards the chin
        # Back to front: shoulders, neck, hair behind the head, ears, head.
        paint(inside(_ellipse_d(x, y, 0, 2.3, 1.9, 0.85)), np.array(p.clothes, np.float32))
        neck = inside(np.maximum(np.abs(x) - 0.42, np.maximum(0.6 - y, y - 1.8)))
        # The chin casts a shadow on the neck that fades downwards.
        paint(neck, skin * (0.9 - 0.25 * np.exp(-np.clip(y - 0.8, 0, None) / 0.2))[..., None])
        paint(inside(_hair_back(p, x, y)), hair * 0.35)  # in the head's shadow: a dark frame
        for side in (-1, 1):
            paint(inside(_ellipse_d(x, y, side * p.face_width * 0.97, 0.05, 0.12, 0.22)), skin * 0.88)
        head = inside((np.sqrt((x / head_w) ** 2 + y**2) - 1) * head_w)
        paint(head, skin)

        # Shading: a lit sphere (darker at the rim and on the side away from the light), darker eye
        # sockets and nose sides, lighter cheeks and nose ridge. Haar features are brightness differences
        # between exactly these regions, and shading makes smoothing and warping artifacts visible.
        r2 = np.clip((x / head_w) ** 2 + y**2, 0, 1)
        shade = 0.6 + 0.4 * np.sqrt(1 - r2) + 0.1 * p.light * x / p.face_width
        nose_mid = p.eye_y + p.nose_length * 0.5
        for side in (-1, 1):
            shade -= 0.2 * _gauss(x, y, side * p.eye_spacing, p.eye_y - 0.05, 0.2, 0.12)
            shade += 0.07 * _gauss(x, y, side * (p.eye_spacing + 0.05), p.eye_y + 0.3, 0.15, 0.1)
            shade -= 0.1 * _gauss(x, y, side * 0.12, nose_mid, 0.04, p.nose_length * 0.5)
        shade += 0.07 * _gauss(x, y, 0, nose_mid, 0.05, p.nose_length * 0.6)
        shade -= 0.12 * _gauss(x, y, 0, p.eye_y + p.nose_length + 0.06, p.nose_width * 1.4, 0.04)
        shade -= 0.08 * _gauss(x, y, p.light * -0.06, p.eye_y + p.nose_length * 0.6, 0.04, 0.15)
        # Skin texture: fine pores plus low-frequency blotches, fixed to the face (it moves with it), so
        # that a manipulation which smooths or re-renders the skin leaves a measurable trace.
        tex_rng = np.random.default_rng(p.texture_seed)
        texture = (
            1
            + 0.04 * _smooth_noise(tex_rng, x.shape, 0.6)
            + 0.02 * _smooth_noise(tex_rng, x.shape, 0.12 / px)
        )
        rgb *= (1 + head * (shade * texture - 1))[..., None]
        rgb *= (1 + neck * (1 - head) * (texture - 1))[..., None]

        hair_front = _hair_front(p, x, y, head_w, inside)
        paint(hair_front, hair)
        strands = _smooth_noise(tex_rng, x.shape, 0.3, 3.0)  # vertical streaks, not a flat blob
        rgb *= (1 + 0.12 * strands * hair_front)[..., None]

        rgba = np.dstack([np.clip(rgb, 0, 255) * alpha[..., None], alpha * 255])
        base = np.rint(rgba).astype(np.uint8)
        self._draw_nose_and_brows(base)
        return base, head * (1 - hair_front)

    def _draw_nose_and_brows(self, img: np.ndarray) -> None:
        p = self.identity
        nostril = _opaque(np.array(p.skin) * 0.55)
        nose_y = p.eye_y + p.nose_length
        for side in (-1, 1):
            self._ellipse(img, (side * p.nose_width * 0.55, nose_y), (0.035, 0.022), nostril)
        # Brows are darker than the hair (even blonde brows read dark against skin).
        brow = _opaque(np.minimum(np.array(_HAIR_COLOURS[p.hair]) * 0.7, np.array(p.skin) * 0.4))
        thickness = max(1, round(p.brow_thickness * self.unit))
        for side in (-1, 1):
            cx, cy = side * p.eye_spacing, p.eye_y - p.brow_gap
            pts = [
                self._pt(cx + side * d * p.eye_size * 1.25, cy - 0.05 * (1 - d * d) + side * d * p.brow_tilt)
                for d in np.linspace(-1, 1, 9)
            ]
            cv2.polylines(img, [np.array(pts, np.int32)], False, brow, thickness, cv2.LINE_AA, _SHIFT)

    def _draw_eyes(self, img: np.ndarray, blink: float) -> None:
        p = self.identity
        iris, lid = _opaque(_IRIS_COLOURS[p.iris]), _opaque(np.array(p.skin) * 0.7)
        open_h = p.eye_size * 0.5 * (1 - blink)
        r = p.eye_size * 0.55  # iris radius
        for side in (-1, 1):
            c = (side * p.eye_spacing, p.eye_y)
            if open_h < 0.02:  # closed: just the lid line
                self._ellipse(img, c, (p.eye_size, 0.02), _LASH, arc=(0, 180), thickness=1)
                continue
            self._ellipse(img, c, (p.eye_size, open_h), _SCLERA)
            # Iris and pupil, flattened where the lids cover them.
            self._ellipse(img, c, (r, min(r, open_h)), iris)
            self._ellipse(img, c, (r * 0.45, min(r * 0.45, open_h)), _PUPIL)
            # Upper lid with lashes: the darkest line of the face, a strong Haar cue.
            self._ellipse(img, c, (p.eye_size, open_h), _LASH, arc=(180, 360), thickness=2)
            self._ellipse(img, c, (p.eye_size, open_h), lid, arc=(20, 160), thickness=1)

    def _draw_mouth(self, img: np.ndarray, mouth: float, smile: float) -> None:
        p = self.identity
        xs = np.linspace(-1, 1, 17)
        curve = p.mouth_y - 0.06 * smile * xs**2  # corners rise with a smile
        gap = 0.08 * mouth * np.sqrt(1 - xs**2)
        bulge = np.sqrt(1 - xs**2) ** 0.7
        upper_top = curve - gap / 2 - p.lip_thickness * bulge * (1 - 0.25 * np.exp(-((xs / 0.15) ** 2)))
        lower_bottom = curve + gap / 2 + 1.25 * p.lip_thickness * bulge
        x = xs * p.mouth_width

        def poly(top: np.ndarray, bottom: np.ndarray) -> np.ndarray:
            pts = [self._pt(a, b) for a, b in zip(x, top, strict=True)]
            pts += [self._pt(a, b) for a, b in zip(x[::-1], bottom[::-1], strict=True)]
            return np.array(pts, np.int32)

        cv2.fillPoly(img, [poly(upper_top, lower_bottom)], _opaque(p.lips), cv2.LINE_AA, _SHIFT)
        if mouth > 0.15:
            cv2.fillPoly(img, [poly(curve - gap / 2, curve + gap / 2)], _MOUTH_INSIDE, cv2.LINE_AA, _SHIFT)
            if mouth > 0.5:  # upper teeth, in the mouth's shadow: a bright bar would not read as a mouth
                teeth = curve - gap / 2 + 0.2 * gap
                cv2.fillPoly(img, [poly(curve - gap / 2, teeth)], _TEETH, cv2.LINE_AA, _SHIFT)
        else:
            line = [self._pt(a, b) for a, b in zip(x, curve, strict=True)]
            cv2.polylines(img, [np.array(line, np.int32)], False, _MOUTH_INSIDE, 1, cv2.LINE_AA, _SHIFT)

    # -- output -----------------------------------------------------------------------------------

    def canvas(self, blink: float, mouth: float, smile: float) -> np.ndarray:
        """The face with this expression in the canonical canvas: premultiplied RGBA, uint8.

        Inside the face alpha is 255, so there the first three channels are plain RGB.
        """
        img = self._base.copy()
        self._draw_eyes(img, blink)
        self._draw_mouth(img, mouth, smile)
        return img

    def warp(self, image: np.ndarray, matrix: np.ndarray, size: tuple[int, int] | None = None) -> np.ndarray:
        """Place a canvas-shaped image or mask in the frame; float32 (H, W, channels).

        ``size`` (width, height) renders only a window of the frame, for a ``matrix`` re-based on it.
        """
        size = size or (self.width, self.height)
        out = cv2.warpAffine(
            image, matrix, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0
        ).astype(np.float32)
        return out if out.ndim == 3 else out[..., None]

    def frame(self, motion: Motion, t: int) -> np.ndarray:
        """Frame ``t`` of a clip without sensor noise, float32 RGB (0..255)."""
        rgba = self.warp(
            self.canvas(motion.blink[t], motion.mouth[t], motion.smile[t]), self.matrix(motion, t)
        )
        return self.background * (1 - rgba[..., 3:] / 255) + rgba[..., :3]


@dataclass(frozen=True)
class Clip:
    """A rendered original video: who, how they move, and its frames before and after sensor noise.

    The manipulations start from ``clean`` (so a pasted face can carry more or less noise than the
    footage around it, as real fakes do) and add ``noise`` back.

    Attributes:
        renderer: the identity's renderer.
        motion: the clip's pose and expression per frame.
        clean: float32 frames without noise, shape (T, H, W, 3).
        noise: float32 sensor noise per frame, same shape.
    """

    renderer: FaceRenderer
    motion: Motion
    clean: np.ndarray
    noise: np.ndarray

    @property
    def frames(self) -> np.ndarray:
        """The original video: uint8 RGB frames (T, H, W, 3)."""
        return to_uint8(self.clean + self.noise)


def render_clip(
    renderer: FaceRenderer, motion: Motion, rng: np.random.Generator, noise_sigma: float = 2.0
) -> Clip:
    """Render every frame of a clip; ``rng`` draws the sensor noise."""
    clean = np.stack([renderer.frame(motion, t) for t in range(motion.n_frames)])
    noise = rng.standard_normal(clean.shape, dtype=np.float32) * np.float32(noise_sigma)
    return Clip(renderer=renderer, motion=motion, clean=clean, noise=noise)


def to_uint8(frames: np.ndarray) -> np.ndarray:
    """Round and clip float frames to uint8."""
    return np.clip(frames + 0.5, 0, 255).astype(np.uint8)  # +0.5 then truncation: rounding, in one pass


# (dx, dy, scale, angle, blink, mouth, smile) of the probe poses of sample_identity: the extremes of
# Motion.sample's range.
_PROBE_POSES = [
    (0.0, 0.0, 1.0, 0.0, 0.0, 0.3, 0.0),
    (-0.06, 0.03, 0.88, -9.0, 0.0, 1.0, 0.5),
    (0.06, -0.03, 1.15, 9.0, 0.0, 0.0, -0.3),
]
#: Raw Haar windows (before grouping) an identity must collect in every probe, at a frame width of 256
#: (scaled with the width: smaller frames offer fewer windows). The face detector needs 6 (minNeighbors=5);
#: asking for a margin keeps faces detectable after a manipulation has blurred, warped or recoloured them.
MIN_HAAR_VOTES = 12


def sample_identity(seed: int, index: int, width: int, height: int, max_tries: int = 40) -> Identity:
    """Draw identity ``index`` of a corpus, redrawing it until OpenCV's Haar cascade finds it easily.

    FF++ kept only videos in which a face tracker found a frontal face; this is the synthetic
    counterpart. Each face is probed in three poses spanning the motion range (tilted, scaled, mouth
    open), sharp and slightly blurred, and must win :data:`MIN_HAAR_VOTES` raw detections in each, so
    that the default face detector of ``prepare`` finds it in nearly every frame of the original and
    of its fakes. Deterministic: attempt ``k`` of identity ``index`` always draws from the same seed.
    """
    probes = [Motion(*(np.array([v], dtype=float) for v in pose)) for pose in _PROBE_POSES]
    min_votes = max(6, round(MIN_HAAR_VOTES * width / 256))
    best: tuple[int, Identity] | None = None
    for attempt in range(max_tries):
        identity = Identity.sample(np.random.default_rng([seed, 1, index, attempt]), index)
        renderer = FaceRenderer(identity, width, height)
        votes = min(
            haar_votes(to_uint8(image), renderer.face_box(identity, m, 0))
            for m in probes
            for frame in [renderer.frame(m, 0)]
            for image in (frame, cv2.GaussianBlur(frame, (0, 0), 1.0))
        )
        if votes >= min_votes:
            return identity
        if best is None or votes > best[0]:
            best = (votes, identity)
    assert best is not None
    return best[1]  # practically unreachable (most draws pass): the most detectable draw


def haar_cascade() -> cv2.CascadeClassifier:
    """OpenCV's frontal-face Haar cascade (the default face detector of the preprocessing stage).

    One per thread: a ``CascadeClassifier`` keeps scratch state and gives wrong answers when two
    threads run it at once.
    """
    cascade = getattr(_per_thread, "cascade", None)
    if cascade is None:
        cascade = _per_thread.cascade = cv2.CascadeClassifier(
            cv2.data.haarcascades + "haarcascade_frontalface_default.xml"
        )
    return cascade


_per_thread = threading.local()


def _haar(frame: np.ndarray, min_neighbors: int) -> np.ndarray:
    # The settings of the preprocessing stage: scaleFactor 1.1 and a minimum face of 1/8 frame width.
    gray = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
    size = frame.shape[1] // 8
    return haar_cascade().detectMultiScale(
        gray, scaleFactor=1.1, minNeighbors=min_neighbors, minSize=(size, size)
    )


def _centred_in(found: np.ndarray, box: list[int]) -> int:
    bx, by, bw, bh = box
    return sum(bx <= x + w / 2 <= bx + bw and by <= y + h / 2 <= by + bh for x, y, w, h in found)


def face_detected(frame: np.ndarray, box: list[int]) -> bool:
    """Whether the Haar cascade finds a face whose centre lies inside ground-truth ``box`` ([x, y, w, h]).

    Uses the settings of the preprocessing stage: ``scaleFactor=1.1, minNeighbors=5`` and a minimum
    face size of 1/8 of the frame width. ``frame`` is RGB uint8.
    """
    return _centred_in(_haar(frame, min_neighbors=5), box) > 0


def haar_votes(frame: np.ndarray, box: list[int]) -> int:
    """How many raw Haar windows (before ``minNeighbors`` grouping) are centred inside ``box``."""
    return _centred_in(_haar(frame, min_neighbors=0), box)


def render_background(identity: Identity, width: int, height: int) -> np.ndarray:
    """A static, textured backdrop for the identity's scene (float32 RGB)."""
    rng = np.random.default_rng(identity.texture_seed + 1)
    c0, c1 = (np.array(c, np.float32) for c in identity.background_colours)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    kind = identity.background
    if kind == "gradient":
        angle = rng.uniform(0, np.pi)
        s = (xx * np.cos(angle) + yy * np.sin(angle)) / np.hypot(width, height) + 0.5
    elif kind == "stripes":
        period, angle = rng.uniform(0.08, 0.2) * width, rng.uniform(0, np.pi)
        s = 0.5 + 0.5 * np.sin(2 * np.pi * (xx * np.cos(angle) + yy * np.sin(angle)) / period)
    elif kind == "blobs":
        noise = rng.normal(0, 1, (height, width)).astype(np.float32)
        s = cv2.GaussianBlur(noise, (0, 0), 0.08 * width)
        s = (s - s.min()) / (np.ptp(s) + 1e-6)
    else:  # tiles: a wall of panels
        cell = rng.uniform(0.15, 0.3) * width
        s = ((xx // cell + yy // cell) % 2) * 0.7 + 0.15
    s = np.clip(s, 0, 1)[..., None]
    grain = rng.normal(0, 3, (height, width, 1)).astype(np.float32)
    return c0 * (1 - s) + c1 * s + grain


def _hair_back(p: Identity, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Signed distance to the hair behind the head: a rounded top over straight sides down to its length."""
    reach, length, _ = _HAIR_SHAPES[p.hair_style]
    half_w = p.face_width + reach
    top = _ellipse_d(x, y, 0, -0.1, half_w, 1.0 + reach)
    if p.hair_style == "curly":
        top -= 0.05 * np.sin(14 * np.arctan2(y + 0.1, x))  # a ring of curls makes the outline bumpy
    sides = np.maximum(np.abs(x) - half_w, np.maximum(y - length, -0.1 - y))
    return np.minimum(top, sides)


def _hair_front(
    p: Identity,
    x: np.ndarray,
    y: np.ndarray,
    head_w: np.ndarray,
    inside: Callable[[np.ndarray], np.ndarray],
) -> np.ndarray:
    """Coverage of the hair drawn over the head: a cap down to the hairline (and side locks if long)."""
    reach, length, hairline = _HAIR_SHAPES[p.hair_style]
    cap = np.maximum(_ellipse_d(x, y, 0, -0.1, p.face_width * 1.05, 1.02), y - hairline - 0.08 * x**2)
    if length > 0.5:
        # Locks framing the face down to the jaw, leaving the cheeks free.
        side = np.maximum(np.abs(x) - head_w - reach, np.maximum(p.face_width * 0.86 - np.abs(x), y - 0.55))
        cap = np.minimum(cap, np.maximum(side, -0.8 - y))
    return inside(cap)


def _smooth_noise(
    rng: np.random.Generator, shape: tuple[int, ...], sx: float, sy: float | None = None
) -> np.ndarray:
    """Gaussian-blurred white noise rescaled to unit standard deviation."""
    noise = cv2.GaussianBlur(rng.normal(0, 1, shape).astype(np.float32), (0, 0), sx, sigmaY=sy or sx)
    return noise / (noise.std() + 1e-6)


def _ellipse_d(x: np.ndarray, y: np.ndarray, cx: float, cy: float, ax: float, ay: float) -> np.ndarray:
    """Approximate signed distance (units, negative inside) to an axis-aligned ellipse."""
    return (np.sqrt(((x - cx) / ax) ** 2 + ((y - cy) / ay) ** 2) - 1) * min(ax, ay)


def _gauss(x: np.ndarray, y: np.ndarray, cx: float, cy: float, sx: float, sy: float) -> np.ndarray:
    return np.exp(-0.5 * (((x - cx) / sx) ** 2 + ((y - cy) / sy) ** 2))


def _hsv_to_rgb(h: float, s: float, v: float) -> tuple[float, float, float]:
    """OpenCV-style HSV (h in 0..180, s and v in 0..1) to an RGB triple in 0..255."""
    hsv = np.array([[[h, s * 255, v * 255]]], np.float32).astype(np.uint8)
    return _rgb(cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0].astype(float))


def _opaque(rgb: Sequence[float] | np.ndarray) -> tuple[float, float, float, float]:
    """An RGB colour as an opaque RGBA drawing colour."""
    return (*(float(c) for c in rgb), 255.0)


def _rgb(values: np.ndarray) -> tuple[float, float, float]:
    r, g, b = np.clip(values, 0, 255)
    return (float(r), float(g), float(b))
