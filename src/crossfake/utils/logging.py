"""Logging set-up shared by the CLI commands."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

LOGGER_NAME = "crossfake"


def get_logger(name: str | None = None) -> logging.Logger:
    return logging.getLogger(LOGGER_NAME if name is None else f"{LOGGER_NAME}.{name}")


def setup_logging(verbosity: int = 0, log_file: str | Path | None = None) -> None:
    """Log to stderr (INFO, or DEBUG with ``-v``) and, optionally, to a file in a run directory."""
    level = logging.DEBUG if verbosity > 0 else logging.INFO
    root = logging.getLogger(LOGGER_NAME)
    root.setLevel(logging.DEBUG)
    fmt = logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s", datefmt="%H:%M:%S")
    if not any(getattr(h, "_crossfake_stderr", False) for h in root.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler._crossfake_stderr = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    for h in root.handlers:
        if getattr(h, "_crossfake_stderr", False):
            h.setLevel(level)
            h.setFormatter(fmt)
    if log_file is not None:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        fh = logging.FileHandler(log_file, encoding="utf-8")
        fh.setLevel(logging.DEBUG)
        fh.setFormatter(fmt)
        root.addHandler(fh)
