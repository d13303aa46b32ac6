"""The package's layers hold: a lower layer never imports a higher one.

Layers, bottom up: the top-level helpers (paths, files, names), env (no torch),
lm, adapters, directions, grpo, train (the data-parallel entry over grpo), figures. Imports inside functions count too: a
lazy import that climbs a layer is still a dependency, only a hidden one.
Modules that promise not to import torch keep that promise.
"""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "vgrout"
LAYERS = ("", "env", "lm", "adapters", "directions", "grpo", "train", "figures")


def layer_of(module: str) -> int:
    """The layer index of a dotted vgrout module name ('' for top-level modules)."""
    parts = module.split(".")
    sub = parts[1] if len(parts) > 2 or (len(parts) == 2 and parts[1] in LAYERS) else ""
    if sub not in LAYERS:
        raise AssertionError(f"{module}: not in a known layer {LAYERS}")
    return LAYERS.index(sub)


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, module) for every vgrout import in the file, relative ones resolved."""
    tree = ast.parse(path.read_text())
    here = module_name(path).split(".")
    if path.name != "__init__.py":
        here = here[:-1]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names if a.name.startswith("vgrout")]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[: len(here) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if mod == "vgrout":  # from vgrout import paths, files
                out += [(node.lineno, f"vgrout.{a.name}") for a in node.names]
            elif mod.startswith("vgrout"):
                out.append((node.lineno, mod))
    return out


def exists(module: str) -> bool:
    base = PACKAGE.parent.joinpath(*module.split("."))
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def test_no_layer_imports_a_higher_one():
    bad = []
    for path in sorted(PACKAGE.rglob("*.py")):
        mine = layer_of(module_name(path))
        for line, mod in imported_modules(path):
            where = f"{path.relative_to(PACKAGE.parent)}:{line}"
            if not exists(mod):
                bad.append(f"{where} imports {mod}, which does not exist")
            elif layer_of(mod) > mine:
                bad.append(f"{where} imports {mod}")
    assert not bad, "imports that climb a layer:\n" + "\n".join(bad)


def test_the_layer_check_sees_a_climbing_import(tmp_path):
    """The check above would catch a violation (it is not vacuous)."""
    seen = {m for _, m in imported_modules(PACKAGE / "grpo" / "loop.py")}
    assert "vgrout.lm.load" in seen  # a lazy import inside a function is seen
    assert "vgrout.grpo.rundir" in seen
    assert layer_of("vgrout.grpo.loop") > layer_of("vgrout.lm.tokens") > layer_of("vgrout.env")
    assert layer_of("vgrout.paths") == 0 and layer_of("vgrout.figures") == LAYERS.index("figures")


@pytest.mark.parametrize(
    "module",
    [
        "vgrout.env",
        "vgrout.env.pairs",
        "vgrout.env.trl",
        "vgrout.directions.metrics",
        "vgrout.files",
        "vgrout.names",
        "vgrout.figures.stats",
    ],  # fmt: skip
)
def test_module_imports_without_torch(module):
    code = f"import sys, {module}; assert 'torch' not in sys.modules, 'torch was imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
