"""Report the identities, identity groups and videos that a split shares between train, val and test.

Lists every identity group found on several sides with its people in each split (on FF++'s official
split: the originals cut from one YouTube video, e.g. 605 in train and 606 in test). Also prints the
videos and frames per source × split, like the reports' tables, and how many test videos show a person
seen in training. With --strict the exit status is 1 when anything is shared, so a
pipeline can refuse a leaky split.

Example:
  crossfake audit prepared/split_report1.parquet --strict
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from crossfake.data.audit import audit_split
from crossfake.data.manifest import read_manifest


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("manifest", type=Path, help="a manifest with a 'split' column (from `crossfake split`)")
    parser.add_argument("--strict", action="store_true", help="exit with status 1 if any identity is shared")
    parser.add_argument("--json", action="store_true", help="print the audit as JSON")


def run(args: argparse.Namespace) -> int:
    report = audit_split(read_manifest(args.manifest, require_split=True))
    print(json.dumps(report.to_dict(), indent=2) if args.json else report.format())
    return 1 if args.strict and report.leaks else 0
