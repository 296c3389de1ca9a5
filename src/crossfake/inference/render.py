"""Figures of a :class:`~crossfake.inference.detect.DetectionResult`, as PNG bytes.

- :func:`annotated_png`: the key frame (the image itself, or a video's most suspicious frame) with every
  scored face boxed and labelled with its p(fake), red at or above the threshold and green below;
- :func:`timeline_png`: a video's per-frame scores over time, the threshold, the video score, and the
  frames without a face marked on the axis;
- :func:`png_bytes`: any RGB array as PNG (the web page's face crops).

Figures go through matplotlib's Agg canvas (no pyplot state), boxes through OpenCV; callers write the
bytes where they want (``utils.io.write_bytes_atomic``) or embed them in a page.
"""

from __future__ import annotations

import io

import cv2
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from crossfake.inference.detect import FAKE, NO_FACE, DetectionResult

RED, GREEN, GREY = (220, 40, 40), (30, 160, 60), (128, 128, 128)
MIN_SIDE, MAX_SIDE = 480, 1280  # the annotated image's longest side is brought into this range


def png_bytes(rgb: np.ndarray) -> bytes:
    """An RGB ``uint8`` array encoded as PNG."""
    ok, data = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise ValueError(f"cannot encode an array of shape {rgb.shape} as PNG")
    return data.tobytes()


def annotated_png(result: DetectionResult) -> bytes | None:
    """The key frame with boxes and scores under a verdict strip; None unless made with ``keep_images``."""
    if result.key_frame is None:
        return None
    index, rgb = result.key_frame
    # Between MIN_SIDE and MAX_SIDE on the longest side: small frames are enlarged so the labels stay legible.
    scale = min(MAX_SIDE, max(MIN_SIDE, max(rgb.shape[:2]))) / max(rgb.shape[:2])
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    image = np.ascontiguousarray(cv2.resize(rgb, None, fx=scale, fy=scale, interpolation=interpolation))
    frame = next((f for f in result.frames if f.index == index), None)
    side = max(image.shape[:2])
    thickness, font = max(2, round(side / 320)), side / 900
    for face in frame.faces if frame else []:
        colour = RED if face.score >= result.threshold else GREEN
        x0, y0, x1, y1 = (round(v * scale) for v in face.box)
        cv2.rectangle(image, (x0, y0), (x1, y1), colour, thickness)
        _label(image, f"{face.score:.2f}", (x0, y0 if y0 > 30 * font else y1 + round(28 * font)), font, colour)
    verdict = (
        result.verdict.upper() if result.score is None
        else f"{result.verdict.upper()}  score {result.score:.2f}, threshold {result.threshold:.2f}"
    )
    where = f"   frame {index} ({index / result.fps:.1f} s)" if result.fps else ""
    strip = np.full((round(40 * font) + 12, image.shape[1], 3), 255, np.uint8)
    colour = {FAKE: RED, NO_FACE: GREY}.get(result.verdict, GREEN)
    text = verdict + where
    size = font
    while size > 0.3 and cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, size, 2)[0][0] > strip.shape[1] - 16:
        size *= 0.9  # shrink the text until it fits the strip
    cv2.putText(strip, text, (8, strip.shape[0] - round(12 * font) - 4), cv2.FONT_HERSHEY_SIMPLEX, size, colour, 2,
                cv2.LINE_AA)
    return png_bytes(np.vstack([strip, image]))


def _label(image: np.ndarray, text: str, origin: tuple[int, int], font: float, colour: tuple[int, int, int]) -> None:
    """``text`` in white on a box of ``colour`` whose bottom-left corner is ``origin``."""
    (w, h), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, font, 2)
    x, y = origin
    cv2.rectangle(image, (x, y - h - base - 4), (x + w + 6, y), colour, -1)
    cv2.putText(image, text, (x + 3, y - base - 2), cv2.FONT_HERSHEY_SIMPLEX, font, (255, 255, 255), 2, cv2.LINE_AA)


def timeline_png(result: DetectionResult) -> bytes:
    """Per-frame scores of a video over time (one point for an image), with the threshold and verdict."""
    fig = Figure(figsize=(8, 2.8), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    scored = [f for f in result.frames if f.faces]
    missing = [f for f in result.frames if not f.faces]
    if scored:
        t = [f.time for f in scored]
        ax.plot(t, [f.score for f in scored], "-", color="0.6", lw=1, zorder=1)
        colours = [np.array(RED if f.score >= result.threshold else GREEN) / 255 for f in scored]
        ax.scatter(t, [f.score for f in scored], c=colours, s=18, zorder=2, label="frame score (max over faces)")
    if missing:
        ax.scatter(
            [f.time for f in missing], [0.0] * len(missing), marker="x", color=np.array(GREY) / 255, s=20,
            zorder=2, label="no face", clip_on=False,
        )
    ax.axhline(result.threshold, color="black", ls="--", lw=1, label=f"threshold {result.threshold:.3f}")
    if result.score is not None:
        ax.axhline(result.score, color=np.array(RED if result.verdict == FAKE else GREEN) / 255, lw=1.5,
                   alpha=0.6, label=f"video score {result.score:.3f}")
    ax.set_ylim(-0.02, 1.02)
    end = max([result.fps and result.num_frames / result.fps, 1e-3] + [f.time for f in result.frames])
    ax.set_xlim(-0.02 * end, 1.02 * end)  # a margin, so the points at 0 s are not hidden by the axis
    ax.set_xlabel("time (s)")
    ax.set_ylabel("p(fake)")
    ax.set_title(f"{result.verdict.upper()}: {len(scored)} of {len(result.frames)} sampled frames with a face",
                 fontsize=10)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.grid(alpha=0.3)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    return buffer.getvalue()
