"""``python -m crossfake.models.pretrain``: pretrain the small CLIP and write its folder."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from crossfake.models.backbones.spec import bundled_clip_dir
from crossfake.models.pretrain.config import PretrainConfig
from crossfake.models.pretrain.train import pretrain, save_backbone
from crossfake.utils.config import add_override_argument
from crossfake.utils.errors import CrossfakeError
from crossfake.utils.logging import setup_logging


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m crossfake.models.pretrain",
                                     description="Pretrain a small CLIP contrastively on captioned synthetic "
                                                 "faces and write it as a save_pretrained folder.")
    parser.add_argument("--config", type=Path, help="pretraining YAML (default: configs/pretrain/clip-synth-tiny.yaml)")
    parser.add_argument("--out", type=Path, default=None,
                        help="output folder (default: the package's bundled assets/clip-synth-tiny)")
    add_override_argument(parser, "config", "train.steps=50")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    setup_logging()
    try:
        config = PretrainConfig.from_yaml(args.config, args.overrides)
        out = args.out or bundled_clip_dir(check=False)
        result = pretrain(config, progress=not args.quiet)
        save_backbone(result, config, out)
    except CrossfakeError as e:
        print(f"pretrain: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
