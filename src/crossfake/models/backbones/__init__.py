"""Backbone loaders: each returns the model with the preprocessing its checkpoint expects."""

from crossfake.models.backbones.clip import DEFAULT_CLIP, ClipBundle, ImagePreprocess, build_clip
from crossfake.models.backbones.spec import SYNTH_TINY, TINY, canonical_name, local_dir

__all__ = ["DEFAULT_CLIP", "SYNTH_TINY", "TINY", "ClipBundle", "ImagePreprocess", "build_clip", "canonical_name",
           "local_dir"]
