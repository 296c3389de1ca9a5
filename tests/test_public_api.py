"""The package's public entry points (``crossfake.__all__``): each resolves, and ``import crossfake`` is light."""

from __future__ import annotations

import subprocess
import sys

import pytest

import crossfake


@pytest.mark.parametrize("name", [n for n in crossfake.__all__ if n != "__version__"])
def test_every_public_name_resolves(name: str) -> None:
    value = getattr(crossfake, name)
    assert callable(value), name
    assert name in dir(crossfake)


def test_unknown_names_raise_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'score_everything'"):
        crossfake.score_everything  # noqa: B018


def test_import_crossfake_loads_no_torch() -> None:
    code = "import sys, crossfake; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
