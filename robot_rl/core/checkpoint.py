"""Checkpoints for exact resume, written so that a kill at any moment leaves the previous one intact.

Layout of a run's checkpoint folder::

    checkpoints/
      step_000001000/            one complete checkpoint (state.json + state.safetensors + meta.json)
      step_000002000/
      latest                     text file naming the newest complete checkpoint

A checkpoint is first written to ``.tmp-step_.../`` and renamed into place only after every file
is flushed; ``latest`` is replaced atomically afterwards. Loading takes the newest folder whose
``meta.json`` exists, so a crash between the rename and the pointer update loses nothing either.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

from robot_rl.core.serialization import load_tree, save_tree, write_atomic_bytes

FORMAT_VERSION = 1
_PREFIX = "step_"


class CheckpointManager:
    """Save/load state trees under ``directory`` keeping the ``keep`` newest checkpoints."""

    def __init__(self, directory: str | Path, keep: int = 2):
        if keep < 1:
            raise ValueError(f"keep must be >= 1, got {keep}")
        self.directory = Path(directory)
        self.keep = keep

    def save(self, step: int, state: dict[str, Any]) -> Path:
        self.directory.mkdir(parents=True, exist_ok=True)
        name = f"{_PREFIX}{step:09d}"
        final = self.directory / name
        tmp = self.directory / f".tmp-{name}-{os.getpid()}"
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir()
        save_tree(tmp, "state", state)
        # meta.json is written last: its presence marks a complete checkpoint.
        meta = {"format_version": FORMAT_VERSION, "step": step, "time": time.time()}
        write_atomic_bytes(tmp / "meta.json", json.dumps(meta).encode())
        _fsync_dir(tmp)
        if final.exists():  # re-saving the same step: move the old one aside first
            shutil.rmtree(final)
        os.replace(tmp, final)
        _fsync_dir(self.directory)
        write_atomic_bytes(self.directory / "latest", name.encode())
        self._prune()
        return final

    def complete(self) -> list[Path]:
        """Complete checkpoints, oldest first."""
        if not self.directory.is_dir():
            return []
        found = [
            p for p in self.directory.iterdir() if p.name.startswith(_PREFIX) and (p / "meta.json").is_file()
        ]
        return sorted(found, key=lambda p: p.name)

    def latest(self) -> Path | None:
        """The newest complete checkpoint (the ``latest`` pointer file is for humans and tools)."""
        complete = self.complete()
        return complete[-1] if complete else None

    def load(self, path: str | Path | None = None) -> dict[str, Any]:
        """Load ``path`` (a checkpoint folder) or the latest complete checkpoint."""
        target = Path(path) if path is not None else self.latest()
        if target is None:
            raise FileNotFoundError(f"no complete checkpoint in {self.directory}")
        meta_path = target / "meta.json"
        if not meta_path.is_file():
            raise FileNotFoundError(f"incomplete checkpoint {target} (missing meta.json)")
        meta = json.loads(meta_path.read_text())
        if meta.get("format_version") != FORMAT_VERSION:
            raise ValueError(
                f"{meta_path}: checkpoint format {meta.get('format_version')} is not supported "
                f"(this robot-rl reads format {FORMAT_VERSION})"
            )
        return load_tree(target, "state")

    def _prune(self) -> None:
        for old in self.complete()[: -self.keep]:
            shutil.rmtree(old, ignore_errors=True)
        for stale in self.directory.glob(".tmp-*"):
            if not stale.name.endswith(f"-{os.getpid()}"):
                shutil.rmtree(stale, ignore_errors=True)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
