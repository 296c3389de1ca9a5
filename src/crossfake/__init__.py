"""crossfake: cross-manipulation deepfake detection with vision-language foundation models.

The package is organised by the stages of the job:

- :mod:`crossfake.data` turns videos into face crops and a Parquet manifest, and splits the manifest
  into identity-disjoint train/val/test sets (``sources`` read corpora, ``preprocess`` crops faces,
  ``synth`` writes a synthetic FaceForensics++).
- :mod:`crossfake.evaluation` scores any predictions table (frame and video level, with CIs).
- :mod:`crossfake.cli` is a thin command-line layer over those functions.
"""

__version__ = "0.1.0"
