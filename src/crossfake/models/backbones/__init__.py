"""Backbone loaders: each returns the model with the preprocessing its checkpoint expects."""

from crossfake.models.backbones.clip import DEFAULT_CLIP, TINY, ClipBundle, ImagePreprocess, build_clip

__all__ = ["DEFAULT_CLIP", "TINY", "ClipBundle", "ImagePreprocess", "build_clip"]
