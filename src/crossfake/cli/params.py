"""Print a method's trainable and total parameters, built without weights (no download, seconds).

The detector is built on the meta device from the backbone's real architecture (its config on disk, or
the known shapes of the OpenAI CLIP checkpoints), so the counts are exact at full size. Trainable
parameters are listed by part (e.g. LoRA adapters and head), then summed; the percentage is trainable /
total, where total is every parameter of the detector: the whole backbone (both CLIP towers) plus what the
method adds. That is peft's convention and reproduces the seed report's 0.77% for CLIP + LoRA.

Method options are the fields of the method's config, given as --name value (dashes or underscores);
list options take several values. Unset options keep the method's defaults.

The backbone's shape is read from its config on disk, or, for the OpenAI checkpoints, from shapes crossfake
knows offline: ViT-B/32 (the default), ViT-B/16 and ViT-L/14 (--backbone ViT-L/14, or its hub id), the
size most papers beyond the seeds (Effort, GenD, CLIPping the Deception) report their counts at.

Examples:
  crossfake params --method lora                      # 1,179,648 adapter + 513 head parameters
  crossfake params --method lora --r 8 --alpha 64     # report 2's best LoRA
  crossfake params --method visual_prompt --prompt-size 120
  crossfake params --method effort --backbone ViT-L/14   # Effort's 196,704 residual parameters ("0.19M")
  crossfake params --all --json
"""

from __future__ import annotations

import argparse
import json
import typing
from typing import Any

from crossfake.methods import Detector, create_detector, list_methods, method_class
from crossfake.utils.errors import CrossfakeError

# Config fields with their own flags (or none), so they are not offered as method options.
_NOT_OPTIONS = {"method", "backbone"}
# Namespace prefix of method options: keeps a config field from colliding with this command's own flags.
_PREFIX = "method_option:"


def _method_fields() -> dict[str, list[tuple[str, Any]]]:
    """Config field name -> [(method, pydantic FieldInfo)] over every registered method."""
    fields: dict[str, list[tuple[str, Any]]] = {}
    for name in list_methods():
        for field, info in method_class(name).config_class.model_fields.items():
            if field not in _NOT_OPTIONS:
                fields.setdefault(field, []).append((name, info))
    return fields


def add_arguments(parser: argparse.ArgumentParser) -> None:
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--method", help=f"registered method ({', '.join(list_methods())})")
    which.add_argument("--all", action="store_true", help="a table of every method at its default options")
    parser.add_argument("--backbone", help="backbone spec: a hub id, local-dir:PATH, or ViT-B/32, ViT-B/16, ViT-L/14 "
                                           "(known offline); unset: the method's own (the OpenAI ViT-B/32)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    group = parser.add_argument_group("method options", "fields of the method's config; unset ones keep "
                                                        "the method's defaults")
    for field, owners in sorted(_method_fields().items()):
        # Subclasses that only change a default may drop the description; take the first one given.
        info = next((i for _, i in owners if i.description), owners[0][1])
        flags = dict.fromkeys([f"--{field.replace('_', '-')}", f"--{field}"])  # ordered, no duplicates
        defaults = ", ".join(f"{m}: {_show(i.default)}" for m, i in owners)
        is_list = typing.get_origin(info.annotation) in (list, tuple)
        # Values stay strings: the method's pydantic config converts and validates them.
        group.add_argument(*flags, dest=_PREFIX + field, default=argparse.SUPPRESS,
                           nargs="+" if is_list else None, metavar=field.upper(),
                           help=f"{info.description or field} ({defaults})")


def _show(value: Any) -> str:
    return json.dumps(list(value)) if isinstance(value, list | tuple) else str(value)


def parameter_report(detector: Detector) -> dict[str, Any]:
    """Counts of a built detector: trainable parts, trainable, frozen, total and trainable percent.

    Parts come from the detector's ``parameter_breakdown()``; any difference from the trainable total is
    listed, never hidden.
    """
    trainable, total = detector.parameter_counts()
    parts = dict(detector.parameter_breakdown())
    rest = trainable - sum(parts.values())
    if rest:
        parts["other trainable"] = rest
    config = detector.config
    return {
        "method": config.method,
        "backbone": config.backbone,
        "options": config.model_dump(mode="json", exclude=_NOT_OPTIONS),
        "parts": [{"name": name, "params": n, "percent": _percent(n, total)} for name, n in parts.items()],
        "trainable": trainable,
        "frozen": total - trainable,
        "total": total,
        "percent": _percent(trainable, total),
    }


def _percent(n: int, total: int) -> float:
    return 100.0 * n / total if total else 0.0


def run(args: argparse.Namespace) -> int:
    options = {k[len(_PREFIX):]: v for k, v in vars(args).items() if k.startswith(_PREFIX)}
    if args.all:
        if options:
            raise CrossfakeError(f"--all counts every method at its defaults; drop "
                                 f"{', '.join('--' + k for k in options)} or use --method")
        reports = []
        for name in list_methods():
            # One method whose shapes are unavailable here must not hide the others' counts.
            try:
                reports.append(parameter_report(create_detector(name, weights=False, backbone=args.backbone)))
            except CrossfakeError as e:
                reports.append({"method": name, "error": str(e)})
        if args.json:
            print(json.dumps(reports, indent=2))
        else:
            print(_table(reports))
        return 1 if any("error" in r for r in reports) else 0
    report = parameter_report(create_detector(args.method, weights=False, backbone=args.backbone, **options))
    print(json.dumps(report, indent=2) if args.json else _describe(report))
    return 0


def _describe(report: dict[str, Any]) -> str:
    options = " ".join(f"{k}={_show(v)}" for k, v in report["options"].items())
    rows = [(f"  {p['name']}", f"{p['params']:,}", f"{p['percent']:.4f}%") for p in report["parts"]]
    rows += [
        ("trainable", f"{report['trainable']:,}", f"{report['percent']:.4f}%"),
        ("frozen", f"{report['frozen']:,}", ""),
        ("total", f"{report['total']:,}", ""),
    ]
    w0 = max(len(r[0]) for r in rows)
    w1 = max(len(r[1]) for r in rows)
    lines = [f"{report['method']} on {report['backbone']} (built without loading weights)",
             f"options: {options}", "trainable parts (percent of total):"]
    lines += [f"{a:<{w0}}  {b:>{w1}}  {c}".rstrip() for a, b, c in rows]
    return "\n".join(lines)


def _table(reports: list[dict[str, Any]]) -> str:
    header = ("method", "trainable", "total", "trainable %", "trainable parts")
    rows = []
    for r in reports:
        if "error" in r:
            rows.append((r["method"], "-", "-", "-", f"error: {r['error']}"))
            continue
        parts = " + ".join(f"{p['name']} {p['params']:,}" for p in r["parts"])
        rows.append((r["method"], f"{r['trainable']:,}", f"{r['total']:,}", f"{r['percent']:.4f}%", parts))
    w = [max(len(row[i]) for row in (header, *rows)) for i in range(4)]
    return "\n".join(f"{a:<{w[0]}}  {b:>{w[1]}}  {c:>{w[2]}}  {d:>{w[3]}}  {e}".rstrip()
                     for a, b, c, d, e in (header, *rows))
