"""VLM backends, created by name: ``create_backend("local", bundle=...)``, ``create_backend("http", ...)``.

A backend module registers its class with ``@register_backend("name")``; :func:`create_backend` imports
the shipped backend modules on first use, so adding one is a module with that decorator plus its name
in ``_MODULES``. A module that is absent (or fails to import for a missing optional dependency) only
makes its own backend unavailable.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from crossfake.utils.errors import CrossfakeError
from crossfake.utils.logging import get_logger
from crossfake.vlm.backends.base import VLMBackend, VLMResult

log = get_logger("vlm.backends")

_BACKENDS: dict[str, Callable[..., VLMBackend]] = {}
_MODULES = ("local", "http")
_import_errors: dict[str, str] = {}


def register_backend(name: str) -> Callable[[type], type]:
    """Class decorator registering a backend class under ``name``."""

    def deco(cls: type) -> type:
        if name in _BACKENDS and _BACKENDS[name] is not cls:
            raise ValueError(f"VLM backend {name!r} registered twice")
        _BACKENDS[name] = cls
        return cls

    return deco


def _load_modules() -> None:
    for module in _MODULES:
        if module in _import_errors:
            continue
        try:
            importlib.import_module(f"{__name__}.{module}")
        except ImportError as e:
            # Recorded, not raised: a backend whose module or dependency is missing is only unavailable.
            _import_errors[module] = str(e)
            log.debug("VLM backend module %s not available: %s", module, e)


def list_backends() -> list[str]:
    _load_modules()
    return sorted(_BACKENDS)


def create_backend(kind: str, **options: Any) -> VLMBackend:
    """Build the backend registered as ``kind`` with its constructor ``options``.

    Raises:
        CrossfakeError: unknown ``kind``, or options its constructor does not accept.
    """
    _load_modules()
    if kind not in _BACKENDS:
        why = f" (its module failed to import: {_import_errors[kind]})" if kind in _import_errors else ""
        raise CrossfakeError(f"unknown VLM backend {kind!r}{why}; available: {', '.join(sorted(_BACKENDS))}")
    try:
        return _BACKENDS[kind](**options)
    except TypeError as e:
        raise CrossfakeError(f"invalid options for VLM backend {kind!r}: {e}") from None


__all__ = ["VLMBackend", "VLMResult", "create_backend", "list_backends", "register_backend"]
