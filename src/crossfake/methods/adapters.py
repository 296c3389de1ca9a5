"""What the LoRA methods share about peft's adapters: how their parameters are named and counted.

peft names every LoRA weight it injects ``…lora_A…`` / ``…lora_B…`` (and ``lora_embedding_*``,
``lora_magnitude_vector`` for variants), so the prefix picks the adapters out of a model's parameters
whatever model they were injected into (the CLIP of :mod:`~crossfake.methods.lora`, the Qwen2.5-VL of
:mod:`~crossfake.methods.vlm_qlora`).
"""

from __future__ import annotations

from collections.abc import Iterator

from torch import nn

#: The prefix of every parameter name peft gives a LoRA adapter.
LORA_PREFIX = "lora_"


def lora_parameters(module: nn.Module) -> Iterator[tuple[str, nn.Parameter]]:
    """The (name, parameter) pairs of the LoRA adapters injected into ``module``."""
    return ((name, p) for name, p in module.named_parameters() if LORA_PREFIX in name)
