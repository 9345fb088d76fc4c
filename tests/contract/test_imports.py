"""Import isolation and layering (ARCHITECTURE §2)."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import robot_rl

pytestmark = pytest.mark.unit
ROOT = Path(robot_rl.__file__).resolve().parent
HEAVY = ("mujoco", "robosuite", "rclpy", "transformers")


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd="/", timeout=120)


def test_import_robot_rl_is_light():
    out = _run(f"import sys, robot_rl; print([m for m in {HEAVY!r} if m in sys.modules])")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_every_core_module_imports_with_heavy_packages_blocked():
    modules = sorted(
        "robot_rl." + ".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        for p in ROOT.rglob("*.py")
        if "cli" not in p.parts
    )
    modules = [m.rstrip(".") for m in modules]
    code = (
        "import sys, importlib\n"
        f"for name in {HEAVY!r}: sys.modules[name] = None\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        "print('ok')"
    )
    out = _run(code)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


def test_bare_sim_and_real_are_not_installed():
    out = _run("import importlib.util as u; print(u.find_spec('sim'), u.find_spec('real'))")
    assert out.stdout.strip() == "None None", out.stdout + out.stderr


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


# layer -> packages it must not import (ARCHITECTURE §2: imports run one way, down the table)
FORBIDDEN = {
    "core": (
        "robot_rl.algos",
        "robot_rl.policies",
        "robot_rl.rewards",
        "robot_rl.data",
        "robot_rl.teleop",
        "robot_rl.deploy",
        "robot_rl.cli",
        "robot_rl.sim",
        "robot_rl.real",
        "hydra",
        "mujoco",
        "rclpy",
        "robosuite",
    ),
    "algos": ("robot_rl.cli", "robot_rl.real", "rclpy", "hydra", "mujoco"),
    "policies": ("robot_rl.cli", "robot_rl.real", "robot_rl.algos", "rclpy", "hydra", "mujoco"),
    "rewards": ("robot_rl.cli", "robot_rl.real", "rclpy", "hydra"),
    "data": ("robot_rl.cli", "robot_rl.real", "rclpy", "hydra"),
    "teleop": ("robot_rl.cli", "robot_rl.real", "rclpy", "hydra"),
    "deploy": ("robot_rl.cli", "robot_rl.real", "rclpy", "hydra", "mujoco"),
}


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_layers_import_only_downwards(layer):
    offenders = []
    for path in (ROOT / layer).rglob("*.py"):
        for name in _imports(path):
            if name.startswith(FORBIDDEN[layer]):
                offenders.append(f"{path.relative_to(ROOT)} imports {name}")
    assert not offenders, offenders


def test_hydra_only_in_cli():
    offenders = [
        str(p.relative_to(ROOT))
        for p in ROOT.rglob("*.py")
        if "cli" not in p.parts and any(n.startswith(("hydra", "omegaconf")) for n in _imports(p))
    ]
    assert not offenders, offenders


def test_require_names_the_extra():
    from robot_rl.core.optional import require

    with pytest.raises(ImportError, match=r"install robot-rl\[ros\] to use the policy node"):
        sys.modules["rclpy"] = None  # type: ignore[assignment]
        try:
            require("rclpy", "the policy node")
        finally:
            del sys.modules["rclpy"]
