"""Corpora crossfake can read, each an adapter that lists videos (or images) with their identities.

FaceForensics++ (``ffpp``), DeepFakeDetection (``dfd``), Celeb-DF v2 (``celebdf``), DFDC (``dfdc``),
WildDeepfake (``wilddeepfake``) and any ``real/`` + ``fake/<method>/`` folder (``folder``).

``get_source(name, root)`` builds an adapter by name; add a corpus by writing a module with a class
decorated by :func:`register_source`.
"""

from crossfake.data.sources import celebdf as _celebdf  # noqa: F401  (registers "celebdf")
from crossfake.data.sources import dfd as _dfd  # noqa: F401  (registers "dfd")
from crossfake.data.sources import dfdc as _dfdc  # noqa: F401  (registers "dfdc")
from crossfake.data.sources import ffpp as _ffpp  # noqa: F401  (registers "ffpp")
from crossfake.data.sources import folder as _folder  # noqa: F401  (registers "folder")
from crossfake.data.sources import wilddeepfake as _wilddeepfake  # noqa: F401  (registers "wilddeepfake")
from crossfake.data.sources.base import (
    VideoRecord,
    get_source,
    list_sources,
    register_source,
    source_fake_methods,
)

__all__ = ["VideoRecord", "get_source", "list_sources", "register_source", "source_fake_methods"]
