"""The dependency rules of the code layout (README "Code layout"), checked by import-linter with
the contracts in pyproject.toml: layers data flows down through, no cycles between sibling
modules or packages, verifiers standalone. Plus: the project's own imports sit at the top of
files (heavy optional extras such as torch, trl, vllm and ray may stay inside functions)."""
from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINT = Path(sys.executable).parent / "lint-imports"
# the project's import names and the folders they are installed from (pyproject [tool.setuptools])
PACKAGES = {"selfplay": "selfplay", "selfplay_seeds": "seeds", "selfplay_verifiers": "verifiers"}
OWN = tuple(PACKAGES)


def _lint(cwd: Path, pythonpath: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(pythonpath)} if pythonpath else None
    return subprocess.run([str(LINT), "--no-cache"], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_the_import_contracts_hold():
    p = _lint(ROOT)
    assert p.returncode == 0, p.stdout[-4000:] + p.stderr[-2000:]
    assert "3 kept, 0 broken" in p.stdout


def test_a_climbing_import_breaks_the_contract(tmp_path):
    """The contract is not vacuous: a core module importing the CLI (a layer climb and a cycle)
    fails it, naming the import."""
    for name, folder in PACKAGES.items():
        shutil.copytree(ROOT / folder, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    rng = tmp_path / "selfplay" / "core" / "rng.py"
    rng.write_text(rng.read_text() + "\nimport selfplay.cli.main  # noqa: E402,F401\n")
    p = _lint(tmp_path, pythonpath=tmp_path)
    assert p.returncode != 0
    assert "selfplay.core.rng -> selfplay.cli.main" in p.stdout
    assert "No cycles are allowed in selfplay" in p.stdout


def _function_imports(path: Path) -> list[str]:
    found = []
    for fn in ast.walk(ast.parse(path.read_text())):
        if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for node in ast.walk(fn):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in OWN:
                found.append(f"{path.relative_to(ROOT)}:{node.lineno} from {node.module}")
            elif isinstance(node, ast.Import):
                found += [f"{path.relative_to(ROOT)}:{node.lineno} import {a.name}" for a in node.names
                          if a.name.split(".")[0] in OWN]
    return found


def test_project_imports_are_at_the_top_of_files():
    """An import of the project's own modules inside a function hides a dependency (it used to
    dodge import cycles). verifiers/ keeps its worker-process entry points' imports local, so it
    is not checked here."""
    found = [hit for pkg in ("selfplay", "seeds") for f in sorted((ROOT / pkg).rglob("*.py"))
             for hit in _function_imports(f)]
    assert not found, "\n".join(found)
