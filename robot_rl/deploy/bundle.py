"""Policy bundles: a folder with everything needed to act (README, "Python API"; docs/policies.md).

::

    bundle/
      bundle.json                 format version, policy kind and config, observation/action spec,
                                  action bounds, control rate, chunk and execution horizon,
                                  library versions, config hash, file list
      model.safetensors           policy weights (without normalization statistics)
      normalization.safetensors   normalization statistics (identical in sim and on the robot)
      config.yaml                 the resolved run config that produced it

``load_policy(path)`` rebuilds the policy from ``bundle.json`` through the ``POLICIES`` registry and
loads weights with safetensors only (no pickle). Every problem is a :class:`BundleError` naming the
file and the mismatch.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import platform
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from robot_rl.core.errors import BundleError
from robot_rl.core.types import ActionSpec, ObsSpec

BUNDLE_FORMAT = 1
MODEL_FILE = "model.safetensors"
NORMALIZATION_FILE = "normalization.safetensors"


def _is_normalization(key: str) -> bool:
    """Normalization statistics live in modules named ``*normalizer`` (``normalizer.*``,
    ``action_normalizer.*``, nested ``base.normalizer.*``)."""
    return any(part.endswith("normalizer") for part in key.split(".")[:-1])


def config_hash(config_yaml: str) -> str:
    return hashlib.sha256(config_yaml.encode()).hexdigest()[:16]


def _library_versions() -> dict[str, str]:
    import robot_rl

    return {
        "robot_rl": robot_rl.__version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }


def save_bundle(
    path: str | Path,
    policy: torch.nn.Module,
    control_hz: float = 20.0,
    config_yaml: str = "",
    task: str = "",
) -> Path:
    """Write ``policy`` (a registered policy with ``cfg``, ``obs_spec``, ``action_spec``) as a bundle.

    The folder is written under a temporary name and renamed: a crash never leaves a half bundle.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    state = {k: v.detach().cpu().contiguous() for k, v in policy.state_dict().items()}
    weights = {k: v for k, v in state.items() if not _is_normalization(k)}
    norm = {k: v for k, v in state.items() if _is_normalization(k)}
    save_file(weights, str(tmp / MODEL_FILE))
    save_file(norm, str(tmp / NORMALIZATION_FILE))
    cfg = policy.cfg
    meta = {
        "format_version": BUNDLE_FORMAT,
        "policy": cfg.name,
        "policy_config": dataclasses.asdict(cfg),
        "obs_spec": policy.obs_spec.to_json(),
        "action_spec": policy.action_spec.to_json(),
        "control_hz": control_hz,
        "chunk_size": cfg.chunk_size,
        "execution_horizon": cfg.execution_horizon,
        "task": task,
        "library_versions": _library_versions(),
        "config_hash": config_hash(config_yaml),
        "files": [MODEL_FILE, NORMALIZATION_FILE, "config.yaml"],
    }
    (tmp / "config.yaml").write_text(config_yaml)
    (tmp / "bundle.json").write_text(json.dumps(meta, indent=2))
    if path.exists():
        shutil.rmtree(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tmp, path)
    return path


def read_bundle_meta(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    meta_path = path / "bundle.json"
    if not path.is_dir():
        raise BundleError(f"bundle folder {path} does not exist")
    if not meta_path.is_file():
        raise BundleError(f"missing file {meta_path}")
    try:
        meta = json.loads(meta_path.read_text())
    except json.JSONDecodeError as err:
        raise BundleError(f"corrupt file {meta_path}: {err}") from err
    version = meta.get("format_version")
    if version != BUNDLE_FORMAT:
        raise BundleError(
            f"{meta_path}: bundle format {version} is incompatible "
            f"(this robot-rl reads format {BUNDLE_FORMAT})"
        )
    for key in ("policy", "policy_config", "obs_spec", "action_spec"):
        if key not in meta:
            raise BundleError(f"{meta_path}: missing field {key!r}")
    return meta


def _load_tensors(file: Path) -> dict[str, torch.Tensor]:
    if not file.is_file():
        raise BundleError(f"missing file {file}")
    try:
        return load_file(str(file))
    except Exception as err:  # safetensors raises several error types for corrupt headers
        raise BundleError(f"corrupt file {file}: {err}") from err


def _check_shapes(file: Path, expected: dict[str, torch.Tensor], found: dict[str, torch.Tensor]) -> None:
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    if missing or unexpected:
        raise BundleError(f"{file}: missing tensors {missing[:5]}, unexpected tensors {unexpected[:5]}")
    for key, tensor in expected.items():
        if tuple(found[key].shape) != tuple(tensor.shape):
            raise BundleError(
                f"{file}: tensor {key!r} has shape {tuple(found[key].shape)}, "
                f"the bundle's policy config expects {tuple(tensor.shape)}"
            )


def load_policy(path: str | Path, device: str | torch.device = "cpu") -> Any:
    """Load any bundle (base or refined, any algorithm) as a ready-to-act policy in eval mode."""
    from robot_rl.core.registry import UnknownNameError
    from robot_rl.policies import POLICIES

    path = Path(path)
    meta = read_bundle_meta(path)
    try:
        policy_cls = POLICIES.get(meta["policy"])
        cfg_cls = POLICIES.config_cls(meta["policy"])
    except UnknownNameError as err:
        raise BundleError(f"{path / 'bundle.json'}: {err}") from err
    try:
        cfg = cfg_cls(**meta["policy_config"])
    except (TypeError, ValueError) as err:
        raise BundleError(f"{path / 'bundle.json'}: invalid policy_config: {err}") from err
    policy = policy_cls(cfg, ObsSpec.from_json(meta["obs_spec"]), ActionSpec.from_json(meta["action_spec"]))
    expected = policy.state_dict()
    weights = _load_tensors(path / MODEL_FILE)
    norm = _load_tensors(path / NORMALIZATION_FILE)
    _check_shapes(path / MODEL_FILE, {k: v for k, v in expected.items() if not _is_normalization(k)}, weights)
    _check_shapes(
        path / NORMALIZATION_FILE, {k: v for k, v in expected.items() if _is_normalization(k)}, norm
    )
    state = {**weights, **norm}
    policy.load_state_dict(state)
    policy.bundle_meta = meta
    return policy.to(device).eval()
