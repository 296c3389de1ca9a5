"""The package layers of crossfake: no module imports a package above its own.

From the bottom up (a package may import only the packages listed before it, and itself)::

    utils        errors, atomic writes, logging, provenance, YAML configs, worker counts
    executors    where parallel work runs: local processes or a Ray cluster
    evaluation   metrics of a predictions table (numpy/pandas; no torch, no model, no manifest)
    data         corpora, face crops, manifests, splits, audits, pseudo-fakes
    models       backbones (CLIP, Qwen2.5-VL) and their pretraining
    vlm          prompts, answer parsing, verdict scoring, local and HTTP backends
    methods      the detection methods and their registry
    runs         the training config and the run directory (what training writes, scoring reads), the
                 experiment record (what the runner writes, reports read)
    scoring      crop loading, device/precision, feature cache, streaming prediction, score_run
    training     the trainer
    reports      reports and comparisons, rebuilt from saved predictions
    inference    detect one file, faces, the web page
    experiments  experiment configs, the runner, the studies
    cli          the commands (and crossfake/__init__.py, __main__.py)

Besides the order, scoring and evaluation stay apart (:data:`APART`): scoring writes predictions
tables, evaluation measures them, and only the layers above both bring them together.

The static check reads every ``import`` of every source file (function-level and ``TYPE_CHECKING``
imports included: a lazy import hides a cycle, it does not remove it), so adding an upward import anywhere
fails it. The subprocess checks pin what importing a package actually loads.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import crossfake

SRC = Path(crossfake.__file__).parent

LAYERS: list[str] = [
    "utils",
    "executors",
    "evaluation",
    "data",
    "models",
    "vlm",
    "methods",
    "runs",
    "scoring",
    "training",
    "reports",
    "inference",
    "experiments",
    "cli",
]
RANK = {name: i for i, name in enumerate(LAYERS)}
#: Pairs kept apart although the order allows the import: scoring writes predictions tables and
#: evaluation measures them; they meet only above (the trainer, the commands), so neither needs the other.
APART: dict[str, set[str]] = {"scoring": {"evaluation"}}
#: Files directly in crossfake/ belong to the top layer (``__main__`` runs the CLI).
TOP = "cli"


def _package_of(path: Path, root: Path) -> str:
    parts = path.relative_to(root).parts
    return parts[0] if len(parts) > 1 else TOP


def _imported_packages(path: Path, root: Path) -> list[tuple[int, str]]:
    """(line, crossfake package) of every import of a crossfake module in ``path``."""
    module = ".".join(path.relative_to(root.parent).with_suffix("").parts)
    is_package = path.name == "__init__.py"
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                base = module.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                names = [".".join([*base, node.module] if node.module else base)]
            else:
                names = [node.module or ""]
            if names == ["crossfake"]:  # `from crossfake import utils`
                names = [f"crossfake.{alias.name}" for alias in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "crossfake" and len(parts) > 1:
                found.append((node.lineno, parts[1]))
    return found


def upward_imports(root: Path = SRC) -> list[str]:
    """Every import of a package from a lower layer (or of one kept :data:`APART`), as
    ``file:line: importer -> imported``."""
    problems = []
    for path in sorted(root.rglob("*.py")):
        own = _package_of(path, root)
        for line, target in _imported_packages(path, root):
            # A module directly under crossfake/ (``__main__``) counts as the top layer.
            upward = RANK.get(target, RANK[TOP]) > RANK.get(own, RANK[TOP])
            if target != own and (upward or target in APART.get(own, ())):
                problems.append(f"{path.relative_to(root)}:{line}: {own} -> {target}")
    return problems


def test_every_package_has_a_layer() -> None:
    packages = {p.name for p in SRC.iterdir() if (p / "__init__.py").is_file()}
    assert packages <= set(LAYERS), f"place new packages in LAYERS: {sorted(packages - set(LAYERS))}"


def test_no_module_imports_a_higher_layer() -> None:
    assert upward_imports() == []


def test_the_check_catches_an_upward_import(tmp_path: Path) -> None:
    """The rule can fail: a lazy import of the trainer in scoring, or of the CLI in models, is reported."""
    fake = tmp_path / "crossfake"
    for rel, text in {
        "scoring/run.py": "def f():\n    from crossfake.training.loop import train\n",
        "scoring/predict.py": "from crossfake.evaluation.metrics import eer\nfrom crossfake.methods import x\n",
        "models/pretrain/__main__.py": "from crossfake.cli import main\n",
        "evaluation/x.py": "from ..scoring import predict\n",
        "utils/ok.py": "from crossfake.utils import io\nimport crossfake.utils.errors\n",
    }.items():
        (fake / rel).parent.mkdir(parents=True, exist_ok=True)
        (fake / rel).write_text(text)
    assert upward_imports(fake) == [
        "evaluation/x.py:1: evaluation -> scoring",
        "models/pretrain/__main__.py:1: models -> cli",
        "scoring/predict.py:1: scoring -> evaluation",
        "scoring/run.py:2: scoring -> training",
    ]


def _loaded_after_import(module: str) -> set[str]:
    code = f"import sys, {module}; print('\\n'.join(sorted(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(result.stdout.split())


def test_evaluation_is_table_metrics_without_torch() -> None:
    loaded = _loaded_after_import("crossfake.evaluation")
    assert "torch" not in loaded
    assert not {
        m for m in loaded if m.startswith(("crossfake.scoring", "crossfake.training", "crossfake.methods"))
    }


def test_scoring_loads_neither_the_trainer_nor_the_metrics() -> None:
    loaded = _loaded_after_import("crossfake.scoring")
    above = (
        "crossfake.training",
        "crossfake.evaluation",
        "crossfake.experiments",
        "crossfake.cli",
        "crossfake.inference",
        "crossfake.reports",
    )
    assert not {m for m in loaded if m.startswith(above)}
