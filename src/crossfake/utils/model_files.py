"""Model files pinned by checksum: found locally, or downloaded once into a cache and verified.

Some parts crossfake uses ship their weights apart from any package (YuNet's ONNX file lives in the
OpenCV model zoo). A :class:`ModelFile` names such a file by its URL and sha256; :func:`fetch_model_file`
returns a local path to it:

1. a path the user gave (``--face-detector-weights PATH``): used as it is, a missing file is an error;
2. the cache, ``$CROSSFAKE_CACHE`` or ``$XDG_CACHE_HOME/crossfake`` or ``~/.cache/crossfake``, under
   ``models/<name>``;
3. otherwise the file is downloaded to a temporary file beside its cache place, its sha256 checked, and
   only then moved into place, so the cache never holds a partial or altered file.

Offline (``CROSSFAKE_OFFLINE=1`` or ``HF_HUB_OFFLINE=1``) or when the download fails, the error is one line
naming the file, where it was looked for, the URL and the flag that gives a local copy.
"""

from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from crossfake.utils.errors import CrossfakeError
from crossfake.utils.io import atomic_path
from crossfake.utils.logging import get_logger

log = get_logger("model_files")

_OFFLINE_VARS = ("CROSSFAKE_OFFLINE", "HF_HUB_OFFLINE")


@dataclass(frozen=True)
class ModelFile:
    """A downloadable file pinned by its sha256.

    Attributes:
        name: file name in the cache.
        url: where it is downloaded from.
        sha256: its hex digest; a download with another digest is refused.
        what: how messages call it, e.g. ``"the YuNet face detector's weights"``.
        flag: the option that passes a local copy, named in messages.
    """

    name: str
    url: str
    sha256: str
    what: str
    flag: str


def cache_dir() -> Path:
    """Where downloaded model files are kept (see the module docstring)."""
    if os.environ.get("CROSSFAKE_CACHE"):
        return Path(os.environ["CROSSFAKE_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "crossfake"


def sha256_of(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch_model_file(spec: ModelFile, path: str | Path | None = None, *, timeout: float = 60.0) -> Path:
    """A local path to ``spec``'s file: ``path`` if given, else the cached or freshly downloaded copy.

    Raises:
        CrossfakeError: ``path`` does not exist; or the file is not cached and cannot be downloaded
            (offline, network error, wrong checksum).
    """
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise CrossfakeError(f"{spec.what}: {path} does not exist (expected {spec.name}, given by {spec.flag})")
        return path
    cached = cache_dir() / "models" / spec.name
    if cached.is_file():
        return cached
    how = f"download {spec.url} yourself and pass it with {spec.flag} PATH, or place it at {cached}"
    offline = [v for v in _OFFLINE_VARS if os.environ.get(v, "").strip() not in ("", "0")]
    if offline:
        raise CrossfakeError(f"{spec.what} ({spec.name}) are not in the cache and {offline[0]} forbids downloads: {how}")
    log.info("downloading %s from %s", spec.name, spec.url)
    try:
        with atomic_path(cached) as tmp:
            with urllib.request.urlopen(spec.url, timeout=timeout) as response, open(tmp, "wb") as out:
                while block := response.read(1 << 20):
                    out.write(block)
            digest = sha256_of(tmp)
            if digest != spec.sha256:
                raise CrossfakeError(
                    f"{spec.what}: the download from {spec.url} has sha256 {digest}, expected {spec.sha256}; "
                    f"not cached. {how[0].upper()}{how[1:]}"
                )
    except (urllib.error.URLError, OSError, ValueError) as e:
        reason = getattr(e, "reason", None) or e
        raise CrossfakeError(f"{spec.what} ({spec.name}) are not in the cache and could not be downloaded ({reason}): {how}") from None
    log.info("cached %s at %s", spec.name, cached)
    return cached
