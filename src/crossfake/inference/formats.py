"""``crossfake detect``'s outputs: a readable summary, JSON lines, or CSV.

- ``text``: per input, the verdict line, what was sampled, faces per frame, the frames without a face,
  a one-line score timeline (``▁▂▃▄▅▆▇█`` per sampled frame, ``·`` for a frame without a face), the most
  suspicious frame, a VLM's explanation, and the time taken;
- ``jsonl``: one JSON object per input (:meth:`DetectionResult.to_dict`, with every frame and face);
- ``csv``: one row per scored face, plus one row per frame without a face (empty face columns), so no
  sampled frame is missing from the table.

An input that could not be judged is an ``error`` in every format: a line on stderr for ``text``, an
object ``{"path", "error", "status"}`` in ``jsonl``, a row with the ``error`` column set in ``csv``.
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from typing import Any, TextIO

from crossfake.inference.detect import IMAGE, DetectionResult

FORMATS = ("text", "jsonl", "csv")
CSV_COLUMNS = (
    "path", "kind", "frame", "time_s", "face", "track", "faces_found", "x0", "y0", "x1", "y1", "det_score",
    "face_score", "frame_score", "video_score", "threshold", "verdict", "error",
)
_BARS = "▁▂▃▄▅▆▇█"


def sparkline(result: DetectionResult, width: int = 80) -> str:
    """The frame scores as one line of block characters (``·``: no face), at most ``width`` wide."""
    frames = result.frames
    if len(frames) > width:  # evenly spaced frames of the timeline
        frames = [frames[round(i * (len(frames) - 1) / (width - 1))] for i in range(width)]
    return "".join("·" if f.score is None else _BARS[min(int(f.score * len(_BARS)), len(_BARS) - 1)]
                   for f in frames)


def _seconds(times: list[float], limit: int = 8) -> str:
    shown = ", ".join(f"{t:.1f} s" for t in times[:limit])
    return shown + (f", … ({len(times) - limit} more)" if len(times) > limit else "")


def summary(result: DetectionResult) -> str:
    """A readable, multi-line summary of one result."""
    lines = [f"{result.path}: {result.message()}"]
    n = len(result.frames)
    with_face = n - len(result.no_face_frames)
    if result.kind == IMAGE:
        lines.append(f"  image {result.width}×{result.height}")
    else:
        lines.append(
            f"  video {result.width}×{result.height}, {result.num_frames} frames at {result.fps:g} fps "
            f"({result.num_frames / result.fps:.1f} s); {n} frame{'s' * (n != 1)} scored ({result.sampling})"
        )
    counts = Counter(f.faces_found for f in result.frames if f.faces)
    per_frame = ", ".join(f"{k} face{'s' * (k != 1)} in {v}" for k, v in sorted(counts.items()))
    if result.kind != IMAGE or with_face:
        lines.append(f"  faces: {per_frame or 'none'}" + (f"; frames with a face: {with_face} of {n}"
                                                          if result.kind != IMAGE else ""))
    if result.no_face_frames and result.kind != IMAGE:
        lines.append(f"  no face in {len(result.no_face_frames)} frames: at "
                     f"{_seconds([f.time for f in result.no_face_frames])}")
    dropped = [f for f in result.frames if f.faces_found > len(f.faces)]
    if dropped and result.kind != IMAGE:
        lines.append(f"  {len(dropped)} frame{'s' * (len(dropped) != 1)} had faces on no track scored "
                     "(one-frame detections, or beyond --max-faces tracks): not judged")
    if result.kind != IMAGE:
        for t in result.tracks:
            seen = f"{t.frames} frames" + (f" ({t.frames - t.detected} interpolated)" if t.detected < t.frames else "")
            lines.append(f"  track {t.id}: {seen}, {t.start:.1f}-{t.end:.1f} s, p(fake) {t.score:.3f}: "
                         f"{t.verdict.upper()}")
    if result.kind != IMAGE and with_face:
        lines.append(f"  timeline: {sparkline(result)}")
    top = result.top_frame
    if top is not None:
        face = max(top.faces, key=lambda f: f.score)
        box = ", ".join(f"{v:.0f}" for v in face.box)
        where = "" if result.kind == IMAGE else f"frame {top.index} at {top.time:.1f} s, "
        lines.append(f"  most suspicious face: {where}p(fake) {face.score:.3f}, box ({box})")
        if result.kind != IMAGE or len(top.faces) > 1:
            lines.append("  rule: track score = mean over its faces; score = max over tracks")
    explanation = result.explanation
    if explanation:
        lines.append("  explanation (most suspicious face):")
        lines += [f"    {k}: {v}" for k, v in explanation.items()]
    lines += [f"  note: {note}" for note in result.notes]
    t = result.timing
    lines.append(f"  time: {t.total:.2f} s (decode {t.decode:.2f}, faces {t.faces:.2f}, model {t.model:.2f})")
    return "\n".join(lines)


def write_jsonl(stream: TextIO, record: DetectionResult | dict[str, Any]) -> None:
    """One result (or error record) as one JSON line."""
    data = record.to_dict() if isinstance(record, DetectionResult) else record
    stream.write(json.dumps(data, ensure_ascii=False, default=str) + "\n")


def csv_writer(stream: TextIO) -> csv.DictWriter:
    """A CSV writer with the header written (see :data:`CSV_COLUMNS`)."""
    writer = csv.DictWriter(stream, CSV_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    return writer


def csv_rows(record: DetectionResult | dict[str, Any]) -> list[dict[str, Any]]:
    """The CSV rows of one result or error record."""
    if not isinstance(record, DetectionResult):
        return [{"path": record["path"], "error": record["error"]}]
    base = {"path": record.path, "kind": record.kind, "video_score": _num(record.score),
            "threshold": _num(record.threshold), "verdict": record.verdict}
    rows = []
    for frame in record.frames:
        common = {**base, "frame": frame.index, "time_s": f"{frame.time:.3f}", "faces_found": frame.faces_found,
                  "frame_score": _num(frame.score)}
        if not frame.faces:
            rows.append(common)
        for i, face in enumerate(frame.faces):
            x0, y0, x1, y1 = face.box
            rows.append({**common, "face": i, "track": "" if face.track is None else face.track, "x0": _num(x0), "y0": _num(y0), "x1": _num(x1), "y1": _num(y1),
                         "det_score": _num(face.det_score), "face_score": _num(face.score)})
    return rows


def _num(value: float | None) -> str:
    return "" if value is None else f"{value:.6g}"
