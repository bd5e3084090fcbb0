"""The notebooks in analysis/ open as users open them (`jupyter lab analysis/`): each declares a
kernel that the install provides (ipykernel's, found by Jupyter's KernelSpecManager), whose
interpreter imports robdrop. Running them is test_reproduce.py's job."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

jupyter_client = pytest.importorskip("jupyter_client", reason="needs the notebooks extra")

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "analysis").glob("*.ipynb"))


def test_there_are_notebooks():
    assert len(NOTEBOOKS) >= 6


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_declares_an_installed_python_kernel(notebook: Path):
    kernelspec = json.loads(notebook.read_text())["metadata"].get("kernelspec")
    assert kernelspec, f"{notebook.name} declares no kernel"
    found = jupyter_client.kernelspec.KernelSpecManager().find_kernel_specs()
    assert kernelspec["name"] in found, f"kernel {kernelspec['name']} is not installed: {found}"
    assert kernelspec.get("language", "python") == "python"


def test_the_kernel_interpreter_imports_robdrop():
    spec = jupyter_client.kernelspec.KernelSpecManager().get_kernel_spec("python3")
    assert spec.argv[1:3] == ["-m", "ipykernel_launcher"]
    # jupyter_client starts "python" as the interpreter it runs in
    python = sys.executable if spec.argv[0] in ("python", "python3") else spec.argv[0]
    assert shutil.which(python) or Path(python).is_file()
    done = subprocess.run(
        [python, "-c", "import ipykernel, robdrop"],
        cwd=NOTEBOOKS[0].parent,  # where `jupyter lab analysis/` starts kernels
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr


def test_the_install_paths_bring_jupyterlab_and_the_readme_names_them():
    import tomllib

    root = NOTEBOOKS[0].parents[1]
    extras = tomllib.loads((root / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    assert any(d.startswith("jupyterlab") for d in extras["notebooks"])
    assert any(d.startswith("ipykernel") for d in extras["notebooks"])
    assert "- jupyterlab" in (root / "environment.yml").read_text()
    readme = (root / "README.md").read_text()
    assert '".[dev,notebooks]"' in readme and "jupyter lab analysis/" in readme
