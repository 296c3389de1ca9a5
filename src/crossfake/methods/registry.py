"""Register methods by name and build them: ``create_detector("lora", backbone="tiny", r=8)``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import ValidationError

from crossfake.methods.base import Detector, MethodConfig
from crossfake.utils.errors import CrossfakeError
from crossfake.utils.registry import Registry

METHODS: Registry[type[Detector]] = Registry("method")


def register_method(name: str) -> Callable[[type[Detector]], type[Detector]]:
    """Class decorator registering a :class:`Detector` subclass under a lower-case ``name``."""
    if name != name.lower() or not name.replace("_", "").isalnum():
        raise ValueError(f"method names are lower-case identifiers, got {name!r}")

    return METHODS.register(name)


def list_methods() -> list[str]:
    return METHODS.names()


def method_class(name: str) -> type[Detector]:
    return METHODS.get(name)


def method_config(name: str, **options: Any) -> MethodConfig:
    """The validated config of method ``name``; ``None`` options keep the method's defaults."""
    cls = method_class(name)
    options = {k: v for k, v in options.items() if v is not None}
    try:
        return cls.config_class(method=name, **options)
    except ValidationError as e:
        problems = "; ".join(f"{'.'.join(map(str, err['loc'])) or name}: {err['msg']}" for err in e.errors())
        raise CrossfakeError(f"invalid options for method {name!r}: {problems}") from None


def create_detector(config: MethodConfig | str, weights: bool = True, **options: Any) -> Detector:
    """Build a detector from a config or a method name plus options.

    Args:
        config: a method config, or a registered method name.
        weights: load the backbone's weights; ``False`` builds the shape only (meta device), for
            parameter counting without a download.
        **options: method options when ``config`` is a name.
    """
    if isinstance(config, str):
        config = method_config(config, **options)
    return method_class(config.method).build(config, weights=weights)
