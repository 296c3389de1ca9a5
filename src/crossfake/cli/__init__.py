"""Command-line interface: ``crossfake <command>``, one module per command (see :mod:`.main`)."""

from __future__ import annotations

import argparse


def add_override_argument(parser: argparse.ArgumentParser, what: str, example: str) -> None:
    """``--set KEY=VALUE`` (repeatable, into ``args.overrides``): dotted overrides of a YAML config."""
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=f"override a {what} key, e.g. {example} (repeatable)",
    )
