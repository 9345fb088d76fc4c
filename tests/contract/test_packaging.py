"""The distribution lists every package and maps sim/ and real/ under robot_rl."""

from pathlib import Path

import pytest
import tomllib

pytestmark = pytest.mark.unit
REPO = Path(__file__).resolve().parents[2]


def test_every_package_folder_is_listed():
    setuptools = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    mapping = setuptools["package-dir"]
    listed = set(setuptools["packages"])
    found = {
        ".".join((package, *init.parent.relative_to(REPO / folder).parts))
        for package, folder in mapping.items()
        for init in (REPO / folder).rglob("__init__.py")
    }
    assert found <= listed, (
        f"folders with __init__.py missing from [tool.setuptools] packages: {sorted(found - listed)}"
    )
    assert mapping["robot_rl.sim"] == "sim" and mapping["robot_rl.real"] == "real"
    assert "sim" not in listed and "real" not in listed


def test_ci_runs_the_readme_test_command():
    readme = (REPO / "README.md").read_text()
    ci = (REPO / ".ci" / "run").read_text()
    assert "make test" in readme and "\nmake test\n" in ci
