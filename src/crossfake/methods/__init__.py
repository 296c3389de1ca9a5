"""Detection methods, created by name through :func:`create_detector`: one module each (a package where
a method has parts, as ``effort``), beside what they share (``base``, ``clip_base``, ``adapters``).

Importing this package registers every method. Adding one means adding a module that defines a
config (a :class:`MethodConfig` subclass) and a detector decorated with ``@register_method("name")``, and
importing it below; nothing else changes.
"""

from crossfake.methods import effort as _effort  # noqa: F401
from crossfake.methods import layernorm as _layernorm  # noqa: F401
from crossfake.methods import linear_probe as _linear_probe  # noqa: F401
from crossfake.methods import lora as _lora  # noqa: F401
from crossfake.methods import prompt_tuning as _prompt_tuning  # noqa: F401
from crossfake.methods import reprogramming as _reprogramming  # noqa: F401
from crossfake.methods import visual_prompt as _visual_prompt  # noqa: F401
from crossfake.methods import vlm_qlora as _vlm_qlora  # noqa: F401
from crossfake.methods import vlm_zero_shot as _vlm_zero_shot  # noqa: F401
from crossfake.methods.base import Detector, MethodConfig
from crossfake.methods.registry import create_detector, list_methods, method_class, method_config

__all__ = ["Detector", "MethodConfig", "create_detector", "list_methods", "method_class", "method_config"]
