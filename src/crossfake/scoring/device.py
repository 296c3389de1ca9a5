"""Where a detector runs and in which precision: one rule for every command that scores or trains.

``crossfake evaluate``, ``crossfake detect``, the experiment runner and the trainer's validation scoring
used to pick their device and autocast each in their own words; they now all ask here.
"""

from __future__ import annotations

import torch

from crossfake.methods.base import Detector
from crossfake.utils.errors import CrossfakeError

DEVICES = ("auto", "cpu", "cuda")


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """The device to score on: ``auto`` (or None) is CUDA when a CUDA device is visible, else the CPU.

    ``cuda`` (or ``cuda:N``) without a visible CUDA device is an error, never a silent fall back to the CPU.
    """
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise CrossfakeError(f"device {str(device)!r} asked for, but no CUDA device is visible")
    return resolved


def detector_device(detector: Detector) -> torch.device:
    """The device of a detector's weights; the CPU for one without parameters (a VLM behind an HTTP server)."""
    param = next(detector.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


def resolve_precision(precision: str, device: torch.device) -> str:
    """``auto`` -> ``bf16`` on a CUDA device with bf16 support, ``fp32`` elsewhere (bf16 is slow on CPUs)."""
    if precision != "auto":
        return precision
    return "bf16" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "fp32"


def autocast(device: torch.device, precision: str) -> torch.autocast:
    """The autocast context of a resolved ``precision`` (``bf16``: bfloat16 autocast; ``fp32``: none)."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")
