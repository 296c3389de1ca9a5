"""Corpora crossfake can read, each an adapter that lists videos (or images) with their identities.

``get_source(name, root)`` builds an adapter by name; add a corpus by writing a module with a class
decorated by :func:`register_source`.
"""

from crossfake.data.sources import dfdc as _dfdc  # noqa: F401  (registers "dfdc")
from crossfake.data.sources import ffpp as _ffpp  # noqa: F401  (registers "ffpp")
from crossfake.data.sources import folder as _folder  # noqa: F401  (registers "folder")
from crossfake.data.sources.base import VideoRecord, get_source, list_sources, register_source

__all__ = ["VideoRecord", "get_source", "list_sources", "register_source"]
