"""Provenance recorded beside every artefact: versions, git hash, command line, time."""

from __future__ import annotations

import hashlib
import importlib.metadata
import platform
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import crossfake

_PACKAGES = ("numpy", "pandas", "pyarrow", "av", "opencv-python-headless", "torch", "transformers", "peft")


def package_versions(packages: tuple[str, ...] = _PACKAGES) -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in packages:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def git_state(path: str | Path | None = None) -> dict[str, Any]:
    """The commit and dirty flag of the git checkout holding the crossfake sources, if any."""
    where = Path(path) if path else Path(crossfake.__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = bool(
            subprocess.run(
                ["git", "status", "--porcelain", "--untracked-files=no"],
                cwd=where, capture_output=True, text=True, timeout=10, check=True,
            ).stdout.strip()
        )
        return {"commit": commit, "dirty": dirty}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def provenance(extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """A JSON-serialisable record of who/what/when produced an artefact."""
    record: dict[str, Any] = {
        "crossfake_version": crossfake.__version__,
        "created_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": sys.argv,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": package_versions(),
        "git": git_state(),
    }
    if extra:
        record.update(extra)
    return record
