"""The package's folders are its layers, in the order data flows; no module imports from a layer
after its own (docs/architecture.md)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "robdrop"
LAYERS = ("data", "models", "attacks", "methods", "training", "analysis", "study", "cli")


def layer_of(module: str) -> int | None:
    """The layer of `robdrop.<part>...` (None for the package root, e.g. its version)."""
    parts = module.split(".")
    if parts[0] != "robdrop" or len(parts) == 1:
        return None
    name = "cli" if parts[1] in ("cli", "__main__") else parts[1]
    if name not in LAYERS:
        raise AssertionError(f"{module} is in no layer; add it to a layer folder")
    return LAYERS.index(name)


def imports(path: Path) -> list[str]:
    """Every robdrop module `path` imports, wherever the import statement is."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found += [f"{node.module}.{alias.name}" for alias in node.names]
    return [m for m in found if m.split(".")[0] == "robdrop"]


MODULES = sorted(p for p in PACKAGE.rglob("*.py") if p.name != "__init__.py" or p.parent != PACKAGE)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_import_runs_against_the_flow_of_data(path: Path) -> None:
    module = ".".join(("robdrop", *path.relative_to(PACKAGE).with_suffix("").parts))
    own = layer_of(module)
    later = [m for m in imports(path) if (layer_of(m) or 0) > own]
    assert not later, f"{module} (layer {LAYERS[own]}) imports from later layers: {later}"


def test_every_module_sits_in_a_layer() -> None:
    top = {p.stem for p in PACKAGE.glob("*.py")} | {p.name for p in PACKAGE.iterdir() if p.is_dir()}
    assert top - {"__init__", "__main__", "__pycache__"} == set(LAYERS)
