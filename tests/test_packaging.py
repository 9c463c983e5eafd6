"""The distribution's import names: the folders verifiers/ and seeds/ install as
`selfplay_verifiers` and `selfplay_seeds`, never as the generic `verifiers` / `seeds` (a popular
PyPI package for the same audience is called `verifiers`; installing both would break one)."""
import ast
import subprocess
import sys
import zipfile
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]
IMPORT_NAMES = {"selfplay", "selfplay_seeds", "selfplay_verifiers"}


def test_the_built_wheel_installs_only_selfplay_names(tmp_path):
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                        "-q", "-w", str(tmp_path), str(ROOT)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    [wheel] = tmp_path.glob("selfplay-*.whl")
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        [top_level] = [n for n in names if n.endswith(".dist-info/top_level.txt")]
        declared = set(z.read(top_level).decode().split())
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith((".dist-info", ".data"))}
    assert declared == tops == IMPORT_NAMES
    # every module of the folders is in the wheel, under its import name
    for name, folder in (("selfplay_verifiers", "verifiers"), ("selfplay_seeds", "seeds")):
        for py in (ROOT / folder).glob("*.py"):
            assert f"{name}/{py.name}" in names, py
    # the shipped out-of-distribution eval set and its licence (selfplay_seeds/ood.py reads them)
    for data in (ROOT / "seeds" / "data").iterdir():
        assert f"selfplay_seeds/data/{data.name}" in names, data


def test_every_subpackage_is_listed():
    """pyproject lists the packages by hand (package-dir maps two of them): a new subpackage of
    selfplay/ that is not listed would be missing from an installed (non-editable) copy."""
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {p.parent.relative_to(ROOT).as_posix().replace("/", ".") for p in (ROOT / "selfplay").rglob("__init__.py")}
    assert listed == found | {"selfplay_seeds", "selfplay_verifiers"}


def test_no_code_imports_the_old_names():
    """From the repository root `import verifiers` still finds the folder, which would load a
    second copy of the package beside `selfplay_verifiers`: no file may use the old names."""
    hits = []
    for folder in ("selfplay", "seeds", "verifiers", "tests", "bench", "scripts"):
        for f in sorted((ROOT / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(f.read_text())):
                mods = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                    [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else []
                hits += [f"{f.relative_to(ROOT)}:{node.lineno} {m}" for m in mods
                         if m.split(".")[0] in ("verifiers", "seeds")]
    assert not hits, "\n".join(hits)
