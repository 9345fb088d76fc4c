"""Seeding and capture/restore of every RNG the training loop uses (for exact resume)."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch


def seed_everything(seed: int) -> np.random.Generator:
    """Seed python, numpy's legacy global state and torch; return a fresh numpy ``Generator``."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return np.random.default_rng(seed)


def capture_rng_state(generators: dict[str, np.random.Generator] | None = None) -> dict[str, Any]:
    """Serializable snapshot (plain python types + tensors) of python, numpy, torch and named generators."""
    version, internal, gauss = random.getstate()
    legacy = np.random.get_state()
    state: dict[str, Any] = {
        "python": [version, list(internal), gauss],
        "numpy_legacy": [legacy[0], legacy[1], int(legacy[2]), int(legacy[3]), float(legacy[4])],
        "torch": torch.get_rng_state(),
        "generators": {name: gen.bit_generator.state for name, gen in (generators or {}).items()},
    }
    if torch.cuda.is_available():
        state["torch_cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(
    state: dict[str, Any], generators: dict[str, np.random.Generator] | None = None
) -> None:
    """Inverse of :func:`capture_rng_state`; named generators are restored in place."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy_legacy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "torch_cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["torch_cuda"])
    for name, gen in (generators or {}).items():
        gen.bit_generator.state = state["generators"][name]
