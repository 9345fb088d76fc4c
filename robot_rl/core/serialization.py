"""Pickle-free save/load of nested state (dicts, lists, tensors, arrays, scalars).

A state tree such as ``{"actor": module.state_dict(), "optim": opt.state_dict(), "step": 10}`` is
split into
- ``<name>.safetensors``: every tensor and ndarray leaf, keyed by its path in the tree, and
- ``<name>.json``: the tree's skeleton, with leaves that are tensors/arrays replaced by references.
Loading never executes code (no pickle, no ``torch.load``). Dict keys keep their type (optimizer
state dicts use int keys), tuples come back as lists.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load as load_bytes
from safetensors.torch import load_file, save_file
from safetensors.torch import save as save_bytes

_TENSOR, _ARRAY, _DICT = "__tensor__", "__ndarray__", "__dict__"


def _flatten(tree: Any, path: str, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(tree, torch.Tensor):
        tensors[path] = tree.detach().cpu().contiguous()
        return {_TENSOR: path}
    if isinstance(tree, np.ndarray):
        tensors[path] = torch.from_numpy(np.ascontiguousarray(tree))
        return {_ARRAY: path}
    if isinstance(tree, dict):
        items = []
        for key, value in tree.items():
            if not isinstance(key, (str, int)):
                raise TypeError(f"state keys must be str or int, got {type(key).__name__} at {path!r}")
            items.append([key, _flatten(value, f"{path}/{key}", tensors)])
        return {_DICT: items}
    if isinstance(tree, (list, tuple)):
        return [_flatten(value, f"{path}/{i}", tensors) for i, value in enumerate(tree)]
    if isinstance(tree, (np.floating, np.integer, np.bool_)):
        return tree.item()
    if tree is None or isinstance(tree, (str, int, float, bool)):
        return tree
    raise TypeError(f"cannot serialize {type(tree).__name__} at {path!r} without pickle")


def _unflatten(node: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(node, dict):
        if _TENSOR in node:
            return tensors[node[_TENSOR]]
        if _ARRAY in node:
            return tensors[node[_ARRAY]].numpy()
        return {key: _unflatten(value, tensors) for key, value in node[_DICT]}
    if isinstance(node, list):
        return [_unflatten(value, tensors) for value in node]
    return node


def tree_to_bytes(tree: Any) -> bytes:
    """``tree`` as one pickle-free byte string (for the actor/learner link): a 4-byte big-endian length,
    the JSON skeleton, then the safetensors blob of its tensors."""
    tensors: dict[str, torch.Tensor] = {}
    skeleton = json.dumps(_flatten(tree, "", tensors)).encode()
    return len(skeleton).to_bytes(4, "big") + skeleton + save_bytes(tensors)


def tree_from_bytes(data: bytes) -> Any:
    """Inverse of :func:`tree_to_bytes`; raises ValueError on a malformed message."""
    try:
        n = int.from_bytes(data[:4], "big")
        skeleton = json.loads(data[4 : 4 + n])
        tensors = load_bytes(bytes(data[4 + n :]))
        return _unflatten(skeleton, tensors)
    except Exception as err:  # json/safetensors errors, truncated data
        raise ValueError(f"malformed state message ({len(data)} bytes): {err}") from err


def write_atomic_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file + fsync + rename (never half-written)."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def save_tree(directory: str | Path, name: str, tree: Any) -> None:
    """Save ``tree`` as ``<directory>/<name>.json`` + ``<directory>/<name>.safetensors``."""
    directory = Path(directory)
    tensors: dict[str, torch.Tensor] = {}
    skeleton = _flatten(tree, "", tensors)
    save_file(tensors, str(directory / f"{name}.safetensors"))
    write_atomic_bytes(directory / f"{name}.json", json.dumps(skeleton).encode())


def load_tree(directory: str | Path, name: str) -> Any:
    """Inverse of :func:`save_tree`; raises ``FileNotFoundError``/``ValueError`` naming the file."""
    directory = Path(directory)
    json_path, tensor_path = directory / f"{name}.json", directory / f"{name}.safetensors"
    for path in (json_path, tensor_path):
        if not path.is_file():
            raise FileNotFoundError(f"missing file {path}")
    try:
        skeleton = json.loads(json_path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"corrupt file {json_path}: {err}") from err
    try:
        tensors = load_file(str(tensor_path))
    except Exception as err:  # safetensors raises its own error types
        raise ValueError(f"corrupt file {tensor_path}: {err}") from err
    try:
        return _unflatten(skeleton, tensors)
    except KeyError as err:
        raise ValueError(f"{tensor_path} lacks tensor {err} referenced by {json_path}") from err


def save_model_dir(path: str | Path, module: torch.nn.Module, meta_file: str, meta: dict[str, Any]) -> Path:
    """A small model as a directory: ``model.safetensors`` (its state dict) + ``meta_file`` (JSON),
    written under a temporary name and renamed into place (never half-written, never pickle)."""
    import shutil

    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in module.state_dict().items()}, str(tmp / "model.safetensors"))
    (tmp / meta_file).write_text(json.dumps(meta, indent=2))
    if path.exists():
        shutil.rmtree(path)
    os.replace(tmp, path)
    return path


def load_model_dir(
    path: str | Path, meta_file: str, what: str
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """``(state dict, meta)`` of a directory written by :func:`save_model_dir`; a one-line
    ``ConfigError`` naming ``what`` was expected when ``path`` is not one."""
    from robot_rl.core.errors import ConfigError

    path = Path(path)
    if not (path / meta_file).is_file() or not (path / "model.safetensors").is_file():
        raise ConfigError(f"reward.path={str(path)!r} is not {what} (no {meta_file}/model.safetensors)")
    return load_file(str(path / "model.safetensors")), json.loads((path / meta_file).read_text())
