"""Image-caption pairs of synthetic faces, generated on the fly, for contrastive pretraining.

Each pair is made in four steps, all seeded by ``(seed, step, index)`` so a batch never depends on what
was generated before it:

1. **render** a person from a pool of identities (:class:`~crossfake.data.synth.faces.Identity`, drawn
   from a seed stream of their own, so no face of a ``crossfake synth`` corpus is ever seen) in a random
   pose and expression, with sensor noise, exactly as ``crossfake synth`` renders a frame;
2. **crop** the face the way ``crossfake prepare`` does (:func:`~crossfake.data.preprocess.crop.square_box`
   with its 1.3x margin, black outside the frame), from the ground-truth box jittered like a face detector's;
3. **edit** some images locally (a smoothed, recoloured-with-a-seam, warped, pasted or grainy patch at a
   random place, size and strength) and **degrade** some globally (blur, grain, tint, exposure, strong
   JPEG), recording what was done;
4. **caption** the image from the renderer's attributes (skin, hair, eyes, face shape, expression, head
   tilt, lighting, background, clothes) and the recorded edits and degradations.

What it deliberately does *not* do: apply the synthetic FF++ manipulations
(:mod:`crossfake.data.synth.manipulations`) or name them. The edits are generic image operations at
random places, like the retouching, splicing and compression that web captions describe for CLIP; a
detector built on this backbone still has to learn what *one* manipulation looks like, and whether that
carries over to another is the open question the demo measures, not something pretraining decided.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from crossfake.data.preprocess.crop import crop_square, square_box
from crossfake.data.preprocess.face_detectors import Face
from crossfake.data.synth.faces import FaceRenderer, Identity, Motion, to_uint8
from crossfake.models.pretrain.config import PretrainData

#: Seed-stream tag of pretraining identities; ``crossfake synth`` uses 0-4 (see its writer).
_STREAM_IDENTITY = 101
_STREAM_BATCH = 102

# -- caption vocabulary -----------------------------------------------------------------------------
# Every word a caption can contain comes from these tables (the tokenizer is built from them).

_TEMPLATE = ("a", "an", "photo", "of", "face", "real", "fake", "with", "skin", "hair", "eyes", "background",
             "shirt", "lit", "from", "the", "head", "tilted", "to", "patch", "on", "in", "image", "and")
_SKIN = ("light", "medium", "dark")
_HAIR_STYLE = {"buzz": "buzzcut", "short": "short", "curly": "curly", "bob": "bob", "bangs": "fringed",
               "long": "long"}
_HAIR_COLOUR = ("black", "brown", "blonde", "auburn", "grey")
_IRIS = ("brown", "blue", "green", "hazel", "grey")
_BACKGROUND = {"gradient": "gradient", "stripes": "striped", "blobs": "blotchy", "tiles": "tiled"}
_HUES = ("red", "orange", "yellow", "green", "cyan", "blue", "purple", "pink")
_SHAPE = ("narrow", "wide", "round", "pointed")
_EXPRESSION = ("mouth", "closed", "open", "slightly", "wide", "smiling", "frowning", "blinking")
_LIGHT = ("left", "right", "front")
_PLACE_V = ("upper", "middle", "lower")
_PLACE_H = ("left", "centre", "right")
#: Local edits: name -> caption phrase.
EDITS = {
    "smooth": "a smoothed",
    "recolour": "a recoloured",
    "warp": "a warped",
    "paste": "a pasted",
    "grain": "a grainy",
}
_EDIT_WORDS = ("sharp", "seam", "soft", "edge")
#: Global degradations: name -> caption phrase.
DEGRADATIONS = {
    "blur": "blurry",
    "grain": "grainy",
    "warm": "warm tint",
    "cool": "cool tint",
    "green": "green tint",
    "magenta": "magenta tint",
    "dark": "dark",
    "bright": "bright",
    "flat": "low contrast",
    "jpeg": "strong jpeg artifacts",
}


def caption_words() -> list[str]:
    """Every word a caption can contain, sorted (the tokenizer's whole-word vocabulary)."""
    words: set[str] = set(_TEMPLATE) | set(_SKIN) | set(_HAIR_STYLE.values()) | set(_HAIR_COLOUR)
    words |= set(_IRIS) | set(_BACKGROUND.values()) | set(_HUES) | set(_SHAPE) | set(_EXPRESSION)
    words |= set(_LIGHT) | set(_PLACE_V) | set(_PLACE_H) | set(_EDIT_WORDS)
    for phrase in (*EDITS.values(), *DEGRADATIONS.values()):
        words |= set(phrase.split())
    return sorted(words)


def build_tokenizer(max_length: int):
    """A :class:`~transformers.CLIPTokenizer` whose vocabulary is characters plus every caption word.

    Byte-pair merges are learnt on the caption words (CLIP's ``</w>`` word ends) until each word is one
    token; any other word falls back to pieces and characters. Built offline and deterministic.
    """
    from transformers import CLIPTokenizer

    chars = sorted(set("abcdefghijklmnopqrstuvwxyz0123456789.,!?-'"))
    vocab = {c: i for i, c in enumerate(chars)}
    vocab.update({c + "</w>": len(chars) + i for i, c in enumerate(chars)})
    merges = ["#version: 0.2"]
    for a, b in _learn_merges(caption_words()):
        merges.append(f"{a} {b}")
        vocab.setdefault(a + b, len(vocab))
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    # CLIPTokenizer(vocab_file=...) ignores the files in transformers 5; from_pretrained(dir) reads them.
    with tempfile.TemporaryDirectory() as d:
        Path(d, "vocab.json").write_text(json.dumps(vocab))
        Path(d, "merges.txt").write_text("\n".join(merges) + "\n")
        return CLIPTokenizer.from_pretrained(d, model_max_length=max_length)


def _learn_merges(words: list[str]) -> list[tuple[str, str]]:
    """Plain BPE over ``words`` (each counted once) until every word is one symbol.

    Ties go to the alphabetically first pair, so the merges do not depend on hash order (the
    ``tokenizers`` trainer's do).
    """
    spelt = [[*w[:-1], w[-1] + "</w>"] for w in words]
    merges: list[tuple[str, str]] = []
    while True:
        counts: dict[tuple[str, str], int] = {}
        for symbols in spelt:
            for pair in zip(symbols, symbols[1:], strict=False):
                counts[pair] = counts.get(pair, 0) + 1
        if not counts:
            return merges
        best = min(counts, key=lambda pair: (-counts[pair], pair))
        merges.append(best)
        for k, symbols in enumerate(spelt):
            out, i = [], 0
            while i < len(symbols):
                if i + 1 < len(symbols) and (symbols[i], symbols[i + 1]) == best:
                    out.append(symbols[i] + symbols[i + 1])
                    i += 2
                else:
                    out.append(symbols[i])
                    i += 1
            spelt[k] = out


# -- one sample -------------------------------------------------------------------------------------


@dataclass
class Sample:
    """One face crop (uint8 RGB, ``crop_size`` square) with its caption and what was done to it."""

    image: np.ndarray
    caption: str
    edits: list[str] = field(default_factory=list)
    degradations: list[str] = field(default_factory=list)


class FaceCaptionStream:
    """Deterministic batches of :class:`Sample` for a :class:`PretrainData` config and a seed.

    ``batch(step, n)`` is a pure function of ``(seed, step, n)``; renderers of the identity pool are
    built when first drawn and kept.
    """

    def __init__(self, config: PretrainData, seed: int) -> None:
        self.config = config
        self.seed = seed
        self.width = config.frame_width
        self.height = config.frame_width * 3 // 4
        self._renderers: dict[int, FaceRenderer] = {}

    def renderer(self, index: int) -> FaceRenderer:
        if index not in self._renderers:
            rng = np.random.default_rng([self.seed, _STREAM_IDENTITY, index])
            self._renderers[index] = FaceRenderer(Identity.sample(rng, index), self.width, self.height)
        return self._renderers[index]

    def batch(self, step: int, n: int) -> list[Sample]:
        """Batch ``step``: ``n`` samples (a negative ``step`` gives held-out evaluation batches)."""
        rng = np.random.default_rng([self.seed, _STREAM_BATCH, step + (1 << 40)])
        paired = self.config.paired
        faces = [self._face(rng) for _ in range((n + 1) // 2 if paired else n)]
        out = []
        for i in range(n):
            k = i // 2 if paired else i
            crop, content, look = faces[k]
            donor = faces[(k + 1) % len(faces)][0]  # the next face supplies pasted patches
            # Paired: the face's first copy is left unedited, its second edited; both get the same
            # degradations (`look` seeds them), so the pair differs in the edits alone.
            edited = i % 2 == 1 if paired else bool(rng.random() < self.config.edit_prob)
            out.append(self._finish(crop, content, donor, edited, rng, np.random.default_rng(look)))
        return out

    def batches(self, steps: int, n: int, start: int = 0) -> Iterator[list[Sample]]:
        for step in range(start, start + steps):
            yield self.batch(step, n)

    # -- rendering and cropping -------------------------------------------------------------------

    def _face(self, rng: np.random.Generator) -> tuple[np.ndarray, list[str], int]:
        """A rendered, noisy frame's face crop and the content phrases of its caption (1-3 of them, drawn
        from the renderer's attributes, in random order) and the seed of its degradations."""
        renderer = self.renderer(int(rng.integers(self.config.identities)))
        blink = float(rng.choice([0.0, 0.0, 0.0, 1.0, rng.uniform(0, 1)]))
        pose = Motion(*(np.array([v], dtype=float) for v in (
            rng.uniform(-0.08, 0.08), rng.uniform(-0.05, 0.05), rng.uniform(0.85, 1.15),
            rng.uniform(-12, 12), blink, rng.uniform(0, 1), rng.uniform(-0.6, 0.8))))
        content = _content_phrases(renderer.identity, pose, rng)
        content = [content[i] for i in rng.permutation(len(content))[: int(rng.integers(1, 4))]]
        x, y, w, h = renderer.face_box(renderer.identity, pose, 0)
        j = self.config.box_jitter
        s = 1 + rng.uniform(-j, j)
        cx, cy = x + w / 2 + rng.uniform(-j, j) * w, y + h / 2 + rng.uniform(-j, j) * h
        box = square_box(Face(cx - s * w / 2, cy - s * h / 2, cx + s * w / 2, cy + s * h / 2, 1.0),
                         self.config.margin)
        # Cut the box at frame resolution, add the sensor noise `crossfake synth` adds (sigma 2) there
        # (only the crop needs it), then resize as `prepare` does.
        native = crop_square(renderer.frame(pose, 0), box, box[2] - box[0])
        native = to_uint8(native + rng.standard_normal(native.shape, dtype=np.float32) * np.float32(2.0))
        crop = crop_square(native, (0, 0, *native.shape[1::-1]), self.config.crop_size)
        return crop, content, int(rng.integers(1 << 62))

    # -- edits, degradations, caption ------------------------------------------------------------

    def _finish(self, crop: np.ndarray, content: list[str], donor: np.ndarray, edited: bool,
                rng: np.random.Generator, look: np.random.Generator) -> Sample:
        cfg = self.config
        img = crop.astype(np.float32)
        edits, edit_phrases = [], []
        if edited:
            for _ in range(int(rng.integers(1, cfg.max_edits + 1))):
                name = str(rng.choice(list(EDITS)))
                img, phrase, where = _edit(name, img, donor.astype(np.float32), rng)
                edits.append(name)
                edit_phrases.append(f"{phrase} {where}" if cfg.edit_places else phrase)
        degradations = [name for name in ("blur", "grain", "tint", "exposure") if look.random() < cfg.degrade_prob]
        img, degradations = _degrade(img, degradations, look)
        strong = look.random() < cfg.jpeg_strong_prob
        quality = int(look.integers(15, 40)) if strong else int(look.integers(75, 96))  # video-like mild otherwise
        img = _jpeg(to_uint8(img), quality)
        if strong:
            degradations.append("jpeg")
        caption = _caption(content, edit_phrases, [DEGRADATIONS[d] for d in degradations], bool(edits),
                           cfg.label_edits)
        return Sample(img, caption, edits, degradations)


def _an(word: str) -> str:
    return ("an " if word[0] in "aeiou" else "a ") + word


def _hue_name(rgb: tuple[float, float, float]) -> str:
    hsv = cv2.cvtColor(np.array([[rgb]], np.float32) / 255, cv2.COLOR_RGB2HSV)[0, 0]
    return _HUES[int(((hsv[0] + 22.5) % 360) // 45)]


def _content_phrases(p: Identity, pose: Motion, rng: np.random.Generator) -> list[str]:
    """Caption phrases for what is in the picture (each from a renderer attribute)."""
    tone = (np.mean([236, 200, 176]) - float(np.mean(p.skin))) / (np.mean([236, 200, 176]) - np.mean([110, 72, 52]))
    skin = _SKIN[int(np.clip(tone * 3, 0, 2))]
    mouth, smile, blink, angle = (float(v[0]) for v in (pose.mouth, pose.smile, pose.blink, pose.angle))
    expression = ["mouth wide open" if mouth > 0.65 else "mouth slightly open" if mouth > 0.3 else "mouth closed"]
    if smile > 0.35:
        expression.append("smiling")
    elif smile < -0.2:
        expression.append("frowning")
    if blink > 0.6:
        expression.append("blinking")
    shape = "narrow" if p.face_width < 0.71 else "wide" if p.face_width > 0.77 else None
    shape_jaw = "pointed" if p.jaw > 0.2 else "round" if p.jaw < 0.08 else None
    phrases = [
        f"{skin} skin",
        f"{p.hair} {_HAIR_STYLE[p.hair_style]} hair",
        f"{p.iris} eyes",
        " and ".join(expression),
        f"{_an(_hue_name(p.background_colours[0]))} {_BACKGROUND[p.background]} background",
        f"{_an(_hue_name(p.clothes))} shirt",
        "lit from the " + ("left" if p.light < -0.35 else "right" if p.light > 0.35 else "front"),
    ]
    if abs(angle) > 4:
        # cv2's positive angle turns the face anticlockwise on screen: its top moves to the viewer's left.
        phrases.append("head tilted to the " + ("left" if angle > 0 else "right"))
    for word in (shape, shape_jaw):
        if word:
            phrases.append(f"{word} face")
    return phrases


def _caption(content: list[str], edits: list[str], degradations: list[str], edited: bool,
             label_edits: bool) -> str:
    """``a photo of a <real|fake> face with ...``: the content phrases, then the edits and degradations
    (always all of them: they are what the image is about)."""
    head = f"a photo of a {'fake' if edited else 'real'} face" if label_edits else "a photo of a face"
    parts = [head + (" with " + ", ".join(content) if content else "")]
    if edits:
        parts.append(", ".join(edits))
    if degradations:
        parts.append("image " + ", ".join(degradations))
    return ". ".join(parts)


def _place(cx: float, cy: float, size: int) -> str:
    v = _PLACE_V[min(2, int(3 * cy / size))]
    h = _PLACE_H[min(2, int(3 * cx / size))]
    return "in the centre" if (v, h) == ("middle", "centre") else f"on the {v} {h}"


def _region(rng: np.random.Generator, size: int, feather: float) -> tuple[np.ndarray, str]:
    """A random filled ellipse (float mask, edge blurred by ``feather`` px) and where it is."""
    cx, cy = rng.uniform(0.28, 0.72, 2) * size  # mostly on the face, which fills the crop's middle
    axes = rng.uniform(0.07, 0.2, 2) * size
    mask = np.zeros((size, size), np.float32)
    cv2.ellipse(mask, (round(cx * 16), round(cy * 16)), (round(axes[0] * 16), round(axes[1] * 16)),
                float(rng.uniform(0, 180)), 0, 360, 1.0, -1, cv2.LINE_AA, 4)
    if feather > 0:
        mask = cv2.GaussianBlur(mask, (0, 0), feather)
    return mask[..., None], _place(cx, cy, size)


def _edit(name: str, img: np.ndarray, donor: np.ndarray,
          rng: np.random.Generator) -> tuple[np.ndarray, str, str]:
    """Apply local edit ``name`` at a random place; returns the image, its caption phrase and where it is."""
    size = img.shape[0]
    if name == "smooth":
        mask, where = _region(rng, size, rng.uniform(1.0, 4.0))
        new = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.8, 2.2))
        detail = ""
    elif name == "recolour":
        sharp = rng.random() < 0.6
        mask, where = _region(rng, size, rng.uniform(0.3, 1.0) if sharp else rng.uniform(4.0, 8.0))
        gain = 1 + rng.uniform(0.05, 0.18, 3) * rng.choice([-1, 1], 3)
        new = img * gain.astype(np.float32)
        detail = " with a sharp seam" if sharp else " with a soft edge"
    elif name == "warp":
        mask, where = _region(rng, size, 0)
        ys, xs = np.nonzero(mask[..., 0] > 0.5)
        cy, cx = (ys.mean(), xs.mean()) if len(ys) else (size / 2, size / 2)
        sigma = max(2.0, np.sqrt(len(ys) / np.pi) * 0.7)
        yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
        bump = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * sigma**2)).astype(np.float32)
        amp = rng.uniform(1.5, 4.5)
        if rng.random() < 0.5:  # a shift in one direction
            theta = rng.uniform(0, 2 * np.pi)
            dx, dy = amp * np.cos(theta) * bump, amp * np.sin(theta) * bump
        else:  # a bulge or pinch around the centre
            scale = rng.choice([-1, 1]) * amp / sigma
            dx, dy = scale * (xx - cx) * bump, scale * (yy - cy) * bump
        warped = cv2.remap(img, (xx - dx).astype(np.float32), (yy - dy).astype(np.float32), cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        return warped, "a warped patch", where
    elif name == "paste":
        sharp = rng.random() < 0.6
        mask, where = _region(rng, size, rng.uniform(0.3, 1.0) if sharp else rng.uniform(3.0, 6.0))
        shift = rng.integers(-size // 8, size // 8 + 1, 2)
        new = np.roll(donor, tuple(int(s) for s in shift), axis=(0, 1))
        detail = " with a sharp seam" if sharp else " with a soft edge"
    elif name == "grain":
        mask, where = _region(rng, size, rng.uniform(1.0, 3.0))
        new = img + rng.standard_normal(img.shape, dtype=np.float32) * np.float32(rng.uniform(5, 12))
        detail = ""
    else:
        raise ValueError(f"unknown edit {name!r}")
    return img * (1 - mask) + new * mask, f"{EDITS[name]} patch{detail}", where


def _degrade(img: np.ndarray, kinds: list[str], rng: np.random.Generator) -> tuple[np.ndarray, list[str]]:
    """Apply the global degradations ``kinds`` (blur, grain, tint, exposure); returns their names."""
    names = []
    for kind in kinds:
        if kind == "blur":
            img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.7, 1.5))
            names.append("blur")
        elif kind == "grain":
            img = img + rng.standard_normal(img.shape, dtype=np.float32) * np.float32(rng.uniform(4, 9))
            names.append("grain")
        elif kind == "tint":
            tint = str(rng.choice(["warm", "cool", "green", "magenta"]))
            a = rng.uniform(0.08, 0.16)
            gain = {"warm": (1 + a, 1, 1 - a), "cool": (1 - a, 1, 1 + a), "green": (1 - a / 2, 1 + a, 1 - a / 2),
                    "magenta": (1 + a / 2, 1 - a, 1 + a / 2)}[tint]
            img = img * np.array(gain, np.float32)
            names.append(tint)
        elif kind == "exposure":
            choice = str(rng.choice(["dark", "bright", "flat"]))
            if choice == "dark":
                img = img * np.float32(rng.uniform(0.55, 0.75))
            elif choice == "bright":
                img = img * np.float32(rng.uniform(1.25, 1.45))
            else:
                img = 128 + (img - 128) * np.float32(rng.uniform(0.45, 0.65))
            names.append(choice)
    return img, names


def _jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    """JPEG round trip of an RGB image (OpenCV's codec expects BGR: its chroma planes would be wrong)."""
    ok, data = cv2.imencode(".jpg", cv2.cvtColor(img, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:  # pragma: no cover - OpenCV always encodes a uint8 image
        raise RuntimeError("JPEG encoding failed")
    return cv2.cvtColor(cv2.imdecode(data, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
