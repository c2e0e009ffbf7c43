"""The map of docs/architecture.md holds: layers, no cycles, no upward or sideways names in strings, imports at the top.

The layering and cycle rules are import-linter contracts in pyproject.toml (`lint-imports`); the
two checks it cannot make (a lower layer naming an upper one in a string, e.g. a module to
import by name; project imports hidden inside functions) are read from the source here.
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LEVELS = [["plumbing"], ["data_shards"], ["face_core"], ["pretrain", "finetune"], ["slurm"]]  # bottom first; siblings share a level
PACKAGES = [package for level in LEVELS for package in level]
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


def names_it_must_not_use(package: str) -> list[str]:
    """The packages above ``package`` and its siblings on the same level."""
    depth = next(i for i, level in enumerate(LEVELS) if package in level)
    return [other for level in LEVELS[depth:] for other in level if other != package]


def test_no_package_names_an_upper_or_sibling_one_in_a_string() -> None:
    """A module path of an upper layer or a sibling stage in code (e.g. a loader imported by name) hides a dependency the contracts forbid."""
    offences = []
    for package in PACKAGES:
        forbidden = names_it_must_not_use(package)
        if not forbidden:
            continue
        pattern = re.compile(rf"\b({'|'.join(forbidden)})\.[a-z_]+")
        for path in modules_of(package):
            tree = ast.parse(path.read_text())
            docstrings = docstring_nodes(tree)
            for node in ast.walk(tree):
                if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings and pattern.search(node.value):
                    offences.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.value!r}")
    assert not offences, "packages name upper or sibling ones:\n" + "\n".join(offences)


def test_the_contracts_fail_when_broken(tmp_path: Path) -> None:
    """A copy of the tree where finetune imports pretrain breaks the sibling contract: the check can fail."""
    for package in PACKAGES:
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    (tmp_path / "finetune" / "losses.py").write_text((ROOT / "finetune" / "losses.py").read_text() + "\nimport pretrain.config  # noqa\n")
    command = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or "lint-imports"
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    done = subprocess.run([command, "--no-cache"], cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode != 0
    assert "finetune.losses -> pretrain.config" in done.stdout


def test_project_imports_sit_at_the_top_of_modules() -> None:
    """Only command-line entry points import project modules inside functions (for a fast --help)."""
    offences = []
    for package in PACKAGES:
        for path in modules_of(package):
            if path.name in LAZY_IMPORTS_ALLOWED or path == ROOT / "face_core" / "__init__.py":
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    continue
                for inner in ast.walk(node):
                    names = [inner.module or ""] if isinstance(inner, ast.ImportFrom) else [a.name for a in getattr(inner, "names", [])] if isinstance(inner, ast.Import) else []
                    if any(name.split(".")[0] in PACKAGES for name in names):
                        offences.append(f"{path.relative_to(ROOT)}:{inner.lineno}")
    assert not offences, "project imports inside functions:\n" + "\n".join(offences)
