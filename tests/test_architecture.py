"""The map of docs/architecture.md holds: layers, no cycles, no upward names in strings, imports at the top.

The layering and cycle rules are import-linter contracts in pyproject.toml (`lint-imports`); the
two checks it cannot make (a lower layer naming an upper one in a string, e.g. a module to
import by name; project imports hidden inside functions) are read from the source here.
"""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ["plumbing", "data_shards", "pretrain", "finetune", "slurm"]  # bottom first
# Entry points whose commands import their work lazily, so that `--help` stays fast.
LAZY_IMPORTS_ALLOWED = {"cli.py", "__main__.py"}


def modules_of(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def docstring_nodes(tree: ast.Module) -> set[int]:
    """ids of the string constants that are docstrings (module, class, function)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
                found.add(id(first.value))
    return found


def test_import_contracts_hold() -> None:
    """Layers, the model's independence from the trainer, and no cycles (import-linter, pyproject.toml)."""
    command = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or "lint-imports"
    done = subprocess.run([command, "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "broken" in done.stdout and " 0 broken" in done.stdout


def test_no_lower_layer_names_an_upper_one_in_a_string() -> None:
    """A module path of an upper layer in a lower layer's code (e.g. a loader imported by name) hides an upward dependency."""
    offences = []
    for depth, package in enumerate(LAYERS):
        upper = "|".join(LAYERS[depth + 1 :])
        if not upper:
            continue
        pattern = re.compile(rf"\b({upper})\.[a-z_]+")
        for path in modules_of(package):
            tree = ast.parse(path.read_text())
            docstrings = docstring_nodes(tree)
            for node in ast.walk(tree):
                if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings and pattern.search(node.value):
                    offences.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.value!r}")
    assert not offences, "lower layers name upper ones:\n" + "\n".join(offences)


def test_project_imports_sit_at_the_top_of_modules() -> None:
    """Only command-line entry points import project modules inside functions (for a fast --help)."""
    offences = []
    for package in LAYERS:
        for path in modules_of(package):
            if path.name in LAZY_IMPORTS_ALLOWED or path == ROOT / "pretrain" / "__init__.py":
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    continue
                for inner in ast.walk(node):
                    names = [inner.module or ""] if isinstance(inner, ast.ImportFrom) else [a.name for a in getattr(inner, "names", [])] if isinstance(inner, ast.Import) else []
                    if any(name.split(".")[0] in LAYERS for name in names):
                        offences.append(f"{path.relative_to(ROOT)}:{inner.lineno}")
    assert not offences, "project imports inside functions:\n" + "\n".join(offences)
