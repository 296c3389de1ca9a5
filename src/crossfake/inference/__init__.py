"""Judging files with a trained run: ``crossfake detect`` and ``crossfake serve`` are thin layers on this.

- :mod:`~crossfake.inference.media`: what a file is (by content), size limits, which frames to decode;
- :mod:`~crossfake.inference.detect`: the pipeline (faces, crops as in training, batched scores, verdict);
- :mod:`~crossfake.inference.render`: the annotated key frame and the score timeline as PNG;
- :mod:`~crossfake.inference.formats`: the text summary, JSON lines and CSV;
- :mod:`~crossfake.inference.server`: the local web page (needs the ``serve`` extra).

Example::

    from crossfake.inference import DetectPipeline

    pipeline = DetectPipeline.from_run("runs/linear_probe")
    result = pipeline.detect("suspect.mp4")
    print(result.verdict, result.score, [f.score for f in result.frames])
"""

from crossfake.inference.detect import (
    AGGREGATION_RULE,
    DetectionResult,
    DetectPipeline,
    FaceScore,
    FrameResult,
)
from crossfake.inference.media import FrameSampling, InputError

__all__ = [
    "AGGREGATION_RULE",
    "DetectPipeline",
    "DetectionResult",
    "FaceScore",
    "FrameResult",
    "FrameSampling",
    "InputError",
]
