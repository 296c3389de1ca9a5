"""``crossfake`` entry point: a thin table from sub-command to module.

Each command lives in ``crossfake/cli/<command>.py`` and exposes

- a module docstring, whose first line is the command's one-line help and whole text its description;
- ``add_arguments(parser)`` to declare its options;
- ``run(args) -> int`` to do the work (return the exit status).

Modules are imported only when their command runs, so ``crossfake --help`` stays fast and a missing
optional dependency affects only the command that needs it.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from crossfake import __version__
from crossfake.utils.errors import CrossfakeError
from crossfake.utils.logging import setup_logging

#: command -> (module, one-line help). Kept here (not read from the modules) so --help imports nothing.
COMMANDS: dict[str, tuple[str, str]] = {
    "synth": ("crossfake.cli.synth", "write a synthetic FaceForensics++ corpus in the official layout"),
    "prepare": ("crossfake.cli.prepare", "sample frames, detect and crop faces, write a Parquet manifest"),
    "faces": ("crossfake.cli.faces", "find faces in images and videos: boxes, landmarks, tracks, drawn"),
    "split": ("crossfake.cli.split", "assign manifest rows to train/val/test by identity group"),
    "audit": ("crossfake.cli.audit", "report identities and videos shared between splits"),
    "train": ("crossfake.cli.train", "train a detector from a YAML config into a run directory"),
    "evaluate": ("crossfake.cli.evaluate", "score a split, manifest or folder with a trained run"),
    "metrics": ("crossfake.cli.metrics", "frame- and video-level AUC/EER/ACC/F1/AP with CIs and ROC"),
    "params": ("crossfake.cli.params", "print a method's trainable and total parameters (no download)"),
    "run": ("crossfake.cli.run", "run an experiment: prepare, split, train, test every method, report"),
    "report": ("crossfake.cli.report", "rebuild an experiment's report (Markdown, HTML, figures) from its predictions"),
    "compare": ("crossfake.cli.compare", "put several experiment runs side by side, per test set and method"),
    "ablate": ("crossfake.cli.ablate", "the LoRA ablation grid (rank x alpha x dropout, train fraction)"),
    "leakage": ("crossfake.cli.leakage", "identity-leakage study: frame-level random vs identity split"),
    "robustness": ("crossfake.cli.robustness", "a run's AUC under the DeeperForensics perturbations, 7 types x 5 levels"),
    "detect": ("crossfake.cli.detect", "judge videos, images or folders with a trained run: scores, verdicts"),
    "serve": ("crossfake.cli.serve", "a local web page to upload a video or image and see its verdict"),
}


class _Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Shows defaults (but not "default: None") and keeps the descriptions' line breaks."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default is None or action.default is argparse.SUPPRESS or action.default == []:
            return action.help or ""
        return super()._get_help_string(action)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="crossfake",
        description="Cross-manipulation deepfake detection with vision-language foundation models.",
        epilog="Run `crossfake COMMAND --help` for a command's options.",
        formatter_class=_Formatter,
    )
    parser.add_argument("--version", action="version", version=f"crossfake {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-v: debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_) in COMMANDS.items():
        sub.add_parser(name, help=help_, add_help=False)
    return parser


def _command_parser(name: str) -> tuple[argparse.ArgumentParser, object]:
    module = importlib.import_module(COMMANDS[name][0])
    doc = (module.__doc__ or COMMANDS[name][1]).strip()
    parser = argparse.ArgumentParser(prog=f"crossfake {name}", description=doc, formatter_class=_Formatter)
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-v: debug)")
    module.add_arguments(parser)
    return parser, module


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    top = build_parser()
    # Split global options from the command and its own arguments.
    idx = next((i for i, a in enumerate(argv) if a in COMMANDS), None)
    if idx is None:
        top.parse_args(argv)  # handles --help/--version, errors on unknown commands
        top.print_help()
        return 2
    top_args = top.parse_args(argv[:idx])
    parser, module = _command_parser(argv[idx])
    args = parser.parse_args(argv[idx + 1 :])
    args.verbose = max(args.verbose, top_args.verbose)
    setup_logging(args.verbose)
    try:
        return int(module.run(args) or 0)
    except CrossfakeError as e:
        print(f"crossfake {argv[idx]}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"crossfake {argv[idx]}: interrupted; finished work is kept, re-run to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
