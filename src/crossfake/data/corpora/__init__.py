"""Corpora crossfake can read, each an adapter that lists videos (or images) with their identities.

FaceForensics++ (``ffpp``), DeepFakeDetection (``dfd``), Celeb-DF v2 (``celebdf``), DFDC (``dfdc``),
WildDeepfake (``wilddeepfake``) and any ``real/`` + ``fake/<manipulation>/`` folder (``folder``).

``get_corpus(name, root)`` builds an adapter by name; add a corpus by writing a module with a class
decorated by :func:`register_corpus`.
"""

from crossfake.data.corpora import celebdf as _celebdf  # noqa: F401  (registers "celebdf")
from crossfake.data.corpora import dfd as _dfd  # noqa: F401  (registers "dfd")
from crossfake.data.corpora import dfdc as _dfdc  # noqa: F401  (registers "dfdc")
from crossfake.data.corpora import ffpp as _ffpp  # noqa: F401  (registers "ffpp")
from crossfake.data.corpora import folder as _folder  # noqa: F401  (registers "folder")
from crossfake.data.corpora import wilddeepfake as _wilddeepfake  # noqa: F401  (registers "wilddeepfake")
from crossfake.data.corpora.base import (
    VideoRecord,
    corpus_fake_manipulations,
    get_corpus,
    list_corpora,
    register_corpus,
)

__all__ = ["VideoRecord", "get_corpus", "list_corpora", "register_corpus", "corpus_fake_manipulations"]
