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

from crossfake.utils.logging import get_logger
from crossfake.utils.registry import Registry
from crossfake.vlm.backends.base import VLMBackend, VLMResult

log = get_logger("vlm.backends")

BACKENDS: Registry[Callable[..., VLMBackend]] = Registry("VLM backend")
register_backend = BACKENDS.register
_MODULES = ("local", "http")
_import_errors: dict[str, str] = {}


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
    return BACKENDS.names()


def create_backend(kind: str, **options: Any) -> VLMBackend:
    """Build the backend registered as ``kind`` with its constructor ``options``.

    Raises:
        CrossfakeError: unknown ``kind``, or options its constructor does not accept.
    """
    _load_modules()
    BACKENDS.get(kind, f" (its module failed to import: {_import_errors[kind]})" if kind in _import_errors else "")
    return BACKENDS.build(kind, **options)


__all__ = ["VLMBackend", "VLMResult", "create_backend", "list_backends", "register_backend"]
