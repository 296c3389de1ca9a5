"""Configs shipped inside the package (``crossfake/configs/<kind>/<name>.yaml``), found by name or path."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from crossfake.utils.errors import CrossfakeError


def shipped_names(kind: str) -> list[str]:
    """Names of the shipped configs of one kind, e.g. ``shipped_names("train")``."""
    folder = resources.files("crossfake") / "configs" / kind
    return sorted(p.name[: -len(".yaml")] for p in folder.iterdir() if p.name.endswith(".yaml"))


def resolve_shipped(kind: str, name_or_path: str | Path, what: str) -> Path:
    """``name_or_path`` if it is a file, else the shipped ``configs/<kind>/<name>.yaml``.

    Raises:
        CrossfakeError: naming ``what`` was looked for and the shipped names, when neither exists.
    """
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return path
    resource = resources.files("crossfake") / "configs" / kind / f"{name_or_path}.yaml"
    if path.suffix in {".yaml", ".yml"} or not resource.is_file():
        raise CrossfakeError(f"no {what} at {path} (shipped: {', '.join(shipped_names(kind))})")
    return Path(str(resource))
