"""Assign manifest rows to train/val/test, by identity group unless asked otherwise.

The split is given per manipulation in percent, as in the reports' tables: a shipped spec by name
(report1, report2, their -literal variants, ffpp-official), a YAML file, or --manipulation flags. Modes:

  identity  (default) every identity group goes to one split; leakage-free
  literal   each manipulation cut by its own percentages, identities ignored (the reports' tables exactly)
  frame     frames assigned one by one: the deliberately leaky split of the leakage study
  official  the corpus's own split files (FF++ train/val/test.json)

Without --spec or --manipulation, every manipulation is split 80/10/10 by identity. The result is the manifest with a
'split' column (rows of no split have none), written beside the input with a JSON sidecar holding the
resolved spec, and audited on the spot.

With --merge-faces (identity mode, the 'faces' extra) identity groups whose faces match (dlib's
face-recognition ResNet, Euclidean distance below 0.6) are merged before groups are assigned, so a
person whom the file names split in two still lands on one side; the merges go to the sidecar and the
audit by face of the result is printed.

Examples:
  crossfake split prepared/manifest.parquet --spec report1
  crossfake split prepared/manifest.parquet --spec report1 --merge-faces
  crossfake split prepared/manifest.parquet --manipulation real=70/20/10 --manipulation FaceSwap=90/10/0 \\
      --manipulation NeuralTextures=0/0/100
  crossfake split prepared/manifest.parquet --spec report1 --mode frame --out leaky.parquet
"""

from __future__ import annotations

import argparse
from pathlib import Path

from crossfake.cli.audit import add_face_arguments, crop_margin, face_settings
from crossfake.data.manifest import read_manifest
from crossfake.data.splits import SplitMode, SplitSpec, builtin_specs, load_spec, split_manifest
from crossfake.utils.errors import CrossfakeError
from crossfake.utils.logging import get_logger

log = get_logger("split")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("manifest", type=Path, help="manifest.parquet written by `crossfake prepare` (or its folder)")
    parser.add_argument("--spec", help=f"shipped spec ({', '.join(builtin_specs())}) or a YAML file")
    parser.add_argument(
        "--manipulation", "--source", dest="manipulation", action="append", default=[], metavar="NAME=TR/VA/TE",
        help="per-manipulation percentages, e.g. real=80/10/10 (repeatable; overrides the spec's row)",
    )
    parser.add_argument("--mode", choices=[m.value for m in SplitMode], help="override the spec's mode")
    parser.add_argument("--seed", type=int, help="override the spec's seed")
    parser.add_argument("--out", type=Path, help="output Parquet (default: split_<spec>[_<mode>].parquet beside the input)")
    parser.add_argument("--merge-faces", action="store_true",
                        help="merge identity groups whose faces match before assigning splits (identity mode)")
    add_face_arguments(parser)


def parse_manipulation_flag(flag: str) -> tuple[str, dict[str, float]]:
    """``"real=80/10/10"`` -> ``("real", {"train": 80, "val": 10, "test": 10})``."""
    name, sep, shares = flag.partition("=")
    parts = shares.split("/")
    if not sep or not name or len(parts) != 3:
        raise CrossfakeError(f"--manipulation {flag!r}: expected NAME=TRAIN/VAL/TEST in percent, e.g. real=80/10/10")
    try:
        return name, dict(zip(("train", "val", "test"), map(float, parts), strict=True))
    except ValueError:
        raise CrossfakeError(f"--manipulation {flag!r}: percentages must be numbers") from None


def resolve_spec(args: argparse.Namespace, manipulations: list[str]) -> SplitSpec:
    if args.spec:
        data = load_spec(args.spec).model_dump(mode="json")
    else:
        default = {} if args.manipulation else {m: [80, 10, 10] for m in manipulations}
        data = {"name": "default", "manipulations": default}
        data["manipulations"] = {
            m: dict(zip(("train", "val", "test"), v, strict=True)) for m, v in data["manipulations"].items()
        }
        if args.manipulation:
            data["name"] = "custom"
    for flag in args.manipulation:
        name, shares = parse_manipulation_flag(flag)
        data["manipulations"][name] = shares
    if args.mode:
        data["mode"] = args.mode
    if args.seed is not None:
        data["seed"] = args.seed
    return SplitSpec.parse(data, where="split spec")


def run(args: argparse.Namespace) -> int:
    manifest_path = args.manifest / "manifest.parquet" if args.manifest.is_dir() else args.manifest
    df = read_manifest(manifest_path)
    spec = resolve_spec(args, sorted(df["manipulation"].unique()))
    out = args.out or manifest_path.with_name(
        f"split_{spec.name}{'' if spec.mode == SplitMode.identity else '_' + spec.mode.value}.parquet"
    )
    faces = face_settings(args, crop_margin(manifest_path)) if args.merge_faces else None
    _, report = split_manifest(manifest_path, spec, out, merge_faces=faces)
    print(f"split '{spec.name}' (mode {spec.mode.value}, seed {spec.seed}) -> {out}\n")
    print(report.format())
    return 0
