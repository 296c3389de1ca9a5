"""A synthetic FaceForensics++: procedural faces, four imitated manipulations, the official layout.

``synthesize(out, SynthConfig(...))`` writes original and manipulated H.264 videos, the official split
files and ``conversion_dict.json`` exactly where FF++ keeps them, so the whole pipeline (prepare, split,
audit, train, evaluate) runs end to end on a machine without the real data. The faces are drawn so that
OpenCV's Haar cascade, the default face detector, finds them; the manipulations leave artifacts that
differ the way the real manipulations' do (see :mod:`crossfake.data.synth.manipulations`).
"""

from crossfake.data.synth.writer import SynthConfig, synthesize

__all__ = ["SynthConfig", "synthesize"]
